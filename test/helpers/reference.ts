// Locates ../shared/reference (the reference exports and the outputs of the original Python code) for conformance
// tests. Tests that need it call requireReference(this) first: when the folder is absent they print why and skip,
// so a checkout without the shared data still runs its other tests.
import { join } from 'node:path';
import { referenceDir } from '../../bench/lib/reference.js';

export { referenceDir };

/** Minimal view of a mocha context, so this helper does not depend on mocha's types at runtime. */
export interface SkippableContext {
  skip(): void;
}

let warned = false;

/** Returns the reference folder, or warns (once per run) and skips the calling test/suite when it is missing. */
export function requireReference(ctx: SkippableContext): string {
  const dir = referenceDir();
  if (dir === null) {
    if (!warned) {
      const where = process.env.HEED_REFERENCE ? `HEED_REFERENCE=${process.env.HEED_REFERENCE}` : '../shared/reference';
      console.warn(`[reference] ${where} not found (set HEED_REFERENCE to the reference folder): skipping conformance tests`);
      warned = true;
    }
    ctx.skip();
    throw new Error('unreachable: skip() throws'); // skip() throws a Pending in mocha; keep TypeScript's flow honest
  }
  return dir;
}

/** Path of a file inside the reference folder (call requireReference first). */
export function referencePath(dir: string, ...parts: string[]): string {
  return join(dir, ...parts);
}
