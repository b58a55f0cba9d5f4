// `heed explain --compare` on the reference tiny ViT and CLIP: every map method that applies runs on one image and
// class, each map equals what a single-method explain run gives for that class (read from explain.json's own fields,
// not through the compare code's map picker), every method has a wall time, and bad requests are one-line errors.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { requireReference } from './helpers/reference.js';
import { explainImage, type ExplainResult, type ExplainMethod } from '../engine/explain/index.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { assertUserError, heed } from './cli-helpers.js';
import { buildForcedVit, writeTestImage } from './explain-fixtures.js';

interface CompareJson {
  classIndex?: number;
  scale: string;
  colorRange: { min: number; max: number };
  methods: { method: string; wallMs: number; timingsMs: Record<string, number>; min: number; max: number; map: number[][] }[];
  skipped: { method: string; reason: string }[];
}

/** The map a single-method run wrote, read from the result's own field for that method. */
function singleRunMap(r: ExplainResult, method: ExplainMethod): Float32Array {
  switch (method) {
    case 'rollout': return r.rollout[0]!.map.data;
    case 'grad-rollout': return r.gradRollout[0]!.map.data;
    case 'chefer': return r.chefer[0]!.image.data;
    default: {
      const l = r.lrp.find((x) => x.method === method);
      assert.ok(l, `${method} wrote no LRP map`);
      return l.map.data;
    }
  }
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d / (scale || 1);
}

