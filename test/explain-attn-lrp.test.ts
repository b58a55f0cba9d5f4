// attn-lrp (engine/explain/lrp/attn-rules.ts, attn-engine.ts) against the LXT library's own AttnLRP rules: the fixtures
// under test/fixtures/attn-lrp were made by make_attn_lrp_refs.py, which runs lxt.efficient's ViT patches (GELU and
// LayerNorm identity rules, CP-LRP via nn.MultiheadAttention) and its transformers attention wrapper (AttnLRP's
// uniform rule) on the weights of
//   - vit-tiny (../shared/reference, 224 px, patch 16, 4 blocks × 4 heads, dim 64; skipped visibly when absent), and
//   - geo3 (committed here: 48 px, patch 8 → 6×6, 5 blocks × 3 heads, dim 48, non-zero biases and LayerNorm β),
// then checks conservation where the rules promise it (CP-LRP: the input plus the constants that absorb relevance —
// biases, LayerNorm β, class token, position embedding — hold exactly the logit) and the relevance sums LXT measured.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { ExplainModel } from '../engine/explain/model.js';
import type { PreparedImage } from '../engine/explain/preprocess.js';
import { AttnLrpEngine, attnLrpRules, buildAttnLrp, poolToGrid, LrpUnsupportedOpError, type AttnLrpAttention } from '../engine/explain/lrp/index.js';
import { buildVjp } from '../engine/onnx/autodiff/build.js';
import { cloneModel } from '../engine/onnx/model.js';
import { tensorFromProto } from '../engine/onnx/tensor.js';
import { openSession, runSession, ort } from '../engine/onnx/session.js';
import { requireReference } from './helpers/reference.js';
import { withNativeLayerNorm } from './helpers/native-layernorm.js';
import { relToMax } from './helpers/compare.js';

const FIXTURES = join(process.cwd(), 'test', 'fixtures', 'attn-lrp');
type Key = 'vit-tiny' | 'geo3';
interface CaseMeta {
  logits: Record<string, number>;
  conservation: Record<string, { logit: number; input_sum: number; constants_sum: number }>;
  torch_f32_vs_f64_rel: Record<string, number>;
}
const meta = JSON.parse(readFileSync(join(FIXTURES, 'meta.json'), 'utf8')) as Record<Key, CaseMeta>;
const VARIANTS: AttnLrpAttention[] = ['cp', 'attnlrp'];

function expectRel(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4): void {
  const e = relToMax(got, want);
  console.log(`      ${name}: max rel diff = ${e.toExponential(2)}`);
  assert.ok(e <= tol, `${name}: relative difference ${e} > ${tol}`);
}

