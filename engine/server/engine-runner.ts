// Placeholder: replaced by the real engine integration.
import type { JobRunner } from './runner.js';
import { ProtocolError } from './errors.js';
export function createRunner(): JobRunner {
  return { run: async () => { throw new ProtocolError('job_failed', 'engine not integrated yet'); } };
}
