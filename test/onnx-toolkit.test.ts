// The ONNX toolkit against the real reference exports: byte-exact round trips, edits that keep ORT results,
// external data, static shapes checked against what ORT computes, and clear errors on bad input.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { loadModel, loadModelFromBuffer, encodeModel, cloneModel, saveModel, saveWithExternalData, externalFiles, OnnxLoadError } from '../engine/onnx/model.js';
import { Graph, makeValueInfo } from '../engine/onnx/graph.js';
import { inferShapes, ShapeInferenceError } from '../engine/onnx/shapes.js';
import { openSession, openSessionFromPath, runSession, readLargeFile, ort } from '../engine/onnx/session.js';
import { DataType, numel } from '../engine/onnx/tensor.js';
import { stageModel, sweepStaleStaging } from '../engine/onnx/staging.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';

const MODELS = [
  'sd-tiny-v1/onnx/text_encoder/model.onnx',
  'sd-tiny-v1/onnx/unet/model.onnx',
  'sd-tiny-v1/onnx/vae_decoder/model.onnx',
  'sd-tiny-v1/onnx/vae_encoder/model.onnx',
  'vit-tiny/model.onnx',
  'vit-tiny/model_with_attentions.onnx',
  'clip-tiny/model.onnx',
];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('onnx toolkit: round trips of the reference exports', function () {
  for (const rel of MODELS) {
    it(`load → save → load keeps ${rel} byte-identical`, function () {
      const ref = requireReference(this);
      const path = join(ref, rel);
      const original = readFileSync(path);
      const model = loadModel(path);
      const bytes = encodeModel(model);
      assert.ok(Buffer.from(bytes).equals(original), 'encoded bytes differ from the file');
      const again = loadModelFromBuffer(bytes, { baseDir: model.baseDir });
      assert.ok(Buffer.from(encodeModel(again)).equals(original));
      // A no-op graph edit (re-sorting an already topological node list) keeps the bytes too.
      const g = new Graph(cloneModel(model));
      g.sortNodes();
      assert.ok(Buffer.from(encodeModel(g.model)).equals(original), 'topological re-sort changed the node order');
    });
  }
});

describe('onnx toolkit: edits run in onnxruntime', function () {
  it('a no-op edit gives identical ORT outputs (ViT)', async function () {
    const ref = requireReference(this);
    const path = join(ref, 'vit-tiny/model.onnx');
    const pixels = readNpyFloat32(join(ref, 'vit-tiny/ref/pixel_values.npy'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.data, pixels.shape) };
    const direct = await openSessionFromPath(path);
    const a = await runSession(direct, feeds);
    const g = new Graph(cloneModel(loadModel(path)));
    g.sortNodes();
    g.reindex();
    const edited = await openSession(g.model);
    const b = await runSession(edited, feeds);
    assert.deepEqual(Array.from(b.logits.data as Float32Array), Array.from(a.logits.data as Float32Array));
    const expected = readNpyFloat32(join(ref, 'vit-tiny/ref/logits.npy'));
    assert.ok(maxAbsDiff(a.logits.data as Float32Array, expected.data) < 1e-4, 'ORT logits differ from torch');
    await direct.release();
    await edited.release();
  });

  it('an exposed intermediate equals the same tensor computed by the pruned subgraph (UNet, external data)', async function () {
    const ref = requireReference(this);
    const path = join(ref, 'sd-tiny-v1/onnx/unet/model.onnx');
    const probs = '/down_blocks.2/attentions.0/transformer_blocks.0/attn2/Softmax_output_0';
    const base = loadModel(path);
    const exposed = new Graph(cloneModel(base));
    assert.ok(exposed.producer(probs), `the reference UNet has no tensor ${probs}`);
    exposed.addOutput(probs);
    const pruned = new Graph(cloneModel(base));
    pruned.pruneTo([probs]);
    assert.ok(pruned.nodes.length < exposed.nodes.length / 2, 'pruning to a 16×16 map should drop the up path');
    assert.deepEqual(pruned.outputs.map((o) => o.name), [probs]);
    // 32×32 latents keep this test light; the 16×16 site then runs at 8×8 queries.
    const sample = new Float32Array(4 * 32 * 32).map((_, i) => Math.sin(i * 0.37));
    const text = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/text_embeddings_cond.npy'));
    const feeds = {
      sample: new ort.Tensor('float32', sample, [1, 4, 32, 32]),
      timestep: new ort.Tensor('float32', new Float32Array([901]), [1]),
      encoder_hidden_states: new ort.Tensor('float32', text.data, [1, 77, 32]),
    };
    const s1 = await openSession(exposed.model);
    const full = await runSession(s1, feeds);
    await s1.release();
    const s2 = await openSession(pruned.model);
    assert.deepEqual([...s2.inputNames].sort(), ['encoder_hidden_states', 'sample', 'timestep']);
    const part = await runSession(s2, feeds);
    await s2.release();
    assert.deepEqual(full[probs].dims, [8, 64, 77]);
    assert.equal(maxAbsDiff(full[probs].data as Float32Array, part[probs].data as Float32Array), 0);
    // Exposing an output must not change the model's own output.
    const plain = await openSessionFromPath(path);
    const orig = await runSession(plain, feeds);
    await plain.release();
    assert.equal(maxAbsDiff(orig.out_sample.data as Float32Array, full.out_sample.data as Float32Array), 0);
  });
});

