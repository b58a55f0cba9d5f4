// The Attend-and-Excite loss against diffusers' numbers on the reference maps, against hand-computed values, and its
// hand-written gradient against central finite differences.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { aeLoss, aeStepSizes, gaussianKernel1d, DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { seededRandom as rng } from './helpers/rng.js';


describe('Attend-and-Excite loss', function () {
  it('uses the original Gaussian quirk: [0.2119, 0.5761, 0.2119] for σ = 0.5', function () {
    const k = gaussianKernel1d(3, 0.5);
    assert.deepEqual(k.map((v) => Number(v.toFixed(4))), [0.2119, 0.5761, 0.2119]);
  });

  it('step sizes equal diffusers’ 20·sqrt(linspace(1, 0.5, 11))', function () {
    const ref = requireReference(this);
    const meta = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/ref/meta.json'), 'utf8'));
    const expected: number[] = meta.attend_and_excite.step_size;
    const got = aeStepSizes(20, 11);
    got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-12, `step ${i}: ${v} vs ${expected[i]}`));
  });

  it('reproduces diffusers’ scores and loss on the reference step-0 maps', function () {
    const ref = requireReference(this);
    const maps = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/attn_maps_step0_16x16.npy'));
    assert.deepEqual(maps.shape, [16, 16, 77]);
    const meta = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/ref/meta.json'), 'utf8'));
    const first = meta.attend_and_excite.events[0];
    const r = aeLoss(maps.data, 16, 16, 77, meta.attend_and_excite.token_indices);
    r.scores.forEach((s, i) => assert.ok(Math.abs(s - first.max_attention_per_index[i]) < 1e-6, `score ${i}: ${s} vs ${first.max_attention_per_index[i]}`));
    assert.ok(Math.abs(r.loss - first.loss) < 1e-6, `loss ${r.loss} vs ${first.loss}`);
  });

  it('a hand-made map: one token owns one pixel', function () {
    // 4×4 grid, 5 tokens; token 2 dominates pixel (1,2) so its softmax there is ~1, elsewhere 1/3.
    const h = 4, w = 4, k = 5;
    const maps = new Float32Array(h * w * k);
    maps[(1 * w + 2) * k + 2] = 1;
    const r = aeLoss(maps, h, w, k, [2], { smoothing: false, sigma: 0.5, kernelSize: 3 });
    const peak = Math.exp(100) / (Math.exp(100) + 2);
    assert.ok(Math.abs(r.scores[0] - peak) < 1e-12);
    // With smoothing, the peak is spread by the centre weight 0.5761² plus neighbours at 1/3.
    const k1 = gaussianKernel1d(3, 0.5);
    const rs = aeLoss(maps, h, w, k, [2]);
    const expected = k1[1] * k1[1] * peak + (1 - k1[1] * k1[1]) / 3;
    assert.ok(Math.abs(rs.scores[0] - expected) < 1e-9, `${rs.scores[0]} vs ${expected}`);
  });

  for (const smoothing of [true, false]) {
    it(`gradient matches central finite differences (smoothing ${smoothing})`, function () {
      const h = 6, w = 5, k = 9;
      const rand = rng(smoothing ? 7 : 8);
      const maps = new Float32Array(h * w * k).map(() => rand() * 0.02);
      const subjects = [2, 5];
      const opts = { ...DEFAULT_AE_LOSS, smoothing };
      const f = (m: Float32Array) => aeLoss(m, h, w, k, subjects, opts).loss;
      const { gradMaps, loss } = aeLoss(maps, h, w, k, subjects, opts);
      assert.ok(loss > 0);
      for (let trial = 0; trial < 5; trial++) {
        const dir = new Float32Array(maps.length).map(() => rand() - 0.5);
        const eps = 1e-4;
        const plus = Float32Array.from(maps, (v, i) => v + eps * dir[i]);
        const minus = Float32Array.from(maps, (v, i) => v - eps * dir[i]);
        // Float64 FD on a float32 input: evaluate with the perturbed values exactly as stored.
        const fd = (f(plus) - f(minus)) / (2 * eps);
        let an = 0;
        for (let i = 0; i < maps.length; i++) an += gradMaps[i] * ((plus[i] - minus[i]) / (2 * eps));
        assert.ok(Math.abs(fd - an) <= 1e-3 * Math.max(1, Math.abs(fd)), `trial ${trial}: fd ${fd} vs analytic ${an}`);
      }
      // Columns outside the softmax slice get no gradient.
      for (let p = 0; p < h * w; p++) {
        assert.equal(gradMaps[p * k], 0);
        assert.equal(gradMaps[p * k + k - 1], 0);
      }
    });
  }

  it('zero loss gives a zero gradient; bad subject indices are refused', function () {
    const h = 2, w = 2, k = 4;
    const maps = new Float32Array(h * w * k);
    for (let p = 0; p < 4; p++) maps[p * k + 1] = 1;
    const r = aeLoss(maps, h, w, k, [1], { smoothing: false, sigma: 0.5, kernelSize: 3 });
    assert.equal(r.loss, 0);
    assert.ok(r.gradMaps.every((v) => v === 0));
    assert.throws(() => aeLoss(maps, h, w, k, [0]), /outside the scored range/);
    assert.throws(() => aeLoss(maps, h, w, k, [3]), /outside the scored range/);
  });
});
