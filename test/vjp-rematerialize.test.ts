// Rematerialisation in the split VJP (engine/onnx/autodiff/rematerialize.ts): the backward recomputes large
// attention maps instead of receiving them. Checked against the same runner without it (the gradients must not change
// beyond float32 rounding) on the reference tiny SD UNet at 64×64 latents, where the self-attention maps pass the
// default threshold as SD 1.5's do at 512², and with the threshold forced down on the reference ViT.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { loadModel, type OnnxModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { ort } from '../engine/onnx/session.js';
import { buildSplitVjp, VjpRunner, type VjpOptions } from '../engine/onnx/autodiff/index.js';
import { DEFAULT_REMATERIALIZE_BYTES } from '../engine/onnx/autodiff/rematerialize.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { toModelTensor } from '../engine/diffusion/boundary.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference, referencePath } from './helpers/reference.js';
import { seededRandom } from './helpers/rng.js';
import { relToMax } from './helpers/compare.js';


/** Gradients (and seeds) of one forward/backward with the given options, for a cotangent drawn from `seed`. */
async function runOnce(model: OnnxModel, options: VjpOptions, feeds: Record<string, ort.Tensor>, seed: number): Promise<Record<string, Float32Array>> {
  const runner = await VjpRunner.create(model, options);
  try {
    const { seeds, residuals } = await runner.forward(feeds);
    const rand = seededRandom(seed);
    const cot: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(seeds)) cot[name] = new ort.Tensor('float32', Float32Array.from(t.data as Float32Array, () => rand() - 0.5), t.dims);
    const grads = await runner.backward(residuals, cot);
    const out: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(grads)) out[`grad:${k}`] = Float32Array.from(v.data as Float32Array);
    for (const [k, v] of Object.entries(seeds)) out[`seed:${k}`] = Float32Array.from(v.data as Float32Array);
    return out;
  } finally {
    await runner.dispose();
  }
}

const CHEAP = new Set(['Softmax', 'MatMul', 'Mul', 'Div', 'Add', 'Sub', 'Neg', 'Exp', 'Sqrt', 'Cast', 'Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Identity']);

describe('VJP rematerialisation', function () {
  this.timeout(300_000);
  let ref: string;
  before(function () {
    ref = requireReference(this);
  });

  it('A&E on the tiny SD UNet at 64×64: the 64×64 self-attention maps are recomputed, the gradient is unchanged', async () => {
    const pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1/onnx'));
    try {
      const sites = pipe.attentionSites(64, 64);
      const seeds = sites.filter((s) => s.kind === 'cross' && s.queryLength === 256).map((s) => s.probs);
      const big = sites.filter((s) => s.kind === 'self' && s.queryLength === 4096).map((s) => s.probs);
      assert.ok(seeds.length > 0 && big.length > 0);
      const io = pipe.unet.io;
      const model = loadModel(pipe.unet.path);
      const options: VjpOptions = {
        seeds, wrt: [io.sample.name],
        inputDims: { [io.sample.name]: [1, 4, 64, 64], [io.timestep.name]: io.timestep.shape.length === 0 ? [] : [1], [io.encoderHiddenStates.name]: [1, 77, 32] },
      };
      const withRemat = buildSplitVjp(model, options);
      const without = buildSplitVjp(model, { ...options, rematerializeBytes: Infinity });
      // Every 64×64 self-attention map the backward reads is recomputed, by cheap ops only, and no longer passed.
      const bigResiduals = without.residuals.filter((r) => big.includes(r.name)).map((r) => r.name);
      assert.ok(bigResiduals.length > 0, 'the backward reads the 64×64 self-attention maps');
      for (const b of bigResiduals) {
        assert.ok(withRemat.stats.rematerialized.includes(b), `${b} is recomputed`);
        assert.ok(!withRemat.residuals.some((r) => r.name === b), `${b} is not passed`);
      }
      assert.deepEqual(without.stats.rematerialized, []);
      const backward = new Graph(withRemat.backward);
      for (const b of bigResiduals) assert.ok(CHEAP.has(backward.producer(b)?.opType ?? ''), `${b} is recomputed in the backward graph`);
      const saved = without.stats.residualBytes - withRemat.stats.residualBytes;
      assert.ok(saved >= bigResiduals.length * DEFAULT_REMATERIALIZE_BYTES, `saved ${saved} bytes`);
      assert.equal(saved, withRemat.stats.rematerializedBytes);
      console.log(`      residuals ${(without.stats.residualBytes / 2 ** 20).toFixed(0)} → ${(withRemat.stats.residualBytes / 2 ** 20).toFixed(0)} MiB ` +
        `(${withRemat.stats.rematerialized.length} maps recomputed)`);

      const latents = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy')).data;
      const cond = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/text_embeddings_cond.npy')).data;
      const feeds: Record<string, ort.Tensor> = {
        [io.sample.name]: new ort.Tensor('float32', Float32Array.from(latents), [1, 4, 64, 64]),
        [io.timestep.name]: toModelTensor(io.timestep.type, [901], io.timestep.shape.length === 0 ? [] : [1]),
        [io.encoderHiddenStates.name]: new ort.Tensor('float32', Float32Array.from(cond), [1, 77, 32]),
      };
      const a = await runOnce(model, options, feeds, 3);
      const b = await runOnce(model, { ...options, rematerializeBytes: Infinity }, feeds, 3);
      for (const k of Object.keys(b)) {
        const rel = relToMax(a[k], b[k]);
        assert.ok(rel <= 1e-6, `${k}: with vs without rematerialisation differ by ${rel} relative`);
      }
    } finally {
      await pipe.dispose();
    }
  });

  it('forced on every eligible residual of the reference ViT: same gradients, fewer residual bytes', async () => {
    const model = loadModel(referencePath(ref, 'vit-tiny', 'model.onnx'));
    const probs = new Graph(model).nodes.filter((n) => n.opType === 'Softmax').map((n) => n.output[0]);
    const options: VjpOptions = { seeds: ['logits'], wrt: ['pixel_values'], inputDims: { pixel_values: [1, 3, 224, 224] } };
    const forced = buildSplitVjp(model, { ...options, rematerializeBytes: 1 });
    const plain = buildSplitVjp(model, { ...options, rematerializeBytes: Infinity });
    for (const p of probs) assert.ok(forced.stats.rematerialized.includes(p), `${p} is recomputed`);
    assert.ok(forced.stats.residualBytes < plain.stats.residualBytes);
    // A recomputed tensor's chain reads only small leaves that are passed, weights or folded constants: never a
    // tensor produced by an expensive op that would be recomputed too (e.g. a Conv or a LayerNorm).
    const backward = new Graph(forced.backward);
    for (const r of forced.stats.rematerialized) assert.ok(CHEAP.has(backward.producer(r)?.opType ?? ''), r);
    const x = readNpyFloat32(referencePath(ref, 'vit-tiny', 'ref', 'pixel_values.npy'));
    const feeds = { pixel_values: new ort.Tensor('float32', Float32Array.from(x.data), x.shape) };
    const a = await runOnce(model, { ...options, rematerializeBytes: 1 }, feeds, 5);
    const b = await runOnce(model, { ...options, rematerializeBytes: Infinity }, feeds, 5);
    for (const k of Object.keys(b)) assert.ok(relToMax(a[k], b[k]) <= 1e-6, `${k}: ${relToMax(a[k], b[k])}`);
  });
});
