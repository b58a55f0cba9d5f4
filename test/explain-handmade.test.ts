// Hand-made cases whose answers are known without any reference implementation.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  attentionRollout, gradientRollout, productMatrix, productRow, residualNormalize, fuseHeads, discardLowest, kthSmallest,
} from '../engine/explain/rollout.js';
import { cheferRelevanceMatrix, cheferRelevanceRow } from '../engine/explain/chefer.js';
import { HeadFuser } from '../engine/explain/fuser.js';
import { meanAttentionDistance, patchDistanceMatrix } from '../engine/explain/distance.js';
import { explainImage } from '../engine/explain/index.js';
import { writeExplainOutputs } from '../engine/jobs/explain-outputs.js';
import { readNpy } from '../engine/io/npy.js';
import type { LayerTensor } from '../engine/explain/tensor.js';
import { buildForcedVit, writeTestImage, FORCED_GRID } from './explain-fixtures.js';

/** Deterministic pseudo-random numbers in [0, 1). */
function rand(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function layerFrom(heads: number, n: number, f: (h: number, i: number, j: number) => number): LayerTensor {
  const data = new Float32Array(heads * n * n);
  for (let h = 0; h < heads; h++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) data[(h * n + i) * n + j] = f(h, i, j);
  return { heads, queries: n, keys: n, data };
}

/** Row-stochastic random attention. */
function randomAttention(heads: number, n: number, seed: number): LayerTensor {
  const r = rand(seed);
  const l = layerFrom(heads, n, () => Math.exp(3 * r()));
  for (let row = 0; row < heads * n; row++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += l.data[row * n + j];
    for (let j = 0; j < n; j++) l.data[row * n + j] /= s;
  }
  return l;
}

describe('explain: hand-made cases', function () {
  describe('rollout', () => {
    const grid = { height: 3, width: 5 }; // non-square on purpose
    const n = 1 + grid.height * grid.width;

    it('identity attention rolls out to the identity: the CLS row reaches no patch', () => {
      const layers = [0, 1, 2].map(() => layerFrom(4, n, (_, i, j) => (i === j ? 1 : 0)));
      const mats = layers.map((l) => residualNormalize(fuseHeads(l, 'mean'), n, 'vit-explain'));
      const r = productMatrix(mats, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(r[i * n + j], i === j ? 1 : 0);
      const map = attentionRollout(layers, { headFusion: 'max', discardRatio: 0, grid });
      assert.ok(map.data.every((v) => v === 0), 'no patch receives attention (and no NaN from dividing by a zero max)');
    });

    it('uniform attention gives a uniform rollout mask, for every fusion and normalisation', () => {
      const layers = [0, 1, 2, 3].map(() => layerFrom(3, n, () => 1 / n));
      for (const headFusion of ['mean', 'max', 'min'] as const) {
        for (const normalization of ['vit-explain', 'rows'] as const) {
          const map = attentionRollout(layers, { headFusion, discardRatio: 0, normalization, grid });
          assert.deepEqual([map.height, map.width], [3, 5]);
          for (const v of map.data) assert.ok(Math.abs(v - 1) < 1e-6, `${headFusion}/${normalization}: ${v}`);
        }
      }
    });

    it('the CLS row computed by vector–matrix products equals the full product', () => {
      const mats = [1, 2, 3].map((s) => residualNormalize(fuseHeads(randomAttention(2, n, s), 'mean'), n, 'vit-explain'));
      const full = productMatrix(mats, n);
      const row = productRow(mats, n, 0);
      for (let j = 0; j < n; j++) assert.ok(Math.abs(row[j] - full[j]) < 1e-12);
    });

    it("'rows' normalisation makes the rolled-out matrix row-stochastic; vit-explain's column division does not", () => {
      // max fusion: the fused rows no longer sum to 1, which is when the column division shows.
      const mats = (norm: 'rows' | 'vit-explain') => [4, 5].map((s) => residualNormalize(fuseHeads(randomAttention(2, n, s), 'max'), n, norm));
      const rowSums = (m: Float64Array) => Array.from({ length: n }, (_, i) => m.subarray(i * n, (i + 1) * n).reduce((a, b) => a + b, 0));
      for (const s of rowSums(productMatrix(mats('rows'), n))) assert.ok(Math.abs(s - 1) < 1e-12);
      assert.ok(rowSums(productMatrix(mats('vit-explain'), n)).some((s) => Math.abs(s - 1) > 1e-3));
    });

    it('discard drops exactly int(N·ratio) entries, protecting flat index 0 in rollout only', () => {
      const r = rand(9);
      const base = Float64Array.from({ length: 100 }, () => r());
      base[0] = -1; // the smallest: would be discarded without protection
      const kept = Float64Array.from(base);
      discardLowest(kept, 0.3, true);
      assert.equal(kept[0], -1);
      assert.equal(kept.filter((v) => v === 0).length, 29); // 30 selected, index 0 spared, the set is not refilled
      const dropped = Float64Array.from(base);
      discardLowest(dropped, 0.3, false);
      assert.equal(dropped[0], 0);
      assert.equal(dropped.filter((v) => v === 0).length, 30);
      const sorted = Float64Array.from(base).sort();
      for (let i = 0; i < 100; i++) if (dropped[i] !== 0) assert.ok(base[i] > sorted[29]);
      assert.throws(() => discardLowest(Float64Array.from(base), 1, true), /discard ratio/);
    });

    it('head fusion by the onnxruntime fuser equals the JS fusion', async () => {
      const fuser = new HeadFuser();
      try {
        const layers = [7, 8].map((s) => randomAttention(5, n, s));
        const fused = await fuser.fuse(layers);
        for (const f of ['mean', 'max', 'min'] as const) {
          layers.forEach((l, i) => {
            const js = fuseHeads(l, f);
            fused[f][i].forEach((v, k) => assert.ok(Math.abs(v - js[k]) < 1e-7, `${f} layer ${i} entry ${k}`));
          });
        }
      } finally {
        await fuser.release();
      }
    });

    it('quickselect agrees with sorting', () => {
      const r = rand(11);
      for (const len of [1, 2, 7, 500]) {
        const a = Float64Array.from({ length: len }, () => Math.floor(r() * 20)); // many ties
        const sorted = Float64Array.from(a).sort();
        for (const k of [0, len >> 1, len - 1]) assert.equal(kthSmallest(Float64Array.from(a), k), sorted[k]);
      }
    });

    it('gradient rollout with gradients of ones equals attention rollout of the clamped mean (no CLS protection)', () => {
      const layers = [1, 2].map((s) => randomAttention(3, n, s));
      const ones = layers.map((l) => ({ ...l, data: new Float32Array(l.data.length).fill(1) }));
      const g = gradientRollout(layers, ones, { discardRatio: 0, grid, pairing: 'aligned' });
      const a = attentionRollout(layers, { headFusion: 'mean', discardRatio: 0, grid });
      for (let i = 0; i < g.data.length; i++) assert.ok(Math.abs(g.data[i] - a.data[i]) < 1e-6);
    });
  });

  describe('Chefer relevance', () => {
    it('zero gradients leave R = I; the row and matrix forms agree', () => {
      const n = 6;
      const layers = [1, 2, 3].map((s) => randomAttention(2, n, s));
      const zeros = layers.map((l) => ({ ...l, data: new Float32Array(l.data.length) }));
      const r = cheferRelevanceMatrix(layers, zeros, 'all');
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(r[i * n + j], i === j ? 1 : 0);
      const grads = [4, 5, 6].map((s) => layerFrom(2, n, (h, i, j) => rand(s * 100 + h * 36 + i * 6 + j)() - 0.5));
      for (const start of ['all', 'last', 1] as const) {
        const full = cheferRelevanceMatrix(layers, grads, start);
        for (const row of [0, 3]) {
          const v = cheferRelevanceRow(layers, grads, start, row);
          for (let j = 0; j < n; j++) assert.ok(Math.abs(v[j] - full[row * n + j]) < 1e-12);
        }
      }
      assert.throws(() => cheferRelevanceRow(layers, grads, 3), /start layer/);
    });

    it('one block with positive gradient 1 gives R = I + mean_heads(A)', () => {
      const n = 5;
      const A = randomAttention(3, n, 21);
      const ones = { ...A, data: new Float32Array(A.data.length).fill(1) };
      const r = cheferRelevanceMatrix([A], [ones], 'last');
      const mean = fuseHeads(A, 'mean');
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(r[i * n + j] - ((i === j ? 1 : 0) + mean[i * n + j])) < 1e-7);
    });
  });

  describe('mean attention distance', () => {
    it('a one-hot attention measures the geometric distance, on a non-square grid with non-square patches', () => {
      const grid = { height: 3, width: 4 };
      const patch = { height: 16, width: 8 };
      const count = 12;
      const n = count + 1; // with a CLS token, which the measure ignores
      // Head 0: every patch attends to patch 0 (top-left). Head 1: to its right neighbour (itself at the row end).
      const layer = layerFrom(2, n, (h, i, j) => {
        if (i === 0) return j === 0 ? 1 : 0;
        const p = i - 1;
        const target = h === 0 ? 0 : (p % grid.width === grid.width - 1 ? p : p + 1);
        return j === target + 1 ? 1 : 0;
      });
      const mad = meanAttentionDistance(layer, grid, patch, 1);
      let expected0 = 0;
      for (let p = 0; p < count; p++) expected0 += Math.hypot(16 * Math.floor(p / 4), 8 * (p % 4));
      expected0 /= count;
      assert.ok(Math.abs(mad[0] - expected0) < 1e-9, `${mad[0]} vs ${expected0}`);
      assert.ok(Math.abs(mad[1] - (8 * 3) / 4) < 1e-12, `${mad[1]}`); // 3 of 4 columns move one patch width (8 px)
    });

    it('square patches reproduce the notebook formula patch·‖Δ‖', () => {
      const d = patchDistanceMatrix({ height: 14, width: 14 }, { height: 16, width: 16 });
      assert.equal(d[0 * 196 + 15], 16 * Math.SQRT2); // (0,0) → (1,1)
      assert.equal(d[5 * 196 + 5], 0);
      assert.equal(d[0 * 196 + 13], 16 * 13);
    });
  });

  describe('a model whose attention is forced onto one patch', function () {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'heed-explain-forced-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('rollout, the head maps and mean attention distance point at that patch (2×3 grid)', async () => {
      const target = 5; // patch 4 = row 1, column 1
      const model = buildForcedVit(join(dir, 'forced'), { target });
      const image = await writeTestImage(join(dir, 'img.png'), 70, 50);
      // Discard 0.5 (24 of 49 entries) removes only near-zero entries here; at 0.9 vit-explain's discard would also zero
      // some of the 7 forced entries (only 42 are near zero), cutting the CLS row's path — a property of the method.
      const res = await explainImage(model, image, { methods: ['heads', 'rollout', 'distance', 'grad-rollout', 'chefer'], headFusion: ['mean', 'max', 'min'], discard: [0, 0.5], topK: 2 });
      // The batch dim of this model is fixed to 1: the two classes' gradients come from two runs.
      assert.equal(res.gradRollout.length, 4);
      assert.equal(res.chefer.length, 2);
      assert.deepEqual(res.model.grid, FORCED_GRID);
      assert.equal(res.model.prefixTokens, 1);
      for (const r of res.rollout) {
        assert.deepEqual([r.map.height, r.map.width], [2, 3]);
        r.map.data.forEach((v, p) => {
          if (p === target - 1) assert.ok(Math.abs(v - 1) < 1e-6, `rollout ${r.fusion}/${r.discard}: target ${v}`);
          else assert.ok(v < 1e-6, `rollout ${r.fusion}/${r.discard}: patch ${p} = ${v}`);
        });
      }
      const head = res.heads!.maps[0];
      head.data.forEach((v, p) => assert.ok(p === target - 1 ? v > 0.999 : v < 1e-6));
      // Every patch looks at patch 4 = (1, 1): distance 16·‖(r−1, c−1)‖ averaged over the 6 patches.
      let want = 0;
      for (let p = 0; p < 6; p++) want += 16 * Math.hypot(Math.floor(p / 3) - 1, (p % 3) - 1);
      want /= 6;
      for (const layer of res.distance!.values) assert.ok(Math.abs(layer[0] - want) < 1e-3, `${layer[0]} vs ${want}`);
    });

    it('with register tokens the CLS-row methods read the patch columns after them, with a note', async () => {
      const target = 1 + 2 + 3; // CLS, 2 registers, then patch 3 = row 1, column 0
      const model = buildForcedVit(join(dir, 'registers'), { target, registers: 2 });
      const image = await writeTestImage(join(dir, 'img3.png'));
      const res = await explainImage(model, image, { methods: ['heads', 'rollout', 'distance'], discard: 0 });
      assert.equal(res.model.prefixTokens, 3);
      assert.match(res.notes.join(' '), /3 tokens before the patches \(CLS plus 2 distillation\/register token\(s\)\)/);
      res.rollout[0].map.data.forEach((v, p) => assert.ok(p === 3 ? Math.abs(v - 1) < 1e-6 : v < 1e-6, `patch ${p}: ${v}`));
      res.heads!.maps[0].data.forEach((v, p) => assert.ok(p === 3 ? v > 0.999 : v < 1e-6));
      let want = 0;
      for (let p = 0; p < 6; p++) want += 16 * Math.hypot(Math.floor(p / 3) - 1, p % 3);
      assert.ok(Math.abs(res.distance!.values[0][0] - want / 6) < 1e-3);
    });

    it('gradient methods run on it and the outputs are written with the documented names', async () => {
      const model = buildForcedVit(join(dir, 'forced2'), { target: 2, dynamicBatch: true });
      const image = await writeTestImage(join(dir, 'img2.png'));
      const res = await explainImage(model, image, { topK: 2, discard: 0.9 });
      assert.equal(res.gradRollout.length, 2);
      assert.equal(res.chefer.length, 2);
      assert.deepEqual(res.gradRollout.map((g) => g.classIndex), res.classes!.slice(0, 2).map((c) => c.index));
      for (const c of res.chefer) assert.ok(c.image.data.every(Number.isFinite));
      const out = join(dir, 'out');
      const trace = join(dir, 'trace');
      const written = await writeExplainOutputs(res, out, trace);
      const c0 = res.classes![0].index;
      for (const f of ['input.png', 'heads_layer1.png', 'rollout_max_0.9.png', `grad_rollout_${c0}.png`, `chefer_${c0}.png`, 'distance.png', 'explain.json']) {
        assert.ok(written.files.includes(f) && existsSync(join(out, f)), `missing ${f}`);
      }
      for (const [f, shape] of [
        ['attentions_layer0.npy', [1, 7, 7]], ['attentions_layer1.npy', [1, 7, 7]], ['rollout_max_0.9.npy', [2, 3]],
        [`grad_rollout_${c0}.npy`, [2, 3]], [`chefer_${c0}.npy`, [2, 3]], ['distance.npy', [2, 1]],
      ] as const) {
        assert.deepEqual(readNpy(join(trace, f)).shape, shape, f);
      }
      const meta = await sharp(join(out, 'rollout_max_0.9.png')).metadata();
      assert.deepEqual([meta.width, meta.height], [48, 32]);
      const json = JSON.parse(readFileSync(join(out, 'explain.json'), 'utf8')) as { methods: { rollout: { map: number[][] }[] }; classes: unknown[] };
      assert.deepEqual([json.methods.rollout[0].map.length, json.methods.rollout[0].map[0].length], [2, 3]);
      assert.ok(json.classes.length >= 2);
    });
  });
});
