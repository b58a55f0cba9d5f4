// End-to-end gradients through the reference SD UNet (batch 1, 64×64 latents, 77 tokens, t = 901), from the five
// 16×16 cross-attention probability maps (down_blocks.2 ×2, up_blocks.1 ×3) back to the latents:
//   1. a random cotangent on the maps: ⟨grad, u⟩ vs central finite differences along random directions u;
//   2. the Attend-and-Excite loss of diffusers (written out here from the reference README) through the two-phase
//      runner, against torch autograd's dLoss/dlatents (`sd-tiny-v1/ref/grad_step0.npy`).
// Heavy (≈ 4 GB peak): run with `flock /tmp/heed-heavy.lock npx mocha dist/test/vjp-unet.test.js` on shared machines.
import assert from 'node:assert/strict';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { cloneModel, loadModel, type OnnxModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { openSession, ort } from '../engine/onnx/session.js';
import { numel } from '../engine/onnx/tensor.js';
import { VjpRunner } from '../engine/onnx/autodiff/index.js';
import { Rng } from './vjp-fixtures.js';
import { requireReference, referencePath } from './helpers/reference.js';

const ATTN_16 = /^\/(down_blocks\.2|up_blocks\.1)\/attentions\.\d\/transformer_blocks\.0\/attn2\/Softmax$/;
const INPUT_DIMS = { sample: [1, 4, 64, 64], timestep: [1], encoder_hidden_states: [1, 77, 32] };
const SESSION = { intraOpThreads: 2 };

/** A&E loss on the per-layer maps and its gradient w.r.t. each map (diffusers v0.21.4, as in the reference README). */
function attendAndExcite(maps: Float32Array[], tokenIndices: number[]): { loss: number; scores: number[]; cot: Float32Array[] } {
  const heads = 8;
  const P = 256;
  const T = 77;
  const n = maps.length * heads;
  const agg = new Float64Array(P * T);
  for (const m of maps) for (let i = 0; i < m.length; i++) agg[i % (P * T)] += m[i] / n;
  // softmax(100·A[:, :, 1:-1]) over the 75 text tokens, per pixel.
  const S = new Float64Array(P * 75);
  for (let p = 0; p < P; p++) {
    let mx = -Infinity;
    for (let t = 0; t < 75; t++) mx = Math.max(mx, 100 * agg[p * T + t + 1]);
    let sum = 0;
    for (let t = 0; t < 75; t++) sum += (S[p * 75 + t] = Math.exp(100 * agg[p * T + t + 1] - mx));
    for (let t = 0; t < 75; t++) S[p * 75 + t] /= sum;
  }
  const g1 = [Math.exp(-1), 1, Math.exp(-1)];
  const z = g1.reduce((a, b) => a + b, 0);
  const k1 = g1.map((v) => v / z);
  const reflect = (r: number) => (r < 0 ? -r : r > 15 ? 30 - r : r);
  const smoothMax = (col: number) => {
    let best = -Infinity;
    let at = 0;
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        let v = 0;
        for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) v += k1[a] * k1[b] * S[(reflect(y + a - 1) * 16 + reflect(x + b - 1)) * 75 + col];
        if (v > best) [best, at] = [v, y * 16 + x];
      }
    }
    return { best, at };
  };
  const per = tokenIndices.map((i) => smoothMax(i - 1));
  const losses = per.map((s) => Math.max(0, 1 - s.best));
  const k = losses.indexOf(Math.max(...losses));
  const loss = losses[k];
  const dS = new Float64Array(P * 75);
  if (loss > 0) {
    const col = tokenIndices[k] - 1;
    const y0 = Math.floor(per[k].at / 16);
    const x0 = per[k].at % 16;
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) dS[(reflect(y0 + a - 1) * 16 + reflect(x0 + b - 1)) * 75 + col] -= k1[a] * k1[b];
  }
  const dAgg = new Float64Array(P * T);
  for (let p = 0; p < P; p++) {
    let dot = 0;
    for (let t = 0; t < 75; t++) dot += dS[p * 75 + t] * S[p * 75 + t];
    for (let t = 0; t < 75; t++) dAgg[p * T + t + 1] = 100 * S[p * 75 + t] * (dS[p * 75 + t] - dot);
  }
  const cot = maps.map((m) => Float32Array.from({ length: m.length }, (_, i) => dAgg[i % (P * T)] / n));
  return { loss, scores: per.map((s) => s.best), cot };
}