describe('onnx toolkit: external data', function () {
  let dir: string;
  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'heed-ext-'));
  });
  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a model saved with external data loads from its path and from a buffer, with the same outputs', async function () {
    const ref = requireReference(this);
    const src = loadModel(join(ref, 'vit-tiny/model.onnx'));
    const saved = saveWithExternalData(src, dir, 'model.onnx', 'model.onnx_data');
    assert.ok(externalFiles(saved).has('model.onnx_data'));
    assert.ok(readFileSync(join(dir, 'model.onnx')).length < 200_000, 'weights should have moved out of model.onnx');
    const pixels = readNpyFloat32(join(ref, 'vit-tiny/ref/pixel_values.npy'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.data, pixels.shape) };
    const expected = readNpyFloat32(join(ref, 'vit-tiny/ref/logits.npy'));
    const byPath = await openSessionFromPath(join(dir, 'model.onnx'));
    const r1 = await runSession(byPath, feeds);
    await byPath.release();
    const fromBuffer = loadModelFromBuffer(readFileSync(join(dir, 'model.onnx')), { baseDir: dir });
    const r2 = await runSession(await openSession(fromBuffer), feeds);
    assert.ok(maxAbsDiff(r1.logits.data as Float32Array, expected.data) < 1e-4);
    assert.equal(maxAbsDiff(r1.logits.data as Float32Array, r2.logits.data as Float32Array), 0);
  });

  it('an edited model with external weights opens through hard-linked staging (no weight copy) and through buffers, identically', async function () {
    const ref = requireReference(this);
    const src = loadModel(join(ref, 'vit-tiny/model.onnx'));
    mkdirSync(join(dir, 'staged-src', 'weights'), { recursive: true });
    const saved = saveWithExternalData(src, join(dir, 'staged-src'), 'model.onnx', 'weights/model.onnx_data');
    const pixels = readNpyFloat32(join(ref, 'vit-tiny/ref/pixel_values.npy'));
    const feeds = { pixel_values: new ort.Tensor('float32', pixels.data, pixels.shape) };
    const stagingRoot = join(dir, 'staging');
    // The staging folder holds model.onnx + a hard link (same inode) to the weights, nested location included.
    const staged = stageModel(encodeModel(saved), externalFiles(saved), [stagingRoot]);
    assert.ok(staged);
    const linked = join(dirname(staged.path), 'weights', 'model.onnx_data');
    assert.equal(statSync(linked).ino, statSync(join(dir, 'staged-src', 'weights', 'model.onnx_data')).ino);
    staged.dispose();
    assert.ok(!existsSync(staged.path), 'dispose removes the staging folder');
    // A folder left by a process that died while opening a session is swept once it is an hour old; a fresh one is kept.
    const stale = join(stagingRoot, 'model-stale');
    const fresh = join(stagingRoot, 'model-fresh');
    mkdirSync(stale);
    mkdirSync(fresh);
    utimesSync(stale, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
    sweepStaleStaging(stagingRoot);
    assert.deepEqual(readdirSync(stagingRoot), ['model-fresh']);
    rmSync(fresh, { recursive: true });
    // A location escaping the model folder is never staged; a folder that cannot be created falls through to null.
    assert.equal(stageModel(new Uint8Array(1), new Map([['../w.bin', '/nonexistent']]), [stagingRoot]), null);
    assert.equal(stageModel(new Uint8Array(1), new Map([['w.bin', join(dir, 'no-such-weights')]]), [stagingRoot]), null);
    assert.deepEqual(readdirSync(stagingRoot), [], 'failed attempts leave nothing behind');
    // openSession: staged (default) and buffers give identical outputs; staging leaves no folder behind.
    process.env.HEED_STAGING_DIR = stagingRoot;
    try {
      const a = await openSession(saved);
      const b = await openSession(saved, { staging: false });
      const ra = await runSession(a, feeds);
      const rb = await runSession(b, feeds);
      await a.release();
      await b.release();
      assert.equal(maxAbsDiff(ra.logits.data as Float32Array, rb.logits.data as Float32Array), 0);
      assert.deepEqual(readdirSync(stagingRoot), []);
    } finally {
      delete process.env.HEED_STAGING_DIR;
    }
  });

  it('weights files are read in chunks (readFileSync stops at 2 GiB; SD 1.5 weights are 3.4 GB)', function () {
    const ref = requireReference(this);
    const path = join(ref, 'sd-tiny-v1/onnx/unet/weights.pb');
    assert.ok(readLargeFile(path).equals(readFileSync(path)));
  });

  it('saving an external-data model elsewhere asks how to handle the weights', function () {
    const ref = requireReference(this);
    const unet = loadModel(join(ref, 'sd-tiny-v1/onnx/unet/model.onnx'));
    assert.throws(() => saveModel(unet, join(dir, 'elsewhere/model.onnx')), /external data.*'copy'.*'inline'/s);
    const copied = saveModel(unet, join(dir, 'copied/model.onnx'), { externalData: 'copy' });
    assert.ok(externalFiles(copied).has('weights.pb'));
    assert.doesNotThrow(() => loadModel(join(dir, 'copied/model.onnx')));
  });

  it('a missing weights file is named in the error', function () {
    const ref = requireReference(this);
    const d = join(dir, 'noweights');
    saveModel(loadModel(join(ref, 'sd-tiny-v1/onnx/unet/model.onnx')), join(d, 'model.onnx'), { externalData: 'copy' });
    rmSync(join(d, 'weights.pb'));
    assert.throws(() => loadModel(join(d, 'model.onnx')), /external data file 'weights\.pb'.*missing/);
  });
});

