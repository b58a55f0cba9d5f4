// Running the built CLI as a child process, as users do, for the cli-*.test.ts files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/test
export const REPO = resolve(here, '../..');
export const CLI = join(REPO, 'dist/engine/cli/main.js');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function heed(args: readonly string[], opts: { cwd?: string; timeoutMs?: number; script?: string } = {}): Promise<CliRun> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [opts.script ?? CLI, ...args], { cwd: opts.cwd ?? REPO, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** A user error: exit 2, exactly one stderr line starting with "heed:", no stack frames. */
export function assertUserError(r: CliRun, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code 2 expected, got ${r.code}; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('warning:') && l.trim() !== '');
  assert.equal(lines.length, 1, `one line expected on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^heed: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

