// The one error type of the engine, after onnxruntime's Status: every fault Heed can name carries a kind (whose fault
// it is) and, when a request option is at fault, the option's protocol field. It is set where the fault is known —
// the module that finds a bad latents file knows the fault is the `latents` input — so neither face guesses: the CLI
// maps the kind to an exit code and the server to a protocol error code, each with one table, and no one reads the
// message to classify it. The engine's named error classes (ModelFolderError, LatentsError, …) are subclasses that
// fix their kind and default field.
//
// This module imports nothing: every layer may throw a HeedError.

/**
 * Whose fault: `invalid_input` — an option or input file the caller gave (the fix is to change it);
 * `model_invalid` — the model folder is not one Heed can use; `cancelled` — the caller stopped the job;
 * `internal` — anything else (a bug in Heed or its runtime).
 */
export type HeedErrorKind = 'invalid_input' | 'model_invalid' | 'cancelled' | 'internal';

export const HEED_ERROR_KINDS: readonly HeedErrorKind[] = ['invalid_input', 'model_invalid', 'cancelled', 'internal'];

export interface HeedErrorOptions {
  /** The request field at fault, dotted as in the protocol (`latents`, `excite.subjects`, `width`); none when the
   *  fault is not one option's. */
  field?: string;
  cause?: unknown;
}

export class HeedError extends Error {
  readonly field?: string;

  constructor(readonly kind: HeedErrorKind, message: string, options: HeedErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'HeedError';
    if (options.field !== undefined) this.field = options.field;
  }
}

/** The kind of any thrown value: a HeedError's own, `internal` for everything else. */
export function errorKind(e: unknown): HeedErrorKind {
  return e instanceof HeedError ? e.kind : 'internal';
}