describe('VJP on the reference SD UNet (64×64 latents; heavy)', function () {
  let ref: string;
  let model: OnnxModel;
  let seeds: string[];
  let feeds: Record<string, ort.Tensor>;
  before(function () {
    ref = requireReference(this);
    model = loadModel(referencePath(ref, 'sd-tiny-v1', 'onnx', 'unet', 'model.onnx'));
    seeds = new Graph(model).nodes.filter((n) => ATTN_16.test(n.name)).map((n) => n.output[0]);
    assert.equal(seeds.length, 5);
    feeds = {
      sample: new ort.Tensor('float32', readNpyFloat32(referencePath(ref, 'sd-tiny-v1', 'ref', 'latents_init.npy')).data, [1, 4, 64, 64]),
      timestep: new ort.Tensor('float32', Float32Array.from([901]), [1]),
      encoder_hidden_states: new ort.Tensor('float32', readNpyFloat32(referencePath(ref, 'sd-tiny-v1', 'ref', 'text_embeddings_cond.npy')).data, [1, 77, 32]),
    };
  });

  it('A&E loss gradient through the two-phase runner matches torch autograd (grad_step0.npy); the maps match the reference', async () => {
    const runner = await VjpRunner.create(model, { seeds, wrt: ['sample'], inputDims: INPUT_DIMS, session: SESSION });
    let grad: Float32Array;
    let loss: number;
    try {
      const { seeds: maps, residuals } = await runner.forward(feeds);
      const perLayer = readNpyFloat32(referencePath(ref, 'sd-tiny-v1', 'ref', 'attn_maps_step0_16x16_per_layer.npy'));
      const per = numel(perLayer.shape.slice(1));
      let mapErr = 0;
      seeds.forEach((s, l) => {
        const ours = maps[s].data as Float32Array;
        for (let i = 0; i < per; i++) mapErr = Math.max(mapErr, Math.abs(ours[i] - perLayer.data[l * per + i]));
      });
      assert.ok(mapErr < 1e-5, `16×16 maps differ from the reference by ${mapErr}`);
      const ae = attendAndExcite(seeds.map((s) => maps[s].data as Float32Array), [2, 5]);
      loss = ae.loss;
      const cots: Record<string, ort.Tensor> = {};
      seeds.forEach((s, l) => (cots[s] = new ort.Tensor('float32', ae.cot[l], runner.specs[s].dims)));
      grad = (await runner.backward(residuals, cots)).sample.data as Float32Array;
    } finally {
      await runner.dispose();
    }
    assert.ok(Math.abs(loss - 0.9019095) < 1e-4, `A&E loss ${loss} vs reference 0.9019095`);
    const torchGrad = readNpyFloat32(referencePath(ref, 'sd-tiny-v1', 'ref', 'grad_step0.npy')).data;
    let maxErr = 0;
    let maxRef = 0;
    let dot = 0;
    let n1 = 0;
    let n2 = 0;
    for (let i = 0; i < torchGrad.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(grad[i] - torchGrad[i]));
      maxRef = Math.max(maxRef, Math.abs(torchGrad[i]));
      dot += grad[i] * torchGrad[i];
      n1 += grad[i] ** 2;
      n2 += torchGrad[i] ** 2;
    }
    const cos = dot / Math.sqrt(n1 * n2);
    console.log(`      loss ${loss.toFixed(6)}; |ours − torch|max ${maxErr.toExponential(2)} (|torch|max ${maxRef.toExponential(2)}), cosine ${cos.toFixed(6)}`);
    assert.ok(maxErr <= 1e-3 * maxRef, `max abs diff ${maxErr} vs torch autograd (abs-max ${maxRef})`);
  });

  it('random cotangent on the 16×16 maps: ⟨d/dsample, u⟩ matches central finite differences along random directions', async () => {
    const rng = new Rng(5);
    const runner = await VjpRunner.create(model, { seeds, wrt: ['sample'], inputDims: INPUT_DIMS, session: SESSION });
    const cots: Record<string, Float32Array> = {};
    let grad: Float32Array;
    try {
      const { residuals } = await runner.forward(feeds);
      const cotT: Record<string, ort.Tensor> = {};
      for (const s of seeds) {
        const dims = runner.specs[s].dims;
        cots[s] = Float32Array.from(rng.normal(numel(dims)));
        cotT[s] = new ort.Tensor('float32', cots[s], dims);
      }
      grad = (await runner.backward(residuals, cotT)).sample.data as Float32Array;
    } finally {
      await runner.dispose();
    }
    // Plain forward, pruned to the maps, for the finite differences.
    const fwd = cloneModel(model);
    new Graph(fwd).pruneTo(seeds);
    const s = await openSession(fwd, SESSION);
    const x0 = feeds.sample.data as Float32Array;
    const loss = async (x: Float32Array): Promise<number> => {
      const out = await s.run({ ...feeds, sample: new ort.Tensor('float32', x, [1, 4, 64, 64]) }, seeds);
      let L = 0;
      for (const sd of seeds) {
        const y = out[sd].data as Float32Array;
        const c = cots[sd];
        for (let i = 0; i < y.length; i++) L += c[i] * y[i];
      }
      return L;
    };
    const eps = 0.05;
    try {
      for (let k = 0; k < 3; k++) {
        const d = rng.normal(x0.length);
        const norm = Math.sqrt(d.reduce((a, v) => a + v * v, 0));
        const u = d.map((v) => v / norm);
        const fd = ((await loss(Float32Array.from(x0, (v, i) => v + eps * u[i]))) - (await loss(Float32Array.from(x0, (v, i) => v - eps * u[i])))) / (2 * eps);
        const an = u.reduce((a, v, i) => a + v * grad[i], 0);
        const rel = Math.abs(fd - an) / Math.max(Math.abs(fd), 1e-6);
        console.log(`      direction ${k}: analytic ${an.toExponential(4)}, finite difference ${fd.toExponential(4)}, rel ${rel.toExponential(2)}`);
        assert.ok(rel < 2e-2, `direction ${k}: analytic ${an} vs finite difference ${fd}`);
      }
    } finally {
      await s.release();
    }
  });
});
