// `heed explain` as a child process on the reference ViT and CLIP exports: the flags reach the explain engine and the
// traced arrays equal what vit-explain / probing-vits / the Chefer notebook computed (../shared/reference), at the
// tolerances of the engine's own conformance tests (rollout masks 2e-5, distance 1e-4 px, Chefer image 1e-6).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { explainImage, type ExplainOptions } from '../engine/explain/index.js';
import { explainJson } from '../engine/jobs/explain-outputs.js';
import { assertUserError, heed } from './cli-helpers.js';

type Nested = number[][];
/** The parts of explain.json's `methods` these tests read. */
interface ExplainJsonMethods {
  heads?: { layer: number; maps: Nested[] };
  rollout: { fusion: string; discard: number; normalization: string; map: Nested }[];
  gradRollout: { classIndex: number; variant: string; map: Nested }[];
  chefer: { start: string | number; image: Nested; tokens?: { token: string; score: number; normalized: number }[] }[];
  distance?: unknown;
  lrp: { method: string; classIndex: number; attention?: string; map: Nested }[];
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe('cli: explain on the reference exports (child process)', function () {
  let ref: string;
  let tmp: string;
  before(function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-explain-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('ViT: rollout (mean/min, discard 0 and 0.9), gradient rollout of --class 3, distance — files and reference values', async function () {
    const out = join(tmp, 'vit');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--image', join(ref, 'synthetic_image.png'),
      '--method', 'rollout,grad-rollout', '--method', 'distance', '--head-fusion', 'mean', '--head-fusion', 'min', '--discard', '0,0.9',
      '--class', '3', '--out', out, '--trace', join(out, 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { files: string[]; traceFiles: string[]; classes: { index: number }[] };
    // reference logits: class 9 (2.798) > class 1 (2.468) > class 7 (1.257)
    assert.deepEqual(j.classes.slice(0, 3).map((c) => c.index), [9, 1, 7]);
    for (const [fusion, d] of [['mean', '0.0'], ['mean', '0.9'], ['min', '0.0'], ['min', '0.9']] as const) {
      const got = readNpyFloat32(join(out, 'trace', `rollout_${fusion}_${d}.npy`));
      assert.deepEqual(got.shape, [14, 14]);
      const diff = maxAbsDiff(got.data, readNpyFloat32(join(ref, 'vit-tiny/ref', `rollout_${fusion}_discard${d}.npy`)).data);
      assert.ok(diff <= 2e-5, `rollout ${fusion} ${d}: ${diff}`);
      assert.ok(existsSync(join(out, `rollout_${fusion}_${d}.png`)));
    }
    for (const d of ['0.0', '0.9']) {
      const name = `grad_rollout_3_${d}.npy`;
      assert.ok(j.traceFiles.includes(name), `${name} in ${j.traceFiles.join(', ')}`);
      const diff = maxAbsDiff(readNpyFloat32(join(out, 'trace', name)).data, readNpyFloat32(join(ref, 'vit-tiny/ref', `grad_rollout_cat3_discard${d}.npy`)).data);
      assert.ok(diff <= 2e-5, `grad rollout ${d}: ${diff}`);
    }
    const dist = readNpyFloat32(join(out, 'trace', 'distance.npy'));
    assert.deepEqual(dist.shape, [4, 4]);
    assert.ok(maxAbsDiff(dist.data, readNpyFloat32(join(ref, 'vit-tiny/ref/mean_attention_distance.npy')).data) <= 1e-4);
    const chart = await sharp(join(out, 'distance.png')).metadata();
    assert.ok(chart.width! > 100 && chart.height! > 100);
    const ex = JSON.parse(readFileSync(join(out, 'explain.json'), 'utf8')) as { methods: { rollout: unknown[] } };
    assert.equal(ex.methods.rollout.length, 4);
  });

  it('CLIP: --text pairs give the reference similarities and Chefer image relevance', async function () {
    const out = join(tmp, 'clip');
    const r = await heed(['explain', '--model', join(ref, 'clip-tiny'), '--image', join(ref, 'synthetic_image.png'),
      '--text', 'a red disk', '--text', 'a blue square', '--method', 'chefer', '--out', out, '--trace', join(out, 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { similarities: { text: string; logit: number }[] };
    const refLogits = [0.1997557282447815, -1.4657422304153442];
    j.similarities.forEach((s, t) => assert.ok(Math.abs(s.logit - refLogits[t]!) <= 2e-5, `${s.text}: ${s.logit}`));
    // image relevance of text t: the reference stores both texts, last-layer start (the notebook's default)
    const refRel = readNpyFloat32(join(ref, 'clip-tiny/ref/image_relevance_default_last_layer.npy'));
    const per = refRel.data.length / 2;
    for (const t of [0, 1]) {
      const got = readNpyFloat32(join(out, 'trace', `chefer_image_${t}.npy`)).data;
      const diff = maxAbsDiff(got, refRel.data.subarray(t * per, (t + 1) * per));
      assert.ok(diff <= 1e-6, `chefer image ${t}: ${diff}`);
    }
  });
});

// The four engine options with their own flags (--rollout-normalization, --grad-rollout, --chefer-start,
// --heads-layer) on the tiny built models: the CLI's explain.json must equal the explain API called in-process with
// the same option, each option must change what it says it changes, and bad values are one-line user errors.
describe('cli: explain option flags on the tiny models (child process)', function () {
  let models: TinyModels;
  let tmp: string;
  let image: string;
  // The CLI's default --threads; ORT results can depend on the thread count, and the comparison below is exact.
  const load = { intraOpThreads: 2 };

  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-explain-opts-'));
    image = join(tmp, 'input.png');
    const w = 40, h = 32;
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const sq = x > 8 && x < 22 && y > 6 && y < 18;
      px[i] = sq ? 250 : (x * 6) % 256; px[i + 1] = sq ? 230 : (y * 7) % 256; px[i + 2] = 80;
    }
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(image);
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** explain.json's `methods` as the engine gives them in-process (through JSON, as the file holds them). */
  async function direct(model: string, options: ExplainOptions): Promise<ExplainJsonMethods> {
    const r = await explainImage(model, image, { ...options, load });
    return JSON.parse(JSON.stringify((explainJson(r) as { methods: unknown }).methods)) as ExplainJsonMethods;
  }
  /** The Chefer maps and token scores without `start`, which records how the start was written ('all' vs 0). */
  const relevance = (c: ExplainJsonMethods['chefer']): unknown => c.map(({ start: _s, ...rest }) => rest);
  function served(out: string): ExplainJsonMethods {
    return (JSON.parse(readFileSync(join(out, 'explain.json'), 'utf8')) as { methods: ExplainJsonMethods }).methods;
  }

  it('ViT: the four flags give exactly the API\'s maps for the same options, and each changes its method', async function () {
    const out = join(tmp, 'vit');
    const r = await heed(['explain', '--model', models.vit, '--image', image, '--rollout-normalization', 'rows', '--grad-rollout', 'corrected',
      '--chefer-start', '1', '--heads-layer', '-2', '--out', out, '--trace', join(out, 'trace'), '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const got = served(out);
    const options: ExplainOptions = { rolloutNormalization: 'rows', gradRollout: 'corrected', cheferStart: 1, headsLayer: -2 };
    assert.deepEqual(got, await direct(models.vit, options), 'explain.json methods equal the API with the same options');

    const defaults = await direct(models.vit, {});
    const layers = defaults.heads!.layer + 1;
    assert.ok(layers >= 3, `the tiny ViT has ${layers} layers; the test needs at least 3`);
    // Each option is recorded and moves the map it governs (and only that one: distance is untouched).
    assert.equal(got.rollout[0]!.normalization, 'rows');
    assert.notDeepEqual(got.rollout[0]!.map, defaults.rollout[0]!.map);
    assert.equal(got.gradRollout[0]!.variant, 'corrected');
    assert.notDeepEqual(got.gradRollout[0]!.map, defaults.gradRollout[0]!.map);
    assert.equal(got.chefer[0]!.start, 1);
    assert.notDeepEqual(got.chefer[0]!.image, defaults.chefer[0]!.image);
    assert.deepEqual(got.distance, defaults.distance);
    // --heads-layer -2 is layer L-2, and its maps are that layer's CLS attention to the patches (the traced tensor).
    assert.equal(got.heads!.layer, layers - 2);
    const att = readNpyFloat32(join(out, 'trace', `attentions_layer${layers - 2}.npy`));
    const [heads, tokens] = att.shape as [number, number, number];
    const patches = got.heads!.maps[0]!.flat();
    assert.equal(got.heads!.maps.length, heads);
    const prefix = tokens - patches.length;
    for (let h = 0; h < heads; h++) {
      const row = att.data.subarray(h * tokens * tokens, h * tokens * tokens + tokens);
      assert.deepEqual(got.heads!.maps[h]!.flat(), Array.from(row.subarray(prefix)), `head ${h}: CLS row of layer ${layers - 2}`);
    }
    // Chefer's start index and its keywords agree: 'all' is block 0 (the ViT default), 'last' is block L-1.
    assert.deepEqual(relevance((await direct(models.vit, { cheferStart: 0 })).chefer), relevance(defaults.chefer));
    const last = await heed(['explain', '--model', models.vit, '--image', image, '--method', 'chefer', '--chefer-start', String(layers - 1), '--out', join(tmp, 'vit-last'), '--quiet']);
    assert.equal(last.code, 0, last.stderr);
    assert.deepEqual(relevance(served(join(tmp, 'vit-last')).chefer), relevance((await direct(models.vit, { methods: ['chefer'], cheferStart: 'last' })).chefer));
  });

  it('ViT: --method attn-lrp --attn-lrp-attention attnlrp gives the API\'s map and writes the pixel heatmap', async function () {
    const out = join(tmp, 'vit-attn-lrp');
    const r = await heed(['explain', '--model', models.vit, '--image', image, '--method', 'attn-lrp', '--attn-lrp-attention', 'attnlrp', '--out', out, '--trace', join(out, 'trace'), '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const got = served(out).lrp;
    assert.deepEqual(got, (await direct(models.vit, { methods: ['attn-lrp'], attnLrpAttention: 'attnlrp' })).lrp);
    assert.equal(got[0]!.attention, 'attnlrp');
    const c = got[0]!.classIndex;
    assert.ok(existsSync(join(out, `attn_lrp_${c}.png`)));
    const pixels = readNpyFloat32(join(out, 'trace', `attn_lrp_${c}_pixels.npy`));
    const grid = readNpyFloat32(join(out, 'trace', `attn_lrp_${c}.npy`));
    // The per-patch map is the pixel heatmap summed over patches: the totals agree.
    const total = (a: Float32Array): number => a.reduce((s, v) => s + v, 0);
    assert.ok(Math.abs(total(pixels.data) - total(grid.data)) <= 1e-5 * Math.max(1, Math.abs(total(grid.data))));
  });

  it('CLIP: --chefer-start all accumulates every block of both encoders, as the API does', async function () {
    const out = join(tmp, 'clip');
    const r = await heed(['explain', '--model', models.clip, '--image', image, '--text', 'a bright square', '--method', 'chefer', '--chefer-start', 'ALL', '--out', out, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const got = served(out).chefer;
    assert.equal(got[0]!.start, 'all');
    assert.deepEqual(got, (await direct(models.clip, { texts: ['a bright square'], methods: ['chefer'], cheferStart: 'all' })).chefer);
    assert.deepEqual(relevance(got), relevance((await direct(models.clip, { texts: ['a bright square'], methods: ['chefer'], cheferStart: 0 })).chefer));
    const byDefault = (await direct(models.clip, { texts: ['a bright square'], methods: ['chefer'] })).chefer;
    assert.equal(byDefault[0]!.start, 'last', 'CLIP defaults to the last block (the CLIP notebook)');
    assert.notDeepEqual(got[0]!.image, byDefault[0]!.image);
    assert.notDeepEqual(got[0]!.tokens, byDefault[0]!.tokens);
  });

  it('bad values: one line naming the flag, the value and what is allowed (exit 2)', async function () {
    const base = ['explain', '--model', models.vit, '--image', image, '--out', join(tmp, 'bad'), '--quiet'];
    const cases: Array<[string[], RegExp]> = [
      [['--rollout-normalization', 'cols'], /--rollout-normalization must be one of vit-explain, rows, got 'cols'/],
      [['--grad-rollout', 'fixed'], /--grad-rollout must be one of vit-explain, corrected, got 'fixed'/],
      [['--chefer-start', 'first'], /--chefer-start must be last, all or a layer index from 0 .*got 'first'/],
      [['--chefer-start', '-1'], /--chefer-start must be last, all or a layer index from 0 .*got '-1'/],
      [['--heads-layer', '1.5'], /--heads-layer must be an integer from -1024 to 1023, got '1.5'/],
      [['--attn-lrp-attention', 'softmax'], /--attn-lrp-attention must be one of cp, attnlrp, got 'softmax'/],
      // Layer indices the model does not have: known once it is loaded, refused before any gradient is computed.
      [['--heads-layer', '9', '--method', 'heads'], /--heads-layer 9 is out of range: the model has \d+ layers \(use 0\.\.\d+, or -\d+\.\.-1 from the end\)/],
      [['--chefer-start', '9', '--method', 'chefer'], /--chefer-start 9 is out of range: the model has \d+ layers \(use 0\.\.\d+, 'last' or 'all'\)/],
    ];
    for (const [args, re] of cases) assertUserError(await heed([...base, ...args]), re);
    // CLIP applies the start to the text encoder too, which can be shallower than the image one.
    const clip = await explainImage(models.clip, image, { texts: ['a'], methods: ['rollout'], load });
    const textLayers = clip.textAttentions![0]!.length; // [text][layer]
    const shallowest = Math.min(textLayers, clip.attentions.length);
    assertUserError(await heed(['explain', '--model', models.clip, '--image', image, '--text', 'a', '--method', 'chefer', '--chefer-start', String(shallowest), '--out', join(tmp, 'bad'), '--quiet']),
      new RegExp(`--chefer-start ${shallowest} is out of range: the (vision|text) encoder has \\d+ layers`));
  });
});
