// One error type for everything the server reports to a client: it carries the protocol's error code and the field
// at fault, so every layer (path policy, queue, worker, engine runner) can throw it and the connection turns it into
// an `error` event without guessing.
import type { ErrorCode } from '../protocol/index.js';

export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The serialisable form that crosses the worker boundary (Error subclasses do not survive structured clone). */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  field?: string;
}

export function toErrorInfo(e: unknown, fallback: ErrorCode = 'job_failed'): ErrorInfo {
  if (e instanceof ProtocolError) return { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) };
  if (e instanceof Error) {
    if (e.name === 'AbortError') return { code: 'cancelled', message: 'the job was cancelled' };
    return { code: fallback, message: e.message || e.name };
  }
  return { code: fallback, message: String(e) };
}
