// The explain engine's error: what it refuses, with a message naming what is wrong (file, option, value) and how to
// fix it, so the CLI and the server can show it as-is. By default the caller's input is at fault; `field` names the
// option where one is (the protocol's field names: classIndex, texts, cheferStart, headsLayer, …), and problems of
// the model folder say so with kind `model_invalid`.
import { HeedError, type HeedErrorKind } from '../errors.js';

export class ExplainError extends HeedError {
  constructor(message: string, options: { field?: string; kind?: HeedErrorKind } = {}) {
    super(options.kind ?? 'invalid_input', message, { field: options.field });
    this.name = 'ExplainError';
  }
}

/** The model folder cannot be explained (missing files, a graph without attention Heed can find). */
export const MODEL_INVALID = { kind: 'model_invalid', field: 'model' } as const;

/** A method that cannot run on this model (no CLS token, no gradients, ...), with the reason. */
export class MethodNotApplicableError extends ExplainError {
  constructor(readonly method: string, readonly reason: string) {
    super(`method '${method}' does not apply: ${reason}`, { field: 'methods' });
    this.name = 'MethodNotApplicableError';
  }
}
