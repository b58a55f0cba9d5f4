// How the CLI reports failures. Two kinds, two exit codes:
//   2 — the user can fix it (a missing model folder, a bad flag value, an odd size): ONE line naming the cause and
//       the fix, never a stack trace;
//   1 — something went wrong inside Heed: the message, and the stack only with --verbose.
// Engine modules throw their own error classes (ModelFolderError, LatentsError, …). We recognise the user-facing ones
// by class name rather than by importing every module, so that the classification does not load the whole engine
// and keeps working when a module is reorganised.

/** A user error raised by the CLI layer itself (bad flag combination, unreadable path…). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Error classes whose messages are written for users (they name the file/option and the fix). */
export const USER_ERROR_NAMES: ReadonlySet<string> = new Set([
  'UsageError',
  'InvalidArgumentError', // commander, from option parsers
  'ModelFolderError',
  'TokenizerLoadError',
  'SchedulerConfigError',
  'SchedulerChoiceError',
  'LatentsError',
  'ImageSizeError',
  'GenerationOptionsError',
  'ModelInputError',
  'NpyError',
  'ImageError',
  'OnnxLoadError',
  'ExplainError',
  'MethodNotApplicableError',
  'AttentionDiscoveryError',
  'SubjectError',
  'AttendExciteError',
]);

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

function errorName(e: unknown): string | undefined {
  if (e && typeof e === 'object') {
    const n = (e as { name?: unknown }).name;
    if (typeof n === 'string') return n;
  }
  return undefined;
}

/** Commander's own parse errors (unknown option, missing argument…) carry a `code` such as `commander.unknownOption`. */
function isCommanderError(e: unknown): e is Error & { code: string; exitCode: number } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && ((e as unknown) as { code: string }).code.startsWith('commander.');
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

export function classifyError(e: unknown, verbose: boolean): ClassifiedError {
  const name = errorName(e);
  const message = e instanceof Error ? e.message : String(e);
  if (name === 'CancelledError') return { exitCode: EXIT_INTERRUPTED, message: `heed: ${oneLine(message)}` };
  if (isCommanderError(e) || (name !== undefined && USER_ERROR_NAMES.has(name))) {
    const text = oneLine(message.replace(/^error:\s*/i, ''));
    return { exitCode: EXIT_USAGE, message: `heed: ${text}` };
  }
  const detail = verbose && e instanceof Error && e.stack ? e.stack : `${oneLine(message)}\n(run again with --verbose for the stack trace)`;
  return { exitCode: EXIT_INTERNAL, message: `heed: internal error: ${detail}` };
}
