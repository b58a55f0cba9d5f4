// Conformance of the explain engine with the outputs of the ORIGINAL Python code on the reference tiny models
// (../shared/reference/vit-tiny and clip-tiny): transformers' processors, vit-explain's rollout / grad_rollout,
// probing-vits' mean attention distance and the Chefer CLIP notebook's `interpret`.
// Tolerances (max |Heed − reference|), chosen from the measured ONNX-vs-torch agreement (~1e-6, README of the
// reference) with a margin; the measured values are printed by the tests:
//   pixel_values: bit-exact; logits / similarities: 2e-5; attention probs: 1e-5;
//   rollout masks (values in [0,1]): 2e-5; gradient-rollout masks: 2e-5; hook gradients: 1e-6 absolute;
//   mean attention distance (pixels, ~120): 1e-4; Chefer image relevance: 1e-6; Chefer text relevance (~1): 5e-6.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { readNpy, readNpyFloat32 } from '../engine/io/npy.js';
import { ExplainModel } from '../engine/explain/model.js';
import { GradientEngine } from '../engine/explain/gradients.js';
import { explainWithModel } from '../engine/explain/api.js';
import { attentionRollout, fuseHeads, gradientRollout, softmaxInputGradient, type HeadFusion } from '../engine/explain/rollout.js';
import { meanAttentionDistances } from '../engine/explain/distance.js';
import type { LayerTensor } from '../engine/explain/tensor.js';
import { requireReference } from './helpers/reference.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function expectClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const d = maxAbsDiff(got, want);
  console.log(`      ${name}: max |diff| = ${d.toExponential(2)} (tolerance ${tol})`);
  assert.ok(d <= tol, `${name}: max |diff| ${d} > ${tol}`);
}

function refLayers(data: Float32Array, layers: number, heads: number, n: number): LayerTensor[] {
  const size = heads * n * n;
  return Array.from({ length: layers }, (_, l) => ({ heads, queries: n, keys: n, data: data.slice(l * size, (l + 1) * size) }));
}

