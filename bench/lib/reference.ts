// Locates ../shared/reference (the reference exports and the outputs of the original Python code). Benchmarks and
// conformance tests both read it, so the lookup lives here rather than in test/: benches must not import tests.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The reference folder, or null when absent. HEED_REFERENCE overrides the location (and only it is tried); otherwise it is
 * `<repo>/../shared/reference`, found from this file (compiled into dist/bench/lib/) or the working directory.
 */
export function referenceDir(): string | null {
  const fromEnv = process.env.HEED_REFERENCE;
  if (fromEnv) return existsSync(join(resolve(fromEnv), 'README.md')) ? resolve(fromEnv) : null; // explicit: no fallback
  const candidates: string[] = [];
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/bench/lib -> repo root is three levels up; bench/lib (ts-node style) is two.
  candidates.push(resolve(here, '../../../../shared/reference'), resolve(here, '../../../shared/reference'));
  candidates.push(resolve(process.cwd(), '../shared/reference'));
  for (const c of candidates) if (existsSync(join(c, 'README.md'))) return c;
  return null;
}