describe('onnx toolkit: static shapes', function () {
  it('every tensor of the reference UNet (batch 1, 64×64, 77 tokens) has the shape ORT computes', async function () {
    const ref = requireReference(this);
    const path = join(ref, 'sd-tiny-v1/onnx/unet/model.onnx');
    const base = loadModel(path);
    const graph = new Graph(base);
    const inputDims = { sample: [1, 4, 64, 64], timestep: [1], encoder_hidden_states: [1, 77, 32] };
    const infos = inferShapes(graph, { inputDims });
    const tensors = graph.nodes.flatMap((n) => n.output.filter((o) => o.length > 0));
    const feeds = {
      sample: new ort.Tensor('float32', readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy')).data, [1, 4, 64, 64]),
      timestep: new ort.Tensor('float32', new Float32Array([901]), [1]),
      encoder_hidden_states: new ort.Tensor('float32', readNpyFloat32(join(ref, 'sd-tiny-v1/ref/text_embeddings_cond.npy')).data, [1, 77, 32]),
    };
    // Exposing all 21 GB of activations at once is impossible here. The ~8000 small tensors go in one session; the
    // few dozen big ones (64×64 attention scores, 512 MB each) in topological batches of ≤ 3 GB, each run on the
    // subgraph its tensors need. Few sessions keep this test to minutes.
    const bytesOf = (t: string) => {
      const i = infos.get(t);
      return i ? numel(i.dims) * 8 : 0;
    };
    const small = tensors.filter((t) => bytesOf(t) < 32e6);
    const batches: string[][] = [small];
    let current: string[] = [];
    let size = 0;
    for (const t of tensors.filter((x) => bytesOf(x) >= 32e6)) {
      const b = bytesOf(t);
      if (current.length > 0 && size + b > 3e9) {
        batches.push(current);
        current = [];
        size = 0;
      }
      current.push(t);
      size += b;
    }
    if (current.length) batches.push(current);
    let checked = 0;
    for (const batch of batches) {
      const g = new Graph(cloneModel(base));
      g.pruneTo(batch);
      const session = await openSession(g.model, { graphOptimization: 'disabled' });
      const needed = Object.fromEntries(session.inputNames.map((n) => [n, feeds[n as keyof typeof feeds]]));
      const out = await session.run(needed);
      for (const t of batch) {
        const expected = infos.get(t);
        assert.ok(expected, `no inferred shape for ${t}`);
        assert.deepEqual(expected.dims, [...out[t].dims], `shape of ${t}`);
        checked++;
      }
      await session.release();
    }
    assert.equal(checked, tensors.length);
  });

  it('symbolic input dims must be fixed, with a message naming the input', function () {
    const ref = requireReference(this);
    const graph = new Graph(loadModel(join(ref, 'sd-tiny-v1/onnx/unet/model.onnx')));
    assert.throws(() => inferShapes(graph, {}), /input 'sample' has symbolic dims.*inputDims\['sample'\]/);
    assert.throws(() => inferShapes(graph, { inputDims: { sample: [1, 4, 64], timestep: [1], encoder_hidden_states: [1, 77, 32] } }),
      /input 'sample' has rank 4/);
  });
});

describe('onnx toolkit: bad input', function () {
  let dir: string;
  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'heed-bad-'));
  });
  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('a missing file names the path', function () {
    assert.throws(() => loadModel(join(dir, 'nope.onnx')), (e: Error) => e instanceof OnnxLoadError && e.message.includes('nope.onnx') && /not found/.test(e.message));
  });

  it('a truncated .onnx names the file and says it is truncated', function () {
    const ref = requireReference(this);
    const bytes = readFileSync(join(ref, 'vit-tiny/model.onnx'));
    const cut = join(dir, 'cut.onnx');
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 3)));
    assert.throws(() => loadModel(cut), (e: Error) => e.message.includes('cut.onnx') && /truncated/.test(e.message));
  });

  it('a model with an unknown op is reported with the op type and node name', async function () {
    const ref = requireReference(this);
    const model = loadModel(join(ref, 'vit-tiny/model.onnx'));
    const g = new Graph(cloneModel(model));
    const softmax = g.nodes.find((n) => n.opType === 'Softmax');
    assert.ok(softmax);
    softmax.opType = 'FancySoftmax';
    g.reindex();
    assert.throws(() => inferShapes(g, { inputDims: { pixel_values: [1, 3, 224, 224] } }),
      (e: Error) => e instanceof ShapeInferenceError && e.message.includes("FancySoftmax node '/m/vit/encoder/layer.0/attention/attention/Softmax'"));
    await assert.rejects(openSession(g.model), /onnxruntime could not load .*FancySoftmax/s);
  });

  it('a wrong input shape names the input, the given and the expected dims', async function () {
    const ref = requireReference(this);
    const session = await openSessionFromPath(join(ref, 'vit-tiny/model.onnx'));
    await assert.rejects(runSession(session, { pixel_values: new ort.Tensor('float32', new Float32Array(3 * 100 * 100), [1, 3, 100, 100]) }),
      /input 'pixel_values' has dims \[1, 3, 100, 100\] but the model expects \[.*3, 224, 224\]/);
    await assert.rejects(runSession(session, {}), /missing input 'pixel_values'/);
    await session.release();
  });

  it('a graph without nodes or outputs is rejected as not a model', function () {
    const empty = toBinary(ModelProtoSchema, create(ModelProtoSchema, { irVersion: 7n }));
    assert.throws(() => loadModelFromBuffer(empty, { source: 'empty.onnx' }), /empty\.onnx/);
  });

  it('addOutput of an unknown tensor is refused', function () {
    const ref = requireReference(this);
    const g = new Graph(cloneModel(loadModel(join(ref, 'vit-tiny/model.onnx'))));
    assert.throws(() => g.addOutput('not_a_tensor'), /cannot expose 'not_a_tensor'/);
    assert.ok(makeValueInfo('x', DataType.FLOAT, [1, 'n']).type);
  });
});
