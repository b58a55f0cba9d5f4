// Tests of the model-folder builders (models/): layouts as real exports, graphs that ORT runs, deterministic weights,
// and graph structure compared against the real torch exports in ../shared/reference.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, ValueInfoProtoSchema, type GraphProto, type ModelProto, type NodeProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { buildSdPipeline, sdTinyConfig } from '../models/sd.js';
import { buildVitFolder, vitTinyConfig } from '../models/vit.js';
import { buildClipFolder, clipTinyConfig } from '../models/clip.js';
import { ensureTinyModels, STAMP_FILE } from '../models/cache.js';
import { GraphBuilder } from '../models/lib/graph-builder.js';
import { buildUNet } from '../models/sd/unet.js';
import { bytesToUnicode, encode, EOT, SOT, tinyTokenizer } from '../models/tokenizer.js';
import { Rng } from '../models/lib/rng.js';
import { ClipTokenizer } from '../engine/text/tokenizer.js';
import { referenceDir, requireReference } from './helpers/reference.js';

const REF_DIR = referenceDir();
const HAVE_REF = REF_DIR !== null;

/** A file of ../shared/reference (only called where HAVE_REF or requireReference holds). */
function refFile(...parts: string[]): string {
  if (REF_DIR === null) throw new Error('internal: the reference folder is absent');
  return join(REF_DIR, ...parts);
}

/** Says, visibly, that part of a test was not run because ../shared/reference is absent (CI has it). */
function noReference(what: string): void {
  console.log(`      skipped part: ${what} (../shared/reference is absent; set HEED_REFERENCE or run in CI)`);
}
const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, enableCpuMemArena: false };

function loadProto(path: string): ModelProto {
  return fromBinary(ModelProtoSchema, readFileSync(path));
}

function graphOf(m: ModelProto): GraphProto {
  assert.ok(m.graph, 'model has a graph');
  return m.graph;
}

function histogram(g: GraphProto): Map<string, number> {
  const h = new Map<string, number>();
  for (const n of g.node) h.set(n.opType, (h.get(n.opType) ?? 0) + 1);
  return h;
}

/** Op types of the nodes that lie on a path from `source` to any of `targets` (inclusive of the target producers). */
function pathOpTypes(g: GraphProto, source: string, targets: string[]): Set<string> {
  const producer = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) producer.set(o, n);
  const downstream = new Set([source]);
  for (const n of g.node) if (n.input.some((i) => downstream.has(i))) for (const o of n.output) downstream.add(o);
  const ops = new Set<string>();
  const seen = new Set<string>();
  const stack = [...targets];
  while (stack.length) {
    const t = stack.pop() as string;
    if (seen.has(t)) continue;
    seen.add(t);
    const n = producer.get(t);
    if (!n || !downstream.has(t)) continue;
    ops.add(n.opType);
    for (const i of n.input) if (downstream.has(i)) stack.push(i);
  }
  return ops;
}

/** Op types walking up from a node through its first input `depth` times (the attention "signature"). */
function upChain(g: GraphProto, node: NodeProto, depth: number): string[] {
  const producer = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) producer.set(o, n);
  const out: string[] = [];
  let cur: NodeProto | undefined = node;
  for (let i = 0; i < depth && cur; i++) {
    out.push(cur.opType);
    cur = producer.get(cur.input[0]);
  }
  return out;
}

/** Whether `source` (a graph input) is an ancestor of node `n`: cross-attention Softmaxes see encoder_hidden_states. */
function dependsOn(g: GraphProto, n: NodeProto, source: string): boolean {
  const producer = new Map<string, NodeProto>();
  for (const x of g.node) for (const o of x.output) producer.set(o, x);
  const seen = new Set<string>();
  const stack = [...n.input];
  while (stack.length) {
    const t = stack.pop() as string;
    if (t === source) return true;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = producer.get(t);
    if (p) stack.push(...p.input);
  }
  return false;
}

function upChainNodes(g: GraphProto, node: NodeProto, depth: number): NodeProto[] {
  const out: NodeProto[] = [];
  let cur: NodeProto | undefined = node;
  for (let i = 0; i < depth && cur; i++) {
    out.push(cur);
    const input: string = cur.input[0];
    cur = g.node.find((x) => x.output[0] === input);
  }
  return out;
}

function consumersOf(g: GraphProto, tensor: string): NodeProto[] {
  return g.node.filter((n) => n.input.includes(tensor));
}

function softmaxes(g: GraphProto): NodeProto[] {
  return g.node.filter((n) => n.opType === 'Softmax');
}

