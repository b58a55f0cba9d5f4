// The VJP builder on the reference ViT and CLIP exports: gradients of a logit w.r.t. each layer's attention
// probabilities (and the pixels / token embeddings) against finite differences (the graph is cut at the tensor so
// that it can be perturbed), against torch autograd (vit-explain's hook gradients), two-phase mode against the
// single model, and the error messages.
import assert from 'node:assert/strict';
import { readNpy, readNpyFloat32 } from '../engine/io/npy.js';
import { loadModel, type OnnxModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { openSession, ort } from '../engine/onnx/session.js';
import { DataType, numel } from '../engine/onnx/tensor.js';
import { buildVjp, buildSplitVjp, VjpRunner, VjpError, UnsupportedOpError } from '../engine/onnx/autodiff/index.js';
import { checkVjp, makeModel, numbers, Rng, type Values } from './vjp-fixtures.js';
import { requireReference, referencePath } from './helpers/reference.js';

function softmaxOutputs(model: OnnxModel, re = /Softmax$/): string[] {
  return new Graph(model).nodes.filter((n) => n.opType === 'Softmax' && re.test(n.name)).map((n) => n.output[0]);
}

function f32(path: string): { type: number; dims: number[]; data: number[] } {
  const a = readNpyFloat32(path);
  return { type: DataType.FLOAT, dims: a.shape, data: Array.from(a.data) };
}
function i64(path: string): { type: number; dims: number[]; data: number[] } {
  const a = readNpy(path);
  return { type: DataType.INT64, dims: a.shape, data: Array.from(a.data as BigInt64Array, Number) };
}

const FD_TOL = 2e-2;

describe('VJP on the reference ViT', function () {
  let ref: string;
  let model: OnnxModel;
  let values: Values;
  before(function () {
    ref = requireReference(this);
    model = loadModel(referencePath(ref, 'vit-tiny', 'model.onnx'));
    values = { pixel_values: f32(referencePath(ref, 'vit-tiny', 'ref', 'pixel_values.npy')) };
  });

  it('d logit / d attention probabilities (every layer) and d logit / d pixels match finite differences', async () => {
    const probs = softmaxOutputs(model);
    assert.equal(probs.length, 4);
    const res = await checkVjp(model, { seeds: ['logits'], wrt: [...probs, 'pixel_values'], values, eps: { pixel_values: 0.5 }, directions: 2, seed: 7 });
    for (const [w, r] of Object.entries(res)) {
      console.log(`      ${w}: rel ${r.relErr.toExponential(2)} (|fd| ${r.scale.toExponential(2)})`);
      assert.ok(r.relErr < FD_TOL, `${w}: rel error ${r.relErr} vs finite differences`);
    }
  });

  it('matches torch autograd: vit-explain hook gradients (d logit_3 / d softmax input, last layer first)', async () => {
    const g = new Graph(model);
    const softmaxInputs = g.nodes.filter((n) => n.opType === 'Softmax').map((n) => n.input[0]);
    const vjp = buildVjp(model, { seeds: ['logits'], wrt: softmaxInputs, inputDims: { pixel_values: [1, 3, 224, 224] } });
    const s = await openSession(vjp.model);
    const cot = new Float32Array(10);
    cot[3] = 1;
    const out = await s.run({
      pixel_values: new ort.Tensor('float32', Float32Array.from(values.pixel_values.data), [1, 3, 224, 224]),
      logits__cot: new ort.Tensor('float32', cot, [1, 10]),
    });
    await s.release();
    const hook = readNpyFloat32(referencePath(ref, 'vit-tiny', 'ref', 'grad_rollout_hook_gradients.npy'));
    const per = numel(hook.shape.slice(1));
    let maxErr = 0;
    let maxRef = 0;
    softmaxInputs.forEach((t, layer) => {
      const ours = out[vjp.gradients[t]].data as Float32Array;
      const theirs = hook.data.subarray((3 - layer) * per, (4 - layer) * per);
      for (let i = 0; i < per; i++) {
        maxErr = Math.max(maxErr, Math.abs(ours[i] - theirs[i]));
        maxRef = Math.max(maxRef, Math.abs(theirs[i]));
      }
    });
    console.log(`      max |ours − torch| = ${maxErr.toExponential(2)} (max |torch| ${maxRef.toExponential(2)})`);
    assert.ok(maxErr <= 1e-4 * Math.max(maxRef, 1), `max abs diff ${maxErr} vs torch autograd`);
  });

  it('two-phase mode (VjpRunner) gives the single model\'s seeds and gradients, with a minimal residual set', async () => {
    const probs = softmaxOutputs(model);
    const opts = { seeds: ['logits'], wrt: probs, inputDims: { pixel_values: [1, 3, 224, 224] } };
    const single = buildVjp(model, opts);
    const split = buildSplitVjp(model, opts);
    // Every residual is a forward activation a rule needs, never a weight (weights stay initializers).
    const g = new Graph(model);
    for (const r of split.residuals) assert.ok(!g.isInitializer(r.name), `residual ${r.name} is a weight`);
    assert.ok(split.residuals.some((r) => probs.includes(r.name)), 'softmax outputs must be residuals (the Softmax rule needs y)');
    const runner = await VjpRunner.create(model, opts);
    try {
      const x = new ort.Tensor('float32', Float32Array.from(values.pixel_values.data), [1, 3, 224, 224]);
      const { seeds, residuals } = await runner.forward({ pixel_values: x });
      const logits = seeds.logits.data as Float32Array;
      const refLogits = readNpyFloat32(referencePath(ref, 'vit-tiny', 'ref', 'logits.npy')).data;
      logits.forEach((v, i) => assert.ok(Math.abs(v - refLogits[i]) < 1e-4, `logit ${i}: ${v} vs ${refLogits[i]}`));
      // The cotangent depends on the forward's output (as A&E's loss does): softmax of the logits.
      const mx = Math.max(...logits);
      const ex = Array.from(logits, (v) => Math.exp(v - mx));
      const sum = ex.reduce((a, b) => a + b, 0);
      const cot = new ort.Tensor('float32', Float32Array.from(ex.map((v) => v / sum)), [1, 10]);
      const grads = await runner.backward(residuals, { logits: cot });
      const s = await openSession(single.model);
      const ref1 = await s.run({ pixel_values: x, logits__cot: cot });
      await s.release();
      for (const p of probs) {
        const a = grads[p].data as Float32Array;
        const b = ref1[single.gradients[p]].data as Float32Array;
        let d = 0;
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        assert.ok(d < 1e-6, `${p}: split vs single differ by ${d}`);
      }
      console.log(`      residuals: ${split.residuals.length} tensors, ${(split.stats.residualBytes / 2 ** 20).toFixed(1)} MiB; backward nodes ${split.stats.backwardNodes}`);
    } finally {
      await runner.dispose();
    }
    await assert.rejects(runner.forward({}), /after dispose/);
  });

  it("'recompute' runner strategy gives the same seeds and gradients as 'residuals'", async () => {
    const probs = softmaxOutputs(model);
    const opts = { seeds: ['logits'], wrt: [...probs, 'pixel_values'], inputDims: { pixel_values: [1, 3, 224, 224] } };
    const x = new ort.Tensor('float32', Float32Array.from(values.pixel_values.data), [1, 3, 224, 224]);
    const cot = new ort.Tensor('float32', Float32Array.from(new Rng(9).normal(10)), [1, 10]);
    const results: Record<string, ort.Tensor>[] = [];
    for (const strategy of ['residuals', 'recompute'] as const) {
      const r = await VjpRunner.create(model, { ...opts, strategy });
      try {
        const { seeds, residuals } = await r.forward({ pixel_values: x });
        if (strategy === 'recompute') assert.deepEqual(Object.keys(residuals.tensors), ['pixel_values']);
        results.push({ ...(await r.backward(residuals, { logits: cot })), logits: seeds.logits });
      } finally {
        await r.dispose();
      }
    }
    for (const k of Object.keys(results[0])) {
      const a = results[0][k].data as Float32Array;
      const b = results[1][k].data as Float32Array;
      let d = 0;
      let m = 0;
      for (let i = 0; i < a.length; i++) {
        d = Math.max(d, Math.abs(a[i] - b[i]));
        m = Math.max(m, Math.abs(a[i]));
      }
      // Different sessions fuse differently; float32 rounding only.
      assert.ok(d <= 1e-5 * Math.max(m, 1), `${k}: strategies differ by ${d} (max |grad| ${m})`);
    }
  });
});

describe('VJP on the reference CLIP', function () {
  let ref: string;
  let model: OnnxModel;
  let values: Values;
  before(function () {
    ref = requireReference(this);
    model = loadModel(referencePath(ref, 'clip-tiny', 'model.onnx'));
    values = {
      pixel_values: f32(referencePath(ref, 'clip-tiny', 'ref', 'pixel_values.npy')),
      input_ids: i64(referencePath(ref, 'clip-tiny', 'ref', 'input_ids.npy')),
      attention_mask: i64(referencePath(ref, 'clip-tiny', 'ref', 'attention_mask.npy')),
    };
  });

  it('d logits_per_image / d attention probabilities (vision and text layers), pixels and token embeddings match finite differences', async () => {
    const probs = softmaxOutputs(model);
    assert.equal(probs.length, 5);
    const tokenEmb = '/m/text_model/embeddings/token_embedding/Gather_output_0';
    const res = await checkVjp(model, { seeds: ['logits_per_image'], wrt: [...probs, 'pixel_values', tokenEmb], values, eps: { pixel_values: 0.5 }, directions: 2, seed: 11 });
    for (const [w, r] of Object.entries(res)) {
      console.log(`      ${w}: rel ${r.relErr.toExponential(2)} (|fd| ${r.scale.toExponential(2)})`);
      assert.ok(r.relErr < FD_TOL, `${w}: rel error ${r.relErr} vs finite differences`);
    }
  });

  it('differentiates w.r.t. the token embedding table through Gather on runtime ids', async () => {
    const w = 'm.text_model.embeddings.token_embedding.weight';
    const inputDims = { input_ids: [2, 77], attention_mask: [2, 77], pixel_values: [1, 3, 224, 224] };
    const vjp = buildVjp(model, { seeds: ['text_embeds'], wrt: [w, '/m/text_model/embeddings/token_embedding/Gather_output_0'], inputDims });
    const s = await openSession(vjp.model, { intraOpThreads: 2 });
    const feeds: Record<string, ort.Tensor> = {};
    for (const i of vjp.inputs) {
      const v = values[i.name];
      feeds[i.name] = v.type === DataType.INT64
        ? new ort.Tensor('int64', BigInt64Array.from(v.data.map(BigInt)), v.dims)
        : new ort.Tensor('float32', Float32Array.from(v.data), v.dims);
    }
    const cot = new Rng(3).normal(64);
    feeds['text_embeds__cot'] = new ort.Tensor('float32', Float32Array.from(cot), [2, 32]);
    const out = await s.run(feeds);
    await s.release();
    // The table gradient is the per-token gradient scattered (summed) into the rows of the ids.
    const table = numbers(out[vjp.gradients[w]]);
    const perToken = numbers(out[vjp.gradients['/m/text_model/embeddings/token_embedding/Gather_output_0']]);
    const ids = values.input_ids.data;
    const expect = new Map<number, number[]>();
    ids.forEach((id, k) => {
      const row = expect.get(id) ?? new Array(32).fill(0);
      for (let c = 0; c < 32; c++) row[c] += perToken[k * 32 + c];
      expect.set(id, row);
    });
    let err = 0;
    for (const [id, row] of expect) for (let c = 0; c < 32; c++) err = Math.max(err, Math.abs(table[id * 32 + c] - row[c]));
    assert.ok(err < 1e-5, `table gradient vs summed per-token gradients: ${err}`);
    const untouched = table.slice(0, 32 * 300).filter((v, i) => !expect.has(Math.floor(i / 32)) && v !== 0).length;
    assert.equal(untouched, 0, 'rows of ids not in the input must get zero gradient');
  });
});

describe('VJP errors', function () {
  const base = () => makeModel({
    inputs: [{ name: 'x', type: DataType.FLOAT, dims: [2, 3] }, { name: 'z', type: DataType.FLOAT, dims: [3] }],
    nodes: [
      { op: 'HardSwish', inputs: ['x'], outputs: ['h'] },
      { op: 'Sigmoid', inputs: ['x'], outputs: ['s'] },
      { op: 'ArgMax', inputs: ['s'], outputs: ['idx'], attrs: { axis: 1 } },
    ],
    outputs: ['h', 's', 'idx'],
  });

  it('names the op type and node of an op without a rule, and where to add one', () => {
    assert.throws(() => buildVjp(base(), { seeds: ['h'], wrt: ['x'] }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedOpError);
      assert.match((e as Error).message, /no backward rule for HardSwish node 'HardSwish_0'.*engine\/onnx\/autodiff\/rules\//);
      return true;
    });
  });

  it('a wrt tensor the seeds do not depend on gets a zero gradient and a warning', async () => {
    const m = makeModel({
      inputs: [{ name: 'x', type: DataType.FLOAT, dims: [2, 3] }, { name: 'z', type: DataType.FLOAT, dims: [3] }],
      nodes: [{ op: 'Sigmoid', inputs: ['x'], outputs: ['s'] }, { op: 'Neg', inputs: ['z'], outputs: ['n'] }],
      outputs: ['s', 'n'],
    });
    const v = buildVjp(m, { seeds: ['s'], wrt: ['x', 'z', 'n'] });
    assert.equal(v.warnings.length, 2);
    assert.match(v.warnings[0], /wrt tensor 'z': none of the seeds \(s\) depends on it, so its gradient is all zeros/);
    const s = await openSession(v.model);
    const out = await s.run({
      x: new ort.Tensor('float32', Float32Array.from([0, 1, 2, -1, -2, 0.5]), [2, 3]),
      s__cot: new ort.Tensor('float32', new Float32Array(6).fill(1), [2, 3]),
    });
    await s.release();
    assert.deepEqual(Array.from(out.z__grad.data as Float32Array), [0, 0, 0]);
    assert.deepEqual(out.z__grad.dims, [3]);
    assert.deepEqual(out.n__grad.dims, [3]);
    const gx = Array.from(out.x__grad.data as Float32Array);
    [0, 1, 2, -1, -2, 0.5].forEach((x, i) => {
      const sg = 1 / (1 + Math.exp(-x));
      assert.ok(Math.abs(gx[i] - sg * (1 - sg)) < 1e-6);
    });
  });

  it('rejects a non-differentiable (integer) seed, a missing seed, an integer wrt and unknown wrt', () => {
    assert.throws(() => buildVjp(base(), { seeds: ['idx'], wrt: ['x'] }), /seed 'idx' has element type int64: only floating-point tensors can be differentiated/);
    assert.throws(() => buildVjp(base(), { seeds: ['nope'], wrt: ['x'] }), (e: unknown) => e instanceof VjpError && /seed 'nope' is not a tensor of .*graph outputs: h, s, idx/.test((e as Error).message));
    assert.throws(() => buildVjp(base(), { seeds: ['s'], wrt: ['idx'] }), /wrt tensor 'idx' has element type int64: integer\/bool tensors have no gradient/);
    assert.throws(() => buildVjp(base(), { seeds: ['s'], wrt: ['w'] }), /wrt tensor 'w' is not a tensor/);
    assert.throws(() => buildVjp(base(), { seeds: [], wrt: ['x'] }), /no seeds given/);
  });

  it('VjpRunner.backward checks cotangent dims and refuses stale residuals', async () => {
    const m = makeModel({ inputs: [{ name: 'x', type: DataType.FLOAT, dims: [2, 3] }], nodes: [{ op: 'Sigmoid', inputs: ['x'], outputs: ['s'] }], outputs: ['s'] });
    const r = await VjpRunner.create(m, { seeds: ['s'], wrt: ['x'], reuseBuffers: true });
    try {
      const { residuals } = await r.forward({ x: new ort.Tensor('float32', new Float32Array(6), [2, 3]) });
      await assert.rejects(r.backward(residuals, { s: new ort.Tensor('float32', new Float32Array(3), [3]) }), /cotangent for 's' has dims \[3\] but the seed has dims \[2,3\]/);
      await assert.rejects(r.backward(residuals, {}), /missing cotangent for seed 's'/);
      // Residual buffers are reused: residuals of an earlier forward() are refused, not silently overwritten.
      const x = (v: number) => new ort.Tensor('float32', new Float32Array(6).fill(v), [2, 3]);
      const first = await r.forward({ x: x(0) });
      const second = await r.forward({ x: x(2) });
      const cot = { s: new ort.Tensor('float32', new Float32Array(6).fill(1), [2, 3]) };
      await assert.rejects(r.backward(first.residuals, cot), /residuals come from an earlier forward\(\)/);
      const g = (await r.backward(second.residuals, cot)).x.data as Float32Array;
      const sg = 1 / (1 + Math.exp(-2));
      assert.ok(Math.abs(g[0] - sg * (1 - sg)) < 1e-6);
      assert.equal((first.seeds.s.data as Float32Array)[0], 0.5, 'seeds are copies, not overwritten by the next forward');
      // releaseBuffers drops the buffers; the next forward allocates fresh ones and the runner keeps working.
      r.releaseBuffers();
      const third = await r.forward({ x: x(-1) });
      assert.ok(third.residuals.tensors.s.data !== second.residuals.tensors.s.data, 'the sigmoid output residual is a fresh buffer');
      await assert.rejects(r.backward(second.residuals, cot), /residuals come from an earlier forward\(\)/);
      const g3 = (await r.backward(third.residuals, cot)).x.data as Float32Array;
      const s3 = 1 / (1 + Math.exp(1));
      assert.ok(Math.abs(g3[0] - s3 * (1 - s3)) < 1e-6);
    } finally {
      await r.dispose();
    }
    const keep = await VjpRunner.create(m, { seeds: ['s'], wrt: ['x'] }); // buffers are not reused by default: earlier residuals stay valid
    try {
      const a = await keep.forward({ x: new ort.Tensor('float32', new Float32Array(6), [2, 3]) });
      await keep.forward({ x: new ort.Tensor('float32', new Float32Array(6).fill(1), [2, 3]) });
      const g = (await keep.backward(a.residuals, { s: new ort.Tensor('float32', new Float32Array(6).fill(1), [2, 3]) })).x.data as Float32Array;
      assert.ok(Math.abs(g[0] - 0.25) < 1e-6);
    } finally {
      await keep.dispose();
    }
  });
});
