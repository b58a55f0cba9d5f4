// How the CLI reports failures. The engine's errors are HeedErrors whose kind says whose fault it is; one table turns
// the kind into an exit code:
//   2 — the user can fix it (a bad flag value, a missing model folder, an odd size): ONE line naming the cause and
//       the fix, never a stack trace;
//   1 — something went wrong inside Heed: the message, and the stack only with --verbose;
//   130 — interrupted.
// The server maps the same kinds to protocol error codes (engine/server/engine-runner.ts), so both faces classify a
// fault the same way.
import { errorKind, HeedError, type HeedErrorKind } from '../errors.js';

/** A user error raised by the CLI layer itself (bad flag combination, unreadable path…). */
export class UsageError extends HeedError {
  constructor(message: string, field?: string) {
    super('invalid_input', message, { field });
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_INTERNAL = 1;
export const EXIT_USAGE = 2;
/** Interrupted (SIGINT), the shell convention 128 + 2. */
export const EXIT_INTERRUPTED = 130;

export interface ClassifiedError {
  exitCode: number;
  /** What to print on stderr (one line for user errors). */
  message: string;
}

/** Commander's own parse errors (unknown option, missing argument…) carry a `code` such as `commander.unknownOption`. */
function isCommanderError(e: unknown): e is Error & { code: string; exitCode: number } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && ((e as unknown) as { code: string }).code.startsWith('commander.');
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** Exit code of each kind of fault: the CLI's one classification table. */
export const EXIT_CODE_OF_KIND: Readonly<Record<HeedErrorKind, number>> = {
  invalid_input: EXIT_USAGE,
  model_invalid: EXIT_USAGE,
  cancelled: EXIT_INTERRUPTED,
  internal: EXIT_INTERNAL,
};

export function classifyError(e: unknown, verbose: boolean): ClassifiedError {
  const message = e instanceof Error ? e.message : String(e);
  // Commander's parse errors (and the InvalidArgumentError our option parsers throw) are the user's input.
  const kind: HeedErrorKind = isCommanderError(e) ? 'invalid_input' : errorKind(e);
  const exitCode = EXIT_CODE_OF_KIND[kind];
  if (kind === 'cancelled') return { exitCode, message: `heed: ${oneLine(message)}` };
  if (exitCode === EXIT_USAGE) return { exitCode, message: `heed: ${oneLine(message.replace(/^error:\s*/i, ''))}` };
  const detail = verbose && e instanceof Error && e.stack ? e.stack : `${oneLine(message)}\n(run again with --verbose for the stack trace)`;
  return { exitCode, message: `heed: internal error: ${detail}` };
}
