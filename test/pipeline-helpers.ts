// Array comparison for conformance tests: max abs difference relative to the reference's max magnitude, which is
// what "~1e-4 relative" means for tensors whose entries cross zero.
import { strict as assert } from 'node:assert';

export interface Diff {
  maxAbs: number;
  refMax: number;
  rel: number;
}

export function diff(got: ArrayLike<number>, ref: ArrayLike<number>): Diff {
  assert.equal(got.length, ref.length, `length ${got.length} vs reference ${ref.length}`);
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= maxAbs)) maxAbs = Number.isNaN(d) ? Infinity : d;
    refMax = Math.max(refMax, Math.abs(ref[i]));
  }
  return { maxAbs, refMax, rel: refMax > 0 ? maxAbs / refMax : maxAbs };
}

/** Asserts rel ≤ tol and logs the measured difference (the README quotes these numbers). */
export function assertClose(name: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: number): Diff {
  const d = diff(got, ref);
  console.log(`      ${name}: max|Δ| ${d.maxAbs.toExponential(2)}, max|ref| ${d.refMax.toPrecision(4)}, rel ${d.rel.toExponential(2)} (tol ${tol})`);
  assert.ok(d.rel <= tol, `${name}: relative difference ${d.rel.toExponential(3)} > ${tol} (max abs ${d.maxAbs})`);
  return d;
}