describe('explain --compare (child process, reference tiny ViT / CLIP)', function () {
  let ref: string;
  let tmp: string;
  const load = { intraOpThreads: 1 };
  before(function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-compare-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('ViT: all eight map methods on the top class; each map equals its single-method run; times in JSON and compare.json', async function () {
    const out = join(tmp, 'vit');
    const image = join(ref, 'synthetic_image.png');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--image', image, '--compare', '--threads', '1', '--out', out, '--trace', join(out, 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { classIndex: number; methods: { method: string; wallMs: number; timingsMs: Record<string, number> }[]; skipped: unknown[] };
    const expected: ExplainMethod[] = ['rollout', 'grad-rollout', 'chefer', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'attn-lrp'];
    assert.deepEqual(j.methods.map((m) => m.method), expected);
    assert.deepEqual(j.skipped, []);
    assert.equal(j.classIndex, 9, 'the reference top class (logit 2.798)');
    for (const m of j.methods) {
      assert.ok(Number.isFinite(m.wallMs) && m.wallMs > 0, `${m.method} wall time ${m.wallMs}`);
      assert.ok(m.wallMs >= m.timingsMs.forward!, `${m.method}: the wall time includes its forward pass`);
    }
    const file = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    assert.deepEqual(file.colorRange, { min: 0, max: 1 });
    assert.deepEqual(file.methods.map((m) => m.wallMs), j.methods.map((m) => m.wallMs));
    for (const method of expected) {
      const single = await explainImage(join(ref, 'vit-tiny'), image, { methods: [method], classIndex: 9, load });
      const want = singleRunMap(single, method);
      const got = readNpyFloat32(join(out, 'trace', `compare_${method.replace(/-/g, '_')}.npy`));
      assert.deepEqual(got.shape, [14, 14]);
      assert.ok(maxRelDiff(got.data, want) <= 1e-6, `${method}: ${maxRelDiff(got.data, want)}`);
      const inJson = file.methods.find((m) => m.method === method)!.map.flat();
      assert.ok(maxRelDiff(inJson, want) <= 1e-6, `${method} in compare.json`);
    }
    // input + 8 maps: two rows of five 224-px tiles (the tiny ViT sees 224×224) and a colour bar.
    const meta = await sharp(join(out, 'compare.png')).metadata();
    assert.ok(meta.width! > 5 * 224 && meta.height! > 2 * 224, `${meta.width}×${meta.height}`);
  });

  it('--methods picks a subset in the order given; --compare-scale shared puts the raw range on the colour bar', async function () {
    const out = join(tmp, 'subset');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--image', join(ref, 'synthetic_image.png'), '--compare', '--methods', 'gradcam,rollout',
      '--class', '1', '--compare-scale', 'shared', '--compare-repeat', '3', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { classIndex: number; methods: { method: string; wallMs: number; runsMs: number[] }[] };
    assert.deepEqual(j.methods.map((m) => m.method), ['gradcam', 'rollout']);
    for (const m of j.methods) {
      assert.equal(m.runsMs.length, 3);
      assert.equal(m.wallMs, [...m.runsMs].sort((a, b) => a - b)[1], 'the median of the three runs');
    }
    assert.equal(j.classIndex, 1);
    const file = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as CompareJson;
    const all = file.methods.flatMap((m) => m.map.flat());
    assert.equal(file.scale, 'shared');
    assert.equal(file.colorRange.min, Math.min(...all));
    assert.equal(file.colorRange.max, Math.max(...all));
  });

  it('CLIP with one text: rollout and Chefer compared; the class methods are listed as skipped with the reason', async function () {
    const out = join(tmp, 'clip');
    const r = await heed(['explain', '--model', join(ref, 'clip-tiny'), '--image', join(ref, 'synthetic_image.png'), '--text', 'a red disk', '--compare', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { text: string; methods: { method: string }[]; skipped: { method: string; reason: string }[] };
    assert.deepEqual(j.methods.map((m) => m.method), ['rollout', 'chefer']);
    assert.equal(j.text, 'a red disk');
    assert.deepEqual(j.skipped.map((s) => s.method), ['grad-rollout', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'attn-lrp']);
    assert.ok(j.skipped.every((s) => s.reason.length > 10));
  });

  it('bad requests are one-line errors (exit 2) naming the cause', async function () {
    const vit = join(ref, 'vit-tiny');
    const img = join(ref, 'synthetic_image.png');
    const out = join(tmp, 'bad');
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare', '--methods', 'heads', '--out', out]), /'heads' cannot be compared.*choose from rollout/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare', '--methods', 'nope', '--out', out]), /--methods must be one of/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--methods', 'rollout', '--out', out]), /--methods chooses the methods of --compare/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare-repeat', '2', '--out', out]), /apply to --compare only/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare', '--compare-repeat', '0', '--out', out]), /--compare-repeat/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare', '--top', '3', '--out', out]), /--compare explains one class/);
    assertUserError(await heed(['explain', '--model', vit, '--image', img, '--compare', '--class', '99', '--out', out]), /class 99 is out of range/);
    assertUserError(await heed(['explain', '--model', join(ref, 'clip-tiny'), '--image', img, '--compare', '--text', 'a', '--text', 'b', '--out', out]), /one image–text pair/);
    assertUserError(await heed(['explain', '--model', vit, '--compare', '--out', out]), /give the input: --image FILE/);
    // A chosen method that does not apply is refused (not silently skipped).
    assertUserError(await heed(['explain', '--model', join(ref, 'clip-tiny'), '--image', img, '--text', 'a', '--compare', '--methods', 'gradcam', '--out', out]), /'gradcam' does not apply/);
  });

  it('a model without a CLS token: only attn-lrp applies (it reads no CLS row); the others are skipped with why', async function () {
    const dir = buildForcedVit(join(tmp, 'nocls'), { target: 2, cls: false });
    const img = await writeTestImage(join(tmp, 'in.png'));
    const r = await heed(['explain', '--model', dir, '--image', img, '--compare', '--json', '--out', join(tmp, 'nocls-out')]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { methods: { method: string }[]; skipped: { method: string; reason: string }[] };
    assert.deepEqual(j.methods.map((m) => m.method), ['attn-lrp']);
    assert.deepEqual(j.skipped.map((s) => s.method), ['rollout', 'grad-rollout', 'chefer', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam']);
    assert.ok(j.skipped.every((s) => /no CLS token/.test(s.reason)));
    assert.ok(existsSync(join(tmp, 'nocls-out', 'compare.png')));
    // Without attn-lrp nothing applies, and the error lists why.
    const none = await heed(['explain', '--model', dir, '--image', img, '--compare', '--methods', 'rollout,chefer', '--quiet', '--out', join(tmp, 'nocls-none')]);
    assertUserError(none, /'rollout' does not apply|no method applies/);
  });
});