function constFloat(g: GraphProto, tensor: string): number | undefined {
  const n = g.node.find((x) => x.output[0] === tensor && x.opType === 'Constant');
  const t = n?.attribute.find((a) => a.name === 'value')?.t;
  if (!t || t.dataType !== 1) return undefined;
  return new DataView(t.rawData.buffer, t.rawData.byteOffset, 4).getFloat32(0, true);
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function assertFinite(data: ArrayLike<number>, what: string): void {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) assert.fail(`${what}: non-finite value at ${i}`);
}

function maxAbs(data: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < data.length; i++) m = Math.max(m, Math.abs(data[i]));
  return m;
}

function wave(n: number, k: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * k + 0.3));
}

async function openUNet(path: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, SESSION);
}

async function runUNet(s: ort.InferenceSession, size: [number, number], batch: number, ehs: Float32Array, timestepType: 'float32' | 'int64' = 'float32') {
  const [h, w] = size;
  const t = timestepType === 'int64'
    ? new ort.Tensor('int64', BigInt64Array.from({ length: batch }, () => 901n), [batch])
    : new ort.Tensor('float32', new Float32Array(batch).fill(901), [batch]);
  const seq = ehs.length / batch / 32;
  return s.run({
    sample: new ort.Tensor('float32', wave(batch * 4 * h * w, 0.37), [batch, 4, h, w]),
    timestep: t,
    encoder_hidden_states: new ort.Tensor('float32', ehs, [batch, seq, 32]),
  });
}

