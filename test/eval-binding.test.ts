// The colour-binding features of `heed eval` (engine/jobs/eval/binding.ts) on maps whose answer is known.
import assert from 'node:assert/strict';
import { correlation } from '../engine/jobs/eval/binding.js';

describe('heed eval: colour binding', function () {
  it('correlation is Pearson\'s: 1 for the same map up to scale and baseline, −1 for its mirror, 0 for a flat map', function () {
    const a = Float32Array.from([0, 1, 2, 3, 4, 5]);
    assert.ok(Math.abs(correlation(a, a.map((v) => 3 * v + 7)) - 1) < 1e-9);
    assert.ok(Math.abs(correlation(a, a.map((v) => 5 - v)) + 1) < 1e-9);
    assert.equal(correlation(a, new Float32Array(6).fill(2)), 0);
    // numpy.corrcoef([0,1,2,3,4,5], [1,0,3,2,5,4])[0,1] = 0.8285714285714286
    assert.ok(Math.abs(correlation(a, Float32Array.from([1, 0, 3, 2, 5, 4])) - 0.8285714285714286) < 1e-9);
  });
});