describe('explain: conformance with vit-tiny (vit-explain, probing-vits)', function () {
  let ref: string;
  let model: ExplainModel;
  let grads: GradientEngine;

  before(async function () {
    ref = join(requireReference(this), 'vit-tiny');
    model = await ExplainModel.load(ref);
    grads = new GradientEngine(model);
  });
  after(async () => {
    await grads?.release();
    await model?.release();
  });
  const refFile = (name: string): Float32Array => readNpyFloat32(join(ref, 'ref', name)).data;
  const image = async () => model.prepareImage(join(ref, '..', 'synthetic_image.png'));

  it('preprocesses the image bit-exactly like ViTImageProcessor', async () => {
    const img = await image();
    assert.deepEqual(img.dims, [1, 3, 224, 224]);
    assert.equal(maxAbsDiff(img.pixelValues, refFile('pixel_values.npy')), 0);
  });

  it('finds the 4 attention layers and reproduces logits and attention probabilities', async () => {
    assert.equal(model.visionSites.length, 4);
    const fwd = await model.forward(await image());
    expectClose('logits', fwd.logits!, refFile('logits.npy'), 2e-5);
    const flat = new Float32Array(4 * 4 * 197 * 197);
    fwd.vision.forEach((l, i) => flat.set(l.data, i * l.data.length));
    expectClose('attentions', flat, refFile('attentions.npy'), 1e-5);
    // Head fusion done by the forward graph (onnxruntime reductions) equals fusing the exposed maps in JS.
    for (const f of ['mean', 'max', 'min'] as const) {
      fwd.vision.forEach((l, i) => expectClose(`in-graph ${f} fusion, layer ${i}`, fwd.fused![f][i], fuseHeads(l, f), 1e-7));
    }
  });

  it('reproduces vit-explain rollout for each fusion with discard 0 and 0.9 (through explainImage)', async () => {
    const res = await explainWithModel(model, grads, await image(), {
      methods: ['rollout'], headFusion: ['mean', 'max', 'min'], discard: [0, 0.9],
    });
    assert.equal(res.rollout.length, 6);
    for (const r of res.rollout) {
      assert.deepEqual([r.map.height, r.map.width], [14, 14]);
      expectClose(`rollout ${r.fusion} ${r.discard}`, r.map.data, refFile(`rollout_${r.fusion}_discard${r.discard.toFixed(1)}.npy`), 2e-5);
    }
  });

  it('rollout on the reference attentions themselves agrees to float32 rounding', () => {
    const layers = refLayers(refFile('attentions.npy'), 4, 4, 197);
    for (const fusion of ['mean', 'max', 'min'] as HeadFusion[]) {
      for (const d of [0, 0.9]) {
        const map = attentionRollout(layers, { headFusion: fusion, discardRatio: d, grid: { height: 14, width: 14 } });
        expectClose(`rollout(ref A) ${fusion} ${d}`, map.data, refFile(`rollout_${fusion}_discard${d.toFixed(1)}.npy`), 2e-6);
      }
    }
  });

  it('VJP gradients, turned into softmax-input gradients, equal the hook gradients vit-explain collected (reversed order)', async () => {
    const [g] = await grads.forClasses(await image(), [3]);
    const hook = refFile('grad_rollout_hook_gradients.npy');
    const size = 4 * 197 * 197;
    for (let l = 0; l < 4; l++) {
      const gin = softmaxInputGradient(g.vision[l], g.visionGrads[l]);
      // attention_gradients[k] belongs to layer 3 − k (backward hooks fire last layer first).
      expectClose(`hook gradient of layer ${l}`, gin.data, hook.subarray((3 - l) * size, (4 - l) * size), 1e-6);
    }
  });

  it('reproduces vit-explain gradient rollout for class 3 with discard 0 and 0.9', async () => {
    const res = await explainWithModel(model, grads, await image(), { methods: ['grad-rollout'], classIndex: 3, discard: [0, 0.9] });
    assert.equal(res.gradRollout.length, 2);
    for (const r of res.gradRollout) {
      assert.equal(r.classIndex, 3);
      assert.equal(r.variant, 'vit-explain');
      expectClose(`grad rollout cat3 ${r.discard}`, r.map.data, refFile(`grad_rollout_cat3_discard${r.discard.toFixed(1)}.npy`), 2e-5);
    }
  });

  it('gradient rollout math on the reference hook gradients reproduces the reference', () => {
    const layers = refLayers(refFile('attentions.npy'), 4, 4, 197);
    const hook = refLayers(refFile('grad_rollout_hook_gradients.npy'), 4, 4, 197);
    const aligned = [3, 2, 1, 0].map((k) => hook[k]); // forward order: layer l ← hook list entry 3 − l
    for (const d of [0, 0.9]) {
      const map = gradientRollout(layers, aligned, { discardRatio: d, grid: { height: 14, width: 14 } });
      expectClose(`grad rollout(ref) ${d}`, map.data, refFile(`grad_rollout_cat3_discard${d.toFixed(1)}.npy`), 2e-6);
    }
  });

  it('the corrected gradient-rollout variant differs from the quirk reproduction', async () => {
    const img = await image();
    const quirk = await explainWithModel(model, grads, img, { methods: ['grad-rollout'], classIndex: 3, discard: 0.9 });
    const fixed = await explainWithModel(model, grads, img, { methods: ['grad-rollout'], classIndex: 3, discard: 0.9, gradRollout: 'corrected' });
    assert.ok(maxAbsDiff(quirk.gradRollout[0].map.data, fixed.gradRollout[0].map.data) > 1e-3);
  });

  it('reproduces probing-vits mean attention distance', async () => {
    const res = await explainWithModel(model, grads, await image(), { methods: ['distance'] });
    expectClose('mean attention distance', res.distance!.values.flat(), refFile('mean_attention_distance.npy'), 1e-4);
    const onRef = meanAttentionDistances(refLayers(refFile('attentions.npy'), 4, 4, 197), { height: 14, width: 14 }, { height: 16, width: 16 }, 1);
    expectClose('mean attention distance (ref A)', onRef.flat(), refFile('mean_attention_distance.npy'), 2e-5);
  });
});