async function encodeTexts(path: string, texts: string[]): Promise<Float32Array> {
  const tok = tinyTokenizer();
  const s = await ort.InferenceSession.create(path, SESSION);
  try {
    const ids = texts.flatMap((t) => encode(tok, t));
    const o = await s.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [texts.length, 77]) });
    return o.last_hidden_state.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('model builders (models/)', function () {
  let tmp: string;
  let sdDir: string;
  let textHidden: Float32Array;

  before(function () {
    tmp = mkdtempSync(join(tmpdir(), 'heed-builders-'));
    sdDir = join(tmp, 'sd');
    buildSdPipeline(sdDir, sdTinyConfig(0));
  });

  after(function () {
    rmSync(tmp, { recursive: true, force: true });
  });

  describe('rng', function () {
    it('is deterministic per (seed, parameter name) and independent of draw order', function () {
      const a = Rng.forParam(7, 'conv_in.weight').fillUniform(new Float32Array(5), -1, 1);
      Rng.forParam(7, 'other.weight').fillUniform(new Float32Array(100), -1, 1);
      const b = Rng.forParam(7, 'conv_in.weight').fillUniform(new Float32Array(5), -1, 1);
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, Rng.forParam(8, 'conv_in.weight').fillUniform(new Float32Array(5), -1, 1));
      const n = Rng.forParam(1, 'x').fillNormal(new Float32Array(20000), 1);
      const mean = n.reduce((s, v) => s + v, 0) / n.length;
      const sd = Math.sqrt(n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length);
      assert.ok(Math.abs(mean) < 0.03 && Math.abs(sd - 1) < 0.03, `normal(0,1) moments: mean ${mean}, sd ${sd}`);
    });
  });

  describe('generated tokenizer', function () {
    it('has CLIP vocab layout: 256 byte symbols, 256 with </w>, merges, then SOT and EOT as the last ids', function () {
      const tok = tinyTokenizer();
      const bytes = bytesToUnicode().map(([, u]) => u);
      const ids = [...tok.vocab.entries()].sort((a, b) => a[1] - b[1]).map(([t]) => t);
      assert.deepEqual(ids.slice(0, 256), bytes);
      assert.deepEqual(ids.slice(256, 512), bytes.map((b) => `${b}</w>`));
      assert.equal(ids.length, 512 + tok.merges.length + 2);
      assert.equal(tok.bosId, ids.length - 2);
      assert.equal(ids[tok.bosId], SOT);
      assert.equal(ids[tok.eosId], EOT);
      for (const w of ['cat', 'frog', 'dog', 'red', 'blue', 'disk', 'square', 'astronaut', 'horse']) {
        assert.ok(tok.vocab.has(`${w}</w>`), `'${w}' is one token`);
      }
      assert.deepEqual(encode(tok, 'a cat and a frog').slice(0, 7),
        [tok.bosId, ...['a', 'cat', 'and', 'a', 'frog'].map((w) => tok.vocab.get(`${w}</w>`)), tok.eosId]);
    });

    it('writes files that the engine tokenizer reads to the same ids (tokenizer.json and vocab+merges)', async function () {
      const dir = join(sdDir, 'tokenizer');
      for (const f of ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
        assert.ok(existsSync(join(dir, f)), f);
      }
      assert.equal(readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n')[0], '#version: 0.2');
      const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as { model_max_length: number; pad_token: string };
      assert.equal(cfg.model_max_length, 77);
      assert.equal(cfg.pad_token, EOT);
      const tok = tinyTokenizer();
      const fromJson = await ClipTokenizer.fromFolder(dir);
      const fromVm = ClipTokenizer.fromVocabAndMerges(JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as Record<string, number>,
        readFileSync(join(dir, 'merges.txt'), 'utf8'));
      const prompts = ['a cat and a frog', 'An astronaut riding a HORSE on the moon!', 'a quokka, xylophone & 42 zebras', 'a red disk and a blue square', ''];
      for (const p of prompts) {
        const expected = encode(tok, p);
        assert.deepEqual(fromJson.encode(p).ids, expected, `tokenizer.json: ${p}`);
        assert.deepEqual(fromJson.encodeWithLibrary(p), expected.slice(0, expected.indexOf(tok.eosId) + 1), `library: ${p}`);
        assert.deepEqual(fromVm.encode(p).ids, expected, `vocab+merges: ${p}`);
      }
    });
  });

  describe('SD pipeline folder', function () {
    it('has the diffusers ONNX layout, configs and external UNet weights', function () {
      const files = listFiles(sdDir);
      for (const f of ['model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'unet/weights.pb', 'vae_decoder/model.onnx',
        'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json', 'scheduler_ddim/scheduler_config.json']) {
        assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
      }
      const index = JSON.parse(readFileSync(join(sdDir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(index._class_name, 'OnnxStableDiffusionPipeline');
      assert.deepEqual(index.unet, ['diffusers', 'OnnxRuntimeModel']);
      assert.deepEqual(index.tokenizer, ['transformers', 'CLIPTokenizer']);
      const sched = JSON.parse(readFileSync(join(sdDir, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
      assert.deepEqual([sched._class_name, sched.beta_start, sched.beta_end, sched.beta_schedule, sched.num_train_timesteps, sched.skip_prk_steps,
        sched.set_alpha_to_one, sched.steps_offset, sched.prediction_type, sched.timestep_spacing],
      ['PNDMScheduler', 0.00085, 0.012, 'scaled_linear', 1000, true, false, 1, 'epsilon', 'leading']);

      const unet = loadProto(join(sdDir, 'unet', 'model.onnx'));
      assert.equal(unet.irVersion, 7n);
      assert.equal(unet.producerName, 'pytorch');
      assert.deepEqual(unet.opsetImport.map((o) => [o.domain, Number(o.version)]), [['', 14]]);
      const g = graphOf(unet);
      let externalBytes = 0;
      for (const t of g.initializer) {
        const bytes = t.dims.reduce((a, d) => a * Number(d), 4);
        if (bytes >= 1024) {
          assert.equal(t.dataLocation, 1, `${t.name} (${bytes} B) is external`);
          const kv = Object.fromEntries(t.externalData.map((e) => [e.key, e.value]));
          assert.equal(kv.location, 'weights.pb');
          assert.equal(Number(kv.offset), externalBytes);
          externalBytes += Number(kv.length);
        } else assert.equal(t.rawData.length, bytes, `${t.name} inline`);
      }
      assert.equal(statSync(join(sdDir, 'unet', 'weights.pb')).size, externalBytes);
      assert.deepEqual(g.input.map((i) => i.name), ['sample', 'timestep', 'encoder_hidden_states']);
      assert.deepEqual(g.output.map((o) => o.name), ['out_sample']);
      const total = listFiles(sdDir).reduce((s, f) => s + statSync(join(sdDir, f)).size, 0);
      assert.ok(total < 20e6, `whole tiny SD folder ${total} B < 20 MB`);
    });

    it('is byte-identical for the same seed and differs for another seed', function () {
      const again = join(tmp, 'sd-again');
      const other = join(tmp, 'sd-other');
      buildSdPipeline(again, sdTinyConfig(0));
      buildSdPipeline(other, sdTinyConfig(1));
      for (const f of listFiles(sdDir)) {
        assert.ok(readFileSync(join(sdDir, f)).equals(readFileSync(join(again, f))), `${f} identical for seed 0`);
      }
      for (const f of ['unet/weights.pb', 'text_encoder/model.onnx', 'vae_decoder/model.onnx']) {
        assert.ok(!readFileSync(join(sdDir, f)).equals(readFileSync(join(other, f))), `${f} differs for seed 1`);
      }
      assert.ok(readFileSync(join(sdDir, 'tokenizer/vocab.json')).equals(readFileSync(join(other, 'tokenizer/vocab.json'))));
    });

    it('text encoder: int32 ids from the generated tokenizer → last_hidden_state, pooler at the first EOT', async function () {
      const tok = tinyTokenizer();
      const ids = [...encode(tok, 'a cat and a frog'), ...encode(tok, 'a red disk')];
      const s = await ort.InferenceSession.create(join(sdDir, 'text_encoder', 'model.onnx'), SESSION);
      const o = await s.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [2, 77]) });
      await s.release();
      assert.deepEqual(o.last_hidden_state.dims, [2, 77, 32]);
      assert.deepEqual(o.pooler_output.dims, [2, 32]);
      const h = o.last_hidden_state.data as Float32Array;
      const p = o.pooler_output.data as Float32Array;
      assertFinite(h, 'last_hidden_state');
      for (let b = 0; b < 2; b++) {
        // Independent check of the ArgMax(Equal(ids, eos)) pooling: the FIRST eos, although padding is eos too.
        const eot = ids.slice(b * 77, b * 77 + 77).indexOf(tok.eosId);
        assert.deepEqual(Array.from(p.slice(b * 32, b * 32 + 32)), Array.from(h.slice((b * 77 + eot) * 32, (b * 77 + eot + 1) * 32)));
      }
      textHidden = h;
      // final LayerNorm (weight 1, bias 0): every token vector has mean 0 and variance 1
      const v = h.slice(0, 32);
      const mean = v.reduce((a, x) => a + x, 0) / 32;
      const variance = v.reduce((a, x) => a + (x - mean) ** 2, 0) / 32;
      assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-3, `LayerNorm stats ${mean} ${variance}`);
    });

    it('UNet runs at 32×32 (batch 2) and other multiples of 8; attn2 maps are distributions and informative (q/k ×2.5)', async function () {
      // Expose two cross-attention Softmax outputs (at 32×32 latents down_blocks.1 attends at 16×16, the mid block
      // at 4×4) and run everything through that one session: creating an 8k-node session is the slow part.
      const m = loadProto(join(sdDir, 'unet', 'model.onnx'));
      const g = graphOf(m);
      const names = ['/down_blocks.1/attentions.0/transformer_blocks.0/attn2/Softmax', '/mid_block/attentions.0/transformer_blocks.0/attn2/Softmax'];
      const outs = names.map((n) => {
        const node = g.node.find((x) => x.name === n);
        assert.ok(node, n);
        return node.output[0];
      });
      for (const o of outs) g.output.push(create(ValueInfoProtoSchema, { name: o }));
      const hooked = join(sdDir, 'unet', 'hooked.onnx');
      writeFileSync(hooked, toBinary(ModelProtoSchema, m));
      const ehs = textHidden ?? await encodeTexts(join(sdDir, 'text_encoder', 'model.onnx'), ['a cat and a frog', 'a red disk']);
      const s = await openUNet(hooked);
      try {
        const t0 = Date.now();
        const r = await runUNet(s, [32, 32], 2, ehs);
        console.log(`      tiny UNet 32×32 batch 2: ${Date.now() - t0} ms per step`);
        assert.deepEqual(r.out_sample.dims, [2, 4, 32, 32]);
        const d = r.out_sample.data as Float32Array;
        assertFinite(d, 'out_sample');
        const mx = maxAbs(d);
        assert.ok(mx > 0.05 && mx < 20, `out_sample max |x| = ${mx}`);
        for (const [k, o] of outs.entries()) {
          const t = r[o];
          const [bh, q, kk] = t.dims;
          assert.deepEqual([bh, q, kk], [2 * 8, k === 0 ? 16 * 16 : 4 * 4, 77], `${names[k]} dims (batch·heads, query, keys)`);
          const p = t.data as Float32Array;
          let maxSum = 0;
          for (let row = 0; row < bh * q; row++) {
            let sum = 0;
            let rowMax = 0;
            for (let j = 0; j < kk; j++) {
              sum += p[row * kk + j];
              rowMax = Math.max(rowMax, p[row * kk + j]);
            }
            assert.ok(Math.abs(sum - 1) < 1e-4, `row ${row} sums to ${sum}`);
            maxSum += rowMax;
          }
          // Uniform rows would give 1/77 = 0.013; torch's default init gives ≈ 0.017 (reference README); ×2.5 more.
          const meanMax = maxSum / (bh * q);
          assert.ok(meanMax > 2 / 77, `${names[k]}: mean row max ${meanMax.toFixed(3)} is well above uniform (${(1 / 77).toFixed(3)})`);
        }
        for (const size of [[24, 40], [8, 8]] as [number, number][]) {
          const o = await runUNet(s, size, 1, ehs.slice(0, 77 * 32));
          assert.deepEqual(o.out_sample.dims, [1, 4, ...size]);
          assertFinite(o.out_sample.data as Float32Array, `out_sample ${size}`);
        }
        const otherPath = join(tmp, 'sd-other', 'unet', 'model.onnx');
        if (existsSync(otherPath)) {
          const other = await openUNet(otherPath);
          const o = await runUNet(other, [32, 32], 2, ehs);
          await other.release();
          assert.ok(maxAbs((o.out_sample.data as Float32Array).map((x, i) => x - d[i])) > 1e-3, 'another seed gives another output');
        }
      } finally {
        await s.release();
        rmSync(hooked);
      }
    });

    it('UNet options (int64 timestep, per-block heads, linear proj_in/out) run; int64 agrees with float32', async function () {
      const dir = join(tmp, 'unet-i64');
      for (const type of ['int64', 'float32'] as const) {
        const g = new GraphBuilder({ seed: 5, external: { dir, fileName: `${type}.pb` } });
        buildUNet(g, { ...sdTinyConfig(0).unet, timestepType: type, attentionHeadDim: [2, 4, 8, 8], useLinearProjection: true });
        writeFileSync(join(dir, `${type}.onnx`), toBinary(ModelProtoSchema, g.finish()));
      }
      const tsType = graphOf(loadProto(join(dir, 'int64.onnx'))).input[1].type?.value;
      assert.equal(tsType?.case === 'tensorType' ? tsType.value.elemType : -1, 7, 'timestep is INT64');
      const ehs = wave(77 * 32, 0.2);
      const si = await openUNet(join(dir, 'int64.onnx'));
      const a = await runUNet(si, [16, 16], 1, ehs, 'int64');
      await si.release();
      const sf = await openUNet(join(dir, 'float32.onnx'));
      const b = await runUNet(sf, [16, 16], 1, ehs, 'float32');
      await sf.release();
      assert.deepEqual(Array.from(a.out_sample.data as Float32Array), Array.from(b.out_sample.data as Float32Array));
      assertFinite(a.out_sample.data as Float32Array, 'out_sample');
      const g = graphOf(loadProto(join(dir, 'int64.onnx')));
      assert.ok(g.node.some((n) => n.name === '/down_blocks.0/attentions.0/proj_in/MatMul'), 'linear proj_in');
      // per-block heads: 2 heads at 32 channels in block 0 → scale (32/2)^-0.5 = 0.25
      const sm = g.node.find((n) => n.name === '/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Softmax') as NodeProto;
      const add = g.node.find((n) => n.output[0] === sm.input[0]) as NodeProto;
      const mul = g.node.find((n) => n.output[0] === add.input[0]) as NodeProto;
      assert.equal(constFloat(g, mul.input[1]), 0.25);
    });

    it('VAE decoder upsamples 8× with finite output', async function () {
      const s = await ort.InferenceSession.create(join(sdDir, 'vae_decoder', 'model.onnx'), SESSION);
      const o = await s.run({ latent_sample: new ort.Tensor('float32', wave(4 * 8 * 12, 0.5), [1, 4, 8, 12]) });
      await s.release();
      assert.deepEqual(o.sample.dims, [1, 3, 64, 96]);
      assertFinite(o.sample.data as Float32Array, 'sample');
      const g = graphOf(loadProto(join(sdDir, 'vae_decoder', 'model.onnx')));
      const sm = softmaxes(g);
      assert.deepEqual(sm.map((n) => n.name), ['/decoder/mid_block/attentions.0/Softmax']);
      assert.deepEqual(upChain(g, sm[0], 5), ['Softmax', 'Cast', 'Add', 'Mul', 'MatMul'], 'upcast pattern MatMul → Mul → Add → Cast → Softmax');
    });

  });

  describe('structure against the real exports (../shared/reference)', function () {
    before(function () {
      requireReference(this);
    });

    it('UNet: same attention Softmax names (16 attn1 + 16 attn2), same local pattern and scales as the reference', function () {
      const ref = graphOf(loadProto(refFile('sd-tiny-v1', 'onnx', 'unet', 'model.onnx')));
      const ours = graphOf(loadProto(join(sdDir, 'unet', 'model.onnx')));
      const rs = softmaxes(ref);
      const os = softmaxes(ours);
      assert.deepEqual(os.map((n) => n.name), rs.map((n) => n.name));
      assert.equal(os.filter((n) => n.name.includes('/attn1/')).length, 16);
      assert.equal(os.filter((n) => n.name.includes('/attn2/')).length, 16);
      // Kind as an attention lens classifies it: cross-attention iff the KEY side of MatMul(Q, Kᵀ) comes from
      // encoder_hidden_states alone (self-attention keys depend on the latent sample).
      const kinds = (g: GraphProto, list: NodeProto[]): boolean[] => list.map((n) => {
        const [, , mm] = upChainNodes(g, n, 4).slice(1);
        const keySide = g.node.find((x) => x.output[0] === mm.input[1]) as NodeProto;
        return dependsOn(g, keySide, 'encoder_hidden_states') && !dependsOn(g, keySide, 'sample');
      });
      const refKinds = kinds(ref, rs);
      assert.deepEqual(kinds(ours, os), refKinds);
      assert.deepEqual(refKinds, rs.map((n) => n.name.includes('/attn2/')));
      for (const [i, r] of rs.entries()) {
        const o = os[i];
        assert.deepEqual(upChain(ours, o, 4), upChain(ref, r, 4), `${o.name} producer chain`);
        assert.deepEqual(upChain(ours, o, 4), ['Softmax', 'Add', 'Mul', 'MatMul']);
        const scaleOf = (g: GraphProto, sm: NodeProto): number | undefined => {
          const add = g.node.find((n) => n.output[0] === sm.input[0]);
          const mul = g.node.find((n) => n.output[0] === add?.input[0]);
          return mul ? constFloat(g, mul.input[1]) : undefined;
        };
        assert.equal(scaleOf(ours, o), scaleOf(ref, r), `${o.name} scale`);
        assert.deepEqual(consumersOf(ours, o.output[0]).map((n) => n.opType), consumersOf(ref, r.output[0]).map((n) => n.opType));
        const kOps = (g: GraphProto, sm: NodeProto): string[] => {
          const add = g.node.find((n) => n.output[0] === sm.input[0]) as NodeProto;
          const zero = g.node.find((n) => n.output[0] === add.input[1]) as NodeProto;
          return upChain(g, zero, 2);
        };
        assert.deepEqual(kOps(ours, o), kOps(ref, r), `${o.name}: the dead 0·ConstantOfShape term`);
      }
      assert.equal(ours.initializer.length, ref.initializer.length, 'same number of initializers');
    });

    it('UNet: covers every op type on the reference sample → 16×16 attn2 Softmax path', function () {
      const ref = graphOf(loadProto(refFile('sd-tiny-v1', 'onnx', 'unet', 'model.onnx')));
      const ours = graphOf(loadProto(join(sdDir, 'unet', 'model.onnx')));
      const targets = (g: GraphProto): string[] => softmaxes(g)
        .filter((n) => /^\/(down_blocks\.2|up_blocks\.1)\/.*\/attn2\/Softmax$/.test(n.name)).map((n) => n.output[0]);
      assert.equal(targets(ref).length, 5);
      const refOps = pathOpTypes(ref, 'sample', targets(ref));
      const ourOps = pathOpTypes(ours, 'sample', targets(ours));
      const missing = [...refOps].filter((op) => !ourOps.has(op));
      assert.deepEqual(missing, [], `reference path ops ${[...refOps].sort().join(',')}`);
      const hist = histogram(ours);
      const refHist = histogram(ref);
      for (const op of ['Conv', 'InstanceNormalization', 'Softmax', 'Gemm', 'Erf', 'Resize', 'Sin', 'Cos', 'MatMul']) {
        assert.equal(hist.get(op), refHist.get(op), `${op} count`);
      }
    });

    it('text encoder and VAE decoder: same Softmax names and attention patterns as the reference', function () {
      for (const [file, depth] of [['text_encoder', 5], ['vae_decoder', 5]] as const) {
        const ref = graphOf(loadProto(refFile('sd-tiny-v1', 'onnx', file, 'model.onnx')));
        const ours = graphOf(loadProto(join(sdDir, file, 'model.onnx')));
        assert.deepEqual(softmaxes(ours).map((n) => n.name), softmaxes(ref).map((n) => n.name), file);
        for (const [i, r] of softmaxes(ref).entries()) {
          assert.deepEqual(upChain(ours, softmaxes(ours)[i], depth), upChain(ref, r, depth), `${file} ${r.name}`);
        }
        assert.deepEqual(ours.input.map((x) => x.name), ref.input.map((x) => x.name));
        assert.deepEqual(ours.output.map((x) => x.name), ref.output.map((x) => x.name));
      }
      const te = graphOf(loadProto(join(sdDir, 'text_encoder', 'model.onnx')));
      const t = te.input[0].type?.value;
      assert.equal(t?.case === 'tensorType' ? t.value.elemType : -1, 6, 'input_ids is INT32 like diffusers exports');
      const q = te.node.find((n) => n.name === '/text_model/encoder/layers.0/self_attn/Mul');
      assert.ok(q && q.input[0].includes('q_proj'), 'q is scaled by a Mul on q_proj output, before MatMul');
      const argmax = te.node.find((n) => n.opType === 'ArgMax');
      assert.equal(Number(argmax?.attribute.find((a) => a.name === 'select_last_index')?.i), 0);
    });
  });

  describe('ViT, DINO and CLIP folders', function () {
    it('ViT: transformers.js layout; logits; 4-D attention MatMul → Div(√d) → Softmax → MatMul, rows sum to 1', async function () {
      const dir = join(tmp, 'vit');
      buildVitFolder(dir, vitTinyConfig(0));
      assert.deepEqual(listFiles(dir), ['config.json', 'onnx/model.onnx', 'preprocessor_config.json']);
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { architectures: string[]; id2label: Record<string, string> };
      assert.deepEqual(cfg.architectures, ['ViTForImageClassification']);
      assert.equal(Object.keys(cfg.id2label).length, 10);
      const m = loadProto(join(dir, 'onnx', 'model.onnx'));
      const g = graphOf(m);
      const sm = softmaxes(g);
      assert.deepEqual(sm.map((n) => n.name), [0, 1, 2, 3].map((i) => `/vit/encoder/layer.${i}/attention/attention/Softmax`));
      for (const n of sm) {
        assert.deepEqual(upChain(g, n, 3), ['Softmax', 'Div', 'MatMul']);
        const div = g.node.find((x) => x.output[0] === n.input[0]) as NodeProto;
        assert.equal(constFloat(g, div.input[1]), 4);
        g.output.push(create(ValueInfoProtoSchema, { name: n.output[0] }));
      }
      if (HAVE_REF) {
        const ref = graphOf(loadProto(refFile('vit-tiny', 'model.onnx')));
        assert.deepEqual([...histogram(g).keys()].sort(), [...histogram(ref).keys()].sort(), 'same op types as the reference ViT');
        assert.equal(g.node.length, ref.node.length, 'same node count as the reference ViT');
      } else noReference('op types and node count against the reference ViT');
      const s = await ort.InferenceSession.create(toBinary(ModelProtoSchema, m), SESSION);
      const o = await s.run({ pixel_values: new ort.Tensor('float32', wave(3 * 224 * 224, 0.001), [1, 3, 224, 224]) });
      await s.release();
      assert.deepEqual(o.logits.dims, [1, 10]);
      assertFinite(o.logits.data as Float32Array, 'logits');
      const a = o[sm[0].output[0]];
      assert.deepEqual(a.dims, [1, 4, 197, 197]);
      const p = a.data as Float32Array;
      for (let r = 0; r < 4 * 197; r += 97) {
        const sum = p.slice(r * 197, r * 197 + 197).reduce((x, y) => x + y, 0);
        assert.ok(Math.abs(sum - 1) < 1e-4);
      }
    });

    it('DINO variant: ViTModel with last_hidden_state', async function () {
      const dir = join(tmp, 'dino');
      buildVitFolder(dir, { ...vitTinyConfig(0), variant: 'dino' });
      const s = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'), SESSION);
      const o = await s.run({ pixel_values: new ort.Tensor('float32', wave(3 * 224 * 224, 0.002), [1, 3, 224, 224]) });
      await s.release();
      assert.deepEqual(o.last_hidden_state.dims, [1, 197, 64]);
      assertFinite(o.last_hidden_state.data as Float32Array, 'last_hidden_state');
      const g = graphOf(loadProto(join(dir, 'onnx', 'model.onnx')));
      assert.equal(softmaxes(g)[3].name, '/encoder/layer.3/attention/attention/Softmax');
    });

    it('CLIP: reference layout and outputs; logits = exp(logit_scale)·cos(text, image)', async function () {
      const dir = join(tmp, 'clip');
      buildClipFolder(dir, clipTinyConfig(0));
      const files = listFiles(dir);
      for (const f of ['model.onnx', 'config.json', 'preprocessor_config.json', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
        assert.ok(files.includes(f), f);
      }
      const g = graphOf(loadProto(join(dir, 'model.onnx')));
      if (HAVE_REF) {
        const ref = graphOf(loadProto(refFile('clip-tiny', 'model.onnx')));
        assert.deepEqual(g.input.map((x) => x.name), ref.input.map((x) => x.name));
        assert.deepEqual(g.output.map((x) => x.name), ref.output.map((x) => x.name));
        // Same attention patterns, names without the reference's `/m` export-wrapper prefix.
        assert.deepEqual(softmaxes(g).map((n) => n.name), softmaxes(ref).map((n) => n.name.replace(/^\/m\//, '/')));
        for (const [i, r] of softmaxes(ref).entries()) assert.deepEqual(upChain(g, softmaxes(g)[i], 4), upChain(ref, r, 4), r.name);
      } else noReference('inputs, outputs and attention patterns against the reference CLIP');
      const tok = tinyTokenizer();
      const texts = ['a red disk', 'a blue square'].map((t) => encode(tok, t));
      const mask = texts.map((ids) => ids.map((_, i) => (i <= ids.indexOf(tok.eosId) ? 1 : 0)));
      const s = await ort.InferenceSession.create(join(dir, 'model.onnx'), SESSION);
      const o = await s.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(texts.flat().map(BigInt)), [2, 77]),
        attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.flat().map(BigInt)), [2, 77]),
        pixel_values: new ort.Tensor('float32', wave(3 * 224 * 224, 0.003), [1, 3, 224, 224]),
      });
      await s.release();
      assert.deepEqual(o.logits_per_image.dims, [1, 2]);
      assert.deepEqual(o.logits_per_text.dims, [2, 1]);
      const te = o.text_embeds.data as Float32Array;
      const ie = o.image_embeds.data as Float32Array;
      for (let b = 0; b < 2; b++) {
        const v = te.slice(b * 32, b * 32 + 32);
        assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5, 'text_embeds are unit vectors');
        const cos = v.reduce((acc, x, i) => acc + x * ie[i], 0);
        const expected = Math.exp(2.6592) * cos;
        assert.ok(Math.abs((o.logits_per_text.data as Float32Array)[b] - expected) < 1e-4);
        assert.equal((o.logits_per_image.data as Float32Array)[b], (o.logits_per_text.data as Float32Array)[b]);
      }
    });
  });

  describe('consumed by transformers.js (the Optimum-layout reference consumer)', function () {
    it('loads the ViT folder (config, preprocessor, onnx/model.onnx) and the CLIP tokenizer.json', async function () {
      const tjs = await import('@huggingface/transformers');
      tjs.env.allowRemoteModels = false;
      tjs.env.localModelPath = tmp + '/';
      const vitDir = join(tmp, 'vit');
      if (!existsSync(vitDir)) buildVitFolder(vitDir, vitTinyConfig(0));
      const clipDir = join(tmp, 'clip');
      if (!existsSync(clipDir)) buildClipFolder(clipDir, clipTinyConfig(0));
      const tok = tinyTokenizer();
      const hf = await tjs.AutoTokenizer.from_pretrained('clip');
      const ids = (hf('a cat and a frog').input_ids.tolist() as bigint[][])[0].map(Number);
      assert.deepEqual(ids, encode(tok, 'a cat and a frog').slice(0, ids.length));
      const model = await tjs.AutoModelForImageClassification.from_pretrained('vit', { dtype: 'fp32' });
      const proc = await tjs.AutoProcessor.from_pretrained('vit');
      const pixels = new Uint8ClampedArray(64 * 48 * 3).map((_, i) => (i * 37) % 256);
      const out = await model(await proc(new tjs.RawImage(pixels, 64, 48, 3)));
      assert.deepEqual(out.logits.dims, [1, 10]);
      assertFinite(out.logits.data as Float32Array, 'transformers.js logits');
      await model.dispose();
    });
  });

  describe('cache', function () {
    it('ensureTinyModels builds once, stamps the folders and reuses them', async function () {
      const cache = join(tmp, 'cache');
      const a = await ensureTinyModels(cache);
      for (const d of Object.values(a)) assert.ok(existsSync(join(d, STAMP_FILE)), `${d} stamped`);
      const mtime = statSync(join(a.sd, 'unet', 'weights.pb')).mtimeMs;
      const stamps = Object.values(a).map((d) => statSync(join(d, STAMP_FILE)).mtimeMs);
      const b = await ensureTinyModels(cache);
      assert.deepEqual(b, a);
      // Reuse, not rebuild: neither the weights nor any stamp were rewritten.
      assert.equal(statSync(join(a.sd, 'unet', 'weights.pb')).mtimeMs, mtime);
      assert.deepEqual(Object.values(a).map((d) => statSync(join(d, STAMP_FILE)).mtimeMs), stamps, 'second call reuses the folders');
      writeFileSync(join(a.vit, STAMP_FILE), '{"builderVersion":0}');
      await ensureTinyModels(cache);
      assert.notEqual(JSON.parse(readFileSync(join(a.vit, STAMP_FILE), 'utf8')).builderVersion, 0, 'stale stamp → rebuilt');
      assert.deepEqual(readdirSync(cache).filter((f) => f.includes('.tmp-')), [], 'no temporary folders left');
    });
  });
});
