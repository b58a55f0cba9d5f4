// SynGen's binding loss against torch (the pipeline's Categorical/kl_divergence formulation with autograd, made by
// test/fixtures/syngen/make_fixture.py), its hand-written gradient against central finite differences, and what the
// loss must do on maps whose bindings are right or wrong.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { synGenLoss, type Binding } from '../engine/guidance/syngen-loss.js';
import { relToMax } from './helpers/compare.js';
import { seededRandom } from './helpers/rng.js';

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/syngen/cases.json', import.meta.url));

interface FixtureCase {
  name: string;
  dtype: string;
  h: number;
  w: number;
  k: number;
  bindings: Binding[];
  promptTokens: number[];
  maps: number[];
  loss: number;
  grad: number[];
}

/** Maps (h, w, k) whose every pixel is a softmax over the tokens, as aggregated cross-attention is. */
function randomMaps(h: number, w: number, k: number, seed: number, sharpness = 1): Float32Array {
  const rand = seededRandom(seed);
  const out = new Float32Array(h * w * k);
  for (let p = 0; p < h * w; p++) {
    const logits = Array.from({ length: k }, () => sharpness * (rand() * 2 - 1));
    const m = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - m));
    const s = e.reduce((a, v) => a + v, 0);
    for (let t = 0; t < k; t++) out[p * k + t] = e[t]! / s;
  }
  return out;
}

describe('SynGen binding loss', function () {
  const cases = (JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: FixtureCase[] }).cases;

  for (const c of cases) {
    it(`matches torch's loss and autograd gradient: ${c.name}`, function () {
      const r = synGenLoss(Float32Array.from(c.maps), c.h, c.w, c.k, c.bindings, c.promptTokens);
      // float64 reference maps rounded to float32 on the way in: ~1e-7 relative; the float32 case carries torch's
      // float32 arithmetic too.
      const tol = c.dtype === 'float32' ? 1e-5 : 1e-6;
      assert.ok(Math.abs(r.loss - c.loss) <= tol * Math.max(1, Math.abs(c.loss)), `loss ${r.loss} vs torch ${c.loss}`);
      const rel = relToMax(r.gradMaps, c.grad);
      assert.ok(rel < tol, `gradient differs from torch's by ${rel} of its max`);
    });
  }

  it('the fixture exercises torch\'s clamped logs (pixels under float32 epsilon)', function () {
    const c = cases.find((x) => x.dtype === 'float32')!;
    const pixels = c.h * c.w;
    let tiny = 0;
    for (let t = 0; t < c.k; t++) {
      let sum = 0;
      for (let p = 0; p < pixels; p++) sum += c.maps[p * c.k + t]!;
      for (let p = 0; p < pixels; p++) if (c.maps[p * c.k + t]! / sum < 2 ** -23) tiny++;
    }
    assert.ok(tiny > 10, `only ${tiny} clamped probabilities`);
  });

  it('its gradient equals central finite differences', function () {
    const h = 3, w = 4, k = 9;
    const bindings: Binding[] = [{ noun: [3], modifiers: [[2]] }, { noun: [7, 8], modifiers: [[5], [6]] }];
    const prompt = [1, 2, 3, 4, 5, 6, 7, 8];
    const base = randomMaps(h, w, k, 7, 2);
    const r = synGenLoss(base, h, w, k, bindings, prompt);
    // float64 copies for the differences: Float32Array would round the ±ε steps.
    const f = (i: number, d: number): number => {
      const m = Float64Array.from(base);
      m[i] += d;
      return synGenLoss(m, h, w, k, bindings, prompt).loss;
    };
    const eps = 1e-6;
    let worst = 0;
    let refMax = 0;
    for (let i = 0; i < base.length; i++) {
      const fd = (f(i, eps) - f(i, -eps)) / (2 * eps);
      worst = Math.max(worst, Math.abs(fd - r.gradMaps[i]!));
      refMax = Math.max(refMax, Math.abs(fd));
    }
    assert.ok(refMax > 1e-3, 'the loss depends on the maps');
    assert.ok(worst / refMax < 1e-4, `finite differences differ by ${worst} (max ${refMax})`);
  });

  it('is lower when each colour shares its noun\'s place than when the colours are swapped', function () {
    // 2 × 4 grid: the left half holds "triangle", the right half "circle". Right binding: "red" on the left with the
    // triangle; leaked: "red" on the right, with the circle (and "green" on the left).
    const h = 2, w = 4, k = 9;
    const make = (redLeft: boolean): Float32Array => {
      const m = new Float32Array(h * w * k);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const left = x < 2;
          const p = (y * w + x) * k;
          for (let t = 0; t < k; t++) m[p + t] = 0.02;
          m[p + (left ? 3 : 7)] = 0.4; // triangle | circle
          m[p + ((left === redLeft) ? 2 : 6)] = 0.3; // red | green
        }
      }
      return m;
    };
    const bindings: Binding[] = [{ noun: [3], modifiers: [[2]] }, { noun: [7], modifiers: [[6]] }];
    const prompt = [1, 2, 3, 4, 5, 6, 7];
    const right = synGenLoss(make(true), h, w, k, bindings, prompt);
    const leaked = synGenLoss(make(false), h, w, k, bindings, prompt);
    assert.ok(right.loss < leaked.loss, `bound ${right.loss} vs leaked ${leaked.loss}`);
    assert.ok(right.positive.every((v) => v < 0.01), `a modifier on its noun's place has a positive term near 0: ${right.positive}`);
    assert.ok(leaked.positive.every((v) => v > 1), `leaked positive terms ${leaked.positive}`);
    // The gradient on "red" points from the circle's place towards the triangle's.
    const g = leaked.gradMaps;
    assert.ok(g[(0 * w + 0) * k + 2]! < 0 && g[(0 * w + 3) * k + 2]! > 0, 'descent raises red on the left and lowers it on the right');
  });

  it('refuses token positions outside the maps', function () {
    const m = randomMaps(2, 2, 5, 1);
    assert.throws(() => synGenLoss(m, 2, 2, 5, [{ noun: [5], modifiers: [[2]] }], [1, 2, 3]), /outside 0\.\.4/);
    assert.throws(() => synGenLoss(m.subarray(1), 2, 2, 5, [], [1]), /expected 2×2×5/);
  });
});
