// One error type for everything the explain engine refuses, so the CLI and the server can show the message as-is:
// each message names what is wrong (file, option, value) and how to fix it.
export class ExplainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExplainError';
  }
}

/** A method that cannot run on this model (no CLS token, no gradients, ...), with the reason. */
export class MethodNotApplicableError extends ExplainError {
  constructor(readonly method: string, readonly reason: string) {
    super(`method '${method}' does not apply: ${reason}`);
    this.name = 'MethodNotApplicableError';
  }
}
