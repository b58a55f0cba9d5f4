// Comparing arrays against a reference.
import { strict as assert } from 'node:assert';

/** max |a − b| / max |b|: the error relative to the reference's magnitude (b is the reference); the absolute error
 *  when the reference is all zeros. */
export function relToMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'array lengths');
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    refMax = Math.max(refMax, Math.abs(b[i]));
  }
  return refMax === 0 ? maxAbs : maxAbs / refMax;
}