function prepared(pixels: { shape: number[]; data: Float32Array }): PreparedImage {
  const [, , h, w] = pixels.shape;
  return { pixelValues: pixels.data, dims: [1, 3, h, w], rgb: new Uint8Array(h * w * 3), height: h, width: w, originalSize: { height: h, width: w } };
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** The constants that absorb relevance in transformers' ViT export: every bias (linear, conv, LayerNorm β), the class
 * token and the position embedding, as the tensors the graph reads them through (an exporter's Identity alias of a
 * deduplicated bias; the class token's Expand, which static shapes fold to a constant of its own). All-zero biases
 * (vit-tiny's, as transformers initialises them) absorb nothing, and the builder folds x + 0 away: they are left out. */
function absorbingConstants(model: ExplainModel): { tensor: string; value: Float32Array }[] {
  const g = model.onnx.proto.graph;
  const out: { tensor: string; value: Float32Array }[] = [];
  for (const init of g?.initializer ?? []) {
    if (!/\.bias$|cls_token$|position_embeddings$/.test(init.name)) continue;
    const value = tensorFromProto(init).data as Float32Array;
    if (value.every((v) => v === 0)) continue;
    for (const n of g?.node ?? []) {
      if (!n.input.includes(init.name)) continue;
      const viaOutput = n.opType === 'Identity' || n.opType === 'Expand';
      const tensor = viaOutput ? n.output[0] : init.name;
      if (!out.some((c) => c.tensor === tensor)) out.push({ tensor, value });
    }
  }
  return out;
}

interface Case {
  name: string;
  key: Key;
  classes: number[];
  modelDir: (ctx: Mocha.Context) => string;
  pixels: (ctx: Mocha.Context) => string;
  grid: number;
}

const cases: Case[] = [
  {
    name: 'vit-tiny', key: 'vit-tiny', classes: [3], grid: 14,
    modelDir: (ctx) => join(requireReference(ctx), 'vit-tiny'),
    pixels: (ctx) => join(requireReference(ctx), 'vit-tiny', 'ref', 'pixel_values.npy'),
  },
  {
    name: 'geo3 (48 px, patch 8, 5 blocks, 3 heads)', key: 'geo3', classes: [0, 2], grid: 6,
    modelDir: () => join(FIXTURES, 'geo3'), pixels: () => join(FIXTURES, 'geo3', 'pixel_values.npy'),
  },
];

for (const c of cases) {
  describe(`explain attn-lrp vs LXT: ${c.name}`, function () {
    let model: ExplainModel;
    let engine: AttnLrpEngine;
    let image: PreparedImage;

    before(async function () {
      model = await ExplainModel.load(c.modelDir(this));
      engine = new AttnLrpEngine(model);
      image = prepared(readNpyFloat32(c.pixels(this)));
    });
    after(async () => {
      await engine?.release();
      await model?.release();
    });

    for (const cls of c.classes) {
      for (const v of VARIANTS) {
        it(`class ${cls}, ${v}: LXT's heatmap (x ⊙ ∂̂y/∂x summed over channels) and its relevance sum`, async () => {
          const r = await engine.relevance(image, cls, v);
          const want = readNpyFloat32(join(FIXTURES, c.key, `heatmap_${v}_cls${cls}.npy`));
          assert.deepEqual(want.shape, [r.heatmap.height, r.heatmap.width]);
          console.log(`      (LXT's own float32 run vs its float64 run: ${meta[c.key].torch_f32_vs_f64_rel[`${v}_cls${cls}`].toExponential(2)})`);
          expectRel('heatmap', r.heatmap.data, want.data);
          assert.ok(Math.abs(r.logits[cls] - meta[c.key].logits[`cls${cls}`]) < 1e-4, 'logit');
          const ref = meta[c.key].conservation[`${v}_cls${cls}`];
          const got = sum(r.input);
          console.log(`      Σ input relevance ${got.toFixed(6)} (LXT ${ref.input_sum.toFixed(6)}), logit ${ref.logit.toFixed(6)}`);
          assert.ok(Math.abs(got - ref.input_sum) <= 1e-4 * Math.max(Math.abs(ref.input_sum), Math.abs(ref.logit)), 'Σ input relevance');
          // The per-patch map is the heatmap pooled over patches, and keeps its total.
          const grid = poolToGrid(r.heatmap, c.grid, c.grid);
          assert.ok(Math.abs(sum(grid.data) - sum(r.heatmap.data)) < 1e-4 * Math.abs(ref.logit) + 1e-6);
        });
      }

      it(`class ${cls}: conservation — input + absorbing constants = logit under CP-LRP; AttnLRP's softmax absorbs as LXT measured`, async () => {
        const constants = absorbingConstants(model);
        assert.ok(constants.length >= 2, 'expected the bias / token initializers of an HF ViT export');
        for (const v of VARIANTS) {
          const vjp = buildVjp(model.onnx, { seeds: ['logits'], wrt: ['pixel_values', ...constants.map((k) => k.tensor)], inputDims: { pixel_values: image.dims }, rules: attnLrpRules(model.onnx, v) });
          const session = await openSession(vjp.model);
          try {
            const dims = vjp.specs.logits.dims;
            const oneHot = new Float32Array(dims[1]);
            oneHot[cls] = 1;
            const out = await runSession(session, {
              pixel_values: new ort.Tensor('float32', image.pixelValues, image.dims),
              [vjp.cotangents.logits]: new ort.Tensor('float32', oneHot, dims),
            });
            const relevanceOf = (t: string, value: Float32Array): number => {
              const g = out[vjp.gradients[t]].data as Float32Array;
              let s = 0;
              for (let i = 0; i < g.length; i++) s += g[i] * value[i];
              return s;
            };
            assert.deepEqual(vjp.warnings, [], 'every absorbing constant reaches the logits');
            let absorbed = 0;
            for (const k of constants) absorbed += relevanceOf(k.tensor, k.value);
            const input = relevanceOf('pixel_values', image.pixelValues);
            const logit = (out.logits.data as Float32Array)[cls];
            const ref = meta[c.key].conservation[`${v}_cls${cls}`];
            console.log(`      ${v}: Σ input ${input.toFixed(6)} + Σ constants ${absorbed.toFixed(6)} − logit ${logit.toFixed(6)} = ${(input + absorbed - logit).toExponential(2)} (LXT: ${(ref.input_sum + ref.constants_sum - ref.logit).toExponential(2)})`);
            const scale = Math.max(Math.abs(logit), Math.abs(input), Math.abs(absorbed));
            assert.ok(Math.abs(absorbed - ref.constants_sum) <= 1e-4 * scale, `${v}: Σ constants ${absorbed} vs LXT ${ref.constants_sum}`);
            if (v === 'cp') assert.ok(Math.abs(input + absorbed - logit) <= 1e-5 * scale, 'CP-LRP conserves the logit');
          } finally {
            await session.release();
          }
        }
      });
    }
  });
}

describe('explain attn-lrp: rules', () => {
  const dir = join(FIXTURES, 'geo3');
  const pixels = (): { shape: number[]; data: Float32Array } => readNpyFloat32(join(dir, 'pixel_values.npy'));

  it('an Erf outside a GELU chain and a division by a computed tensor fail with op type and node name', async () => {
    const model = await ExplainModel.load(dir);
    try {
      const erfCopy = cloneModel(model.onnx);
      const erf = erfCopy.proto.graph?.node.find((n) => n.opType === 'Erf' && n.name.includes('layer.3'));
      assert.ok(erf);
      // Feed the Erf from a tensor that is not x/√2 of a GELU: the chain is no longer recognised.
      const div = erfCopy.proto.graph?.node.find((n) => n.output[0] === erf.input[0]);
      assert.ok(div);
      erf.input[0] = div.input[0];
      assert.throws(() => buildAttnLrp(erfCopy, { seed: 'logits', input: 'pixel_values', inputDims: { pixel_values: [1, 3, 48, 48] }, attention: 'cp' }),
        (e: unknown) => e instanceof LrpUnsupportedOpError && e.opType === 'Erf' && e.message.includes(erf.name));

      // A LayerNorm that divides by the variance (not its Sqrt) is outside the identity rule's pattern.
      const divCopy = cloneModel(model.onnx);
      const nodes = divCopy.proto.graph?.node ?? [];
      const lnDiv = nodes.find((n) => n.opType === 'Div' && n.name.includes('layer.1/layernorm_after'));
      assert.ok(lnDiv);
      const sqrt = nodes.find((n) => n.output[0] === lnDiv.input[1]);
      assert.ok(sqrt && sqrt.opType === 'Sqrt');
      lnDiv.input[1] = sqrt.input[0];
      assert.throws(() => buildAttnLrp(divCopy, { seed: 'logits', input: 'pixel_values', inputDims: { pixel_values: [1, 3, 48, 48] }, attention: 'attnlrp' }),
        (e: unknown) => e instanceof LrpUnsupportedOpError && e.opType === 'Div' && e.message.includes(lnDiv.name));
    } finally {
      await model.release();
    }
  });

  it('a native LayerNormalization (opset 17 exports) gives the heatmap of the decomposed chain', async () => {
    const model = await ExplainModel.load(dir);
    try {
      const { model: native, replaced } = withNativeLayerNorm(model.onnx, 1e-12);
      assert.equal(replaced, 2 * 5 + 1);
      const px = pixels();
      const run = async (m: typeof native, v: AttnLrpAttention): Promise<Float32Array> => {
        const vjp = buildAttnLrp(m, { seed: 'logits', input: 'pixel_values', inputDims: { pixel_values: px.shape }, attention: v });
        const session = await openSession(vjp.model);
        try {
          const oneHot = new Float32Array(7);
          oneHot[2] = 1;
          const out = await runSession(session, {
            pixel_values: new ort.Tensor('float32', px.data, px.shape),
            [vjp.cotangents.logits]: new ort.Tensor('float32', oneHot, [1, 7]),
          });
          return out[vjp.gradients.pixel_values].data as Float32Array;
        } finally {
          await session.release();
        }
      };
      for (const v of VARIANTS) expectRel(`${v}: ĝ of pixel_values, native vs chain`, await run(native, v), await run(model.onnx, v), 1e-4);
    } finally {
      await model.release();
    }
  });
});

describe('explain attn-lrp through the explain pipeline (geo3)', () => {
  const dir = join(FIXTURES, 'geo3');

  it('runs when named, per-patch map = pooled heatmap, writes the documented files; --attn-lrp-attention picks the rule', async () => {
    const { explainWithModel } = await import('../engine/explain/api.js');
    const { writeExplainOutputs, explainJson } = await import('../engine/jobs/explain-outputs.js');
    const { GradientEngine } = await import('../engine/explain/gradients.js');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const model = await ExplainModel.load(dir);
    const grads = new GradientEngine(model);
    const out = mkdtempSync(join(tmpdir(), 'heed-attn-lrp-'));
    try {
      const image = prepared(readNpyFloat32(join(dir, 'pixel_values.npy')));
      const res = await explainWithModel(model, grads, image, { methods: ['attn-lrp'], classIndex: 2 });
      assert.equal(res.lrp.length, 1);
      const r = res.lrp[0];
      assert.equal(r.method, 'attn-lrp');
      assert.equal(r.attention, 'cp', "LXT's ViT map is the default");
      assert.ok(r.pixels);
      expectRel('pipeline heatmap (cp)', r.pixels.data, readNpyFloat32(join(FIXTURES, 'geo3', 'heatmap_cp_cls2.npy')).data);
      assert.deepEqual([r.map.height, r.map.width], [6, 6]);
      // Patch (1, 2) of the 6×6 grid is pixels 8..15 × 16..23 of the 48×48 heatmap.
      let patch = 0;
      for (let y = 8; y < 16; y++) for (let x = 16; x < 24; x++) patch += r.pixels.data[y * 48 + x];
      assert.ok(Math.abs(r.map.data[1 * 6 + 2] - patch) < 1e-6);
      assert.ok(res.timings['attn-lrp'] !== undefined);

      const written = await writeExplainOutputs(res, join(out, 'o'), join(out, 't'));
      assert.ok(written.files.includes('attn_lrp_2.png'));
      assert.ok(written.traceFiles.includes('attn_lrp_2.npy') && written.traceFiles.includes('attn_lrp_2_pixels.npy'));
      const pix = readNpyFloat32(join(out, 't', 'attn_lrp_2_pixels.npy'));
      assert.deepEqual(pix.shape, [48, 48]);
      const json = explainJson(res) as { methods: { lrp: { method: string; attention?: string; map: number[][] }[] } };
      assert.equal(json.methods.lrp[0].attention, 'cp');
      assert.equal(json.methods.lrp[0].map.length, 6);

      const full = await explainWithModel(model, grads, image, { methods: ['attn-lrp'], classIndex: 2, attnLrpAttention: 'attnlrp' });
      assert.equal(full.lrp[0].attention, 'attnlrp');
      expectRel('pipeline heatmap (attnlrp)', full.lrp[0].pixels!.data, readNpyFloat32(join(FIXTURES, 'geo3', 'heatmap_attnlrp_cls2.npy')).data);
      assert.ok(relToMax(full.lrp[0].pixels!.data, r.pixels.data) > 1e-2, 'the two attention rules give different maps');

      await assert.rejects(explainWithModel(model, grads, image, { methods: ['attn-lrp'], attnLrpAttention: 'softmax' as AttnLrpAttention }),
        (e: unknown) => e instanceof Error && (e as { field?: string }).field === 'attnLrpAttention' && /cp or attnlrp/.test(e.message));
    } finally {
      rmSync(out, { recursive: true, force: true });
      await grads.release();
      await model.release();
    }
  });
});