describe('explain: conformance with clip-tiny (Chefer CLIP notebook)', function () {
  let ref: string;
  let model: ExplainModel;
  let grads: GradientEngine;
  const texts = ['a red disk', 'a blue square'];

  before(async function () {
    ref = join(requireReference(this), 'clip-tiny');
    model = await ExplainModel.load(ref);
    grads = new GradientEngine(model);
  });
  after(async () => {
    await grads?.release();
    await model?.release();
  });
  const refFile = (name: string): Float32Array => readNpyFloat32(join(ref, 'ref', name)).data;
  const image = async () => model.prepareImage(join(ref, '..', 'synthetic_image.png'));

  it('reads the CLIP config quirk (no vision patch_size → 32) and finds 3 vision + 2 text attention layers', () => {
    assert.deepEqual(model.info.patch, { height: 32, width: 32 });
    assert.equal(model.visionSites.length, 3);
    assert.equal(model.textSites.length, 2);
  });

  it('preprocesses bit-exactly like CLIPImageProcessor and tokenises like the reference', async () => {
    const img = await image();
    assert.equal(maxAbsDiff(img.pixelValues, refFile('pixel_values.npy')), 0);
    const tok = model.tokenize(texts);
    assert.deepEqual(Array.from(tok.ids), Array.from(readNpy(join(ref, 'ref', 'input_ids.npy')).data as BigInt64Array));
    assert.deepEqual(Array.from(tok.mask), Array.from(readNpy(join(ref, 'ref', 'attention_mask.npy')).data as BigInt64Array));
    assert.deepEqual(tok.eot, [4, 4]);
  });

  it('reproduces logits_per_image', async () => {
    const fwd = await model.forward(await image(), model.tokenize(texts));
    expectClose('logits_per_image', fwd.similarities!, refFile('logits_per_image.npy'), 2e-5);
    assert.equal(fwd.text!.length, 2);
    // [b·h, q, k] layout: the in-graph fusion reshapes to [b, h, q, k] first.
    for (const f of ['mean', 'max', 'min'] as const) {
      fwd.vision.forEach((l, i) => expectClose(`in-graph ${f} fusion, layer ${i}`, fwd.fused![f][i], fuseHeads(l, f), 1e-7));
    }
  });

  for (const [start, suffix] of [['last', 'default_last_layer'], ['all', 'all_layers']] as const) {
    it(`reproduces Chefer image and text relevance, start layer '${start}'`, async () => {
      const res = await explainWithModel(model, grads, await image(), { methods: ['chefer'], texts, cheferStart: start });
      assert.equal(res.chefer.length, 2);
      const imageRel = new Float32Array(2 * 49);
      const textRel = new Float32Array(2 * 77 * 77);
      res.chefer.forEach((c, t) => {
        assert.deepEqual([c.image.height, c.image.width], [7, 7]);
        imageRel.set(c.image.data, t * 49);
        textRel.set(c.textRelevance!.data, t * 77 * 77);
      });
      expectClose(`image relevance ${suffix}`, imageRel, refFile(`image_relevance_${suffix}.npy`), 1e-6);
      expectClose(`text relevance ${suffix}`, textRel, refFile(`text_relevance_full_${suffix}.npy`), 5e-6);
      const meta = JSON.parse(readFileSync(join(ref, 'ref', 'meta.json'), 'utf8')) as {
        interpret: { results: Record<string, { tokens: string[]; scores_normalized: number[] }[]> };
      };
      meta.interpret.results[suffix].forEach((want, t) => {
        const got = res.chefer[t].tokens!;
        assert.deepEqual(got.map((x) => x.token + '</w>'), want.tokens);
        expectClose(`token scores ${suffix} text ${t}`, got.map((x) => x.normalized), want.scores_normalized, 1e-5);
      });
    });
  }

  it('the interpret batch (image repeated per text) gives the same logits as the plain forward', async () => {
    const g = await grads.forTexts(await image(), model.tokenize(texts));
    const want = refFile('logits_per_image.npy');
    for (const item of g) expectClose('interpret-batch logits row', item.scores, want, 2e-5);
  });
});
