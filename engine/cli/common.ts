// Helpers shared by the subcommands: path checks that turn into one-line user errors, output modes, SIGINT → abort.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from './errors.js';

export interface OutputMode {
  /** No progress and no summary (errors still go to stderr). */
  quiet?: boolean;
  /** One JSON document on stdout at the end; no progress bar. */
  json?: boolean;
}

/** A folder the user named with `flag`; it must exist. */
export function existingDir(path: string, flag: string, hint: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${flag} ${path}: no such folder; ${hint}`);
  if (!statSync(p).isDirectory()) throw new UsageError(`${flag} ${path} is a file, not a folder; ${hint}`);
  return p;
}

/** A file the user named with `flag`; it must exist and be a file. */
export function existingFile(path: string, flag: string, hint: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${flag} ${path}: no such file; ${hint}`);
  if (!statSync(p).isFile()) throw new UsageError(`${flag} ${path} is a folder, not a file; ${hint}`);
  return p;
}

/** An output folder: created when missing; an existing file of that name is refused. */
export function outputDir(path: string, flag: string): string {
  const p = resolve(path);
  if (existsSync(p) && !statSync(p).isDirectory()) throw new UsageError(`${flag} ${path} is an existing file; give a folder path (it is created if missing)`);
  try {
    mkdirSync(p, { recursive: true });
  } catch (e) {
    throw new UsageError(`${flag} ${path}: cannot create the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose a writable location`);
  }
  return p;
}

/**
 * An AbortSignal that fires on the first Ctrl-C (the engine stops between steps and the CLI exits 130); a second
 * Ctrl-C exits at once. Call the returned dispose when the work is done.
 */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSigint = (): void => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write('\nheed: stopping after the current step (Ctrl-C again to quit now)\n');
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSigint) };
}

/** Prints a line on stdout unless quiet/json. */
export function say(mode: OutputMode, line: string): void {
  if (!mode.quiet && !mode.json) process.stdout.write(line + '\n');
}

/** Prints warnings on stderr unless quiet (json mode still shows them: they are also in the JSON). */
export function warn(mode: OutputMode, warnings: readonly string[]): void {
  if (mode.quiet || mode.json) return;
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
}

export function ms(v: number): string {
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}
