// `heed eval explain` end to end: on the hand-made forced-attention ViT (always), checking the job's perturbation hits
// against an independent recomputation through the explain model's own session; and on the Shapes ViT
// (models/shapes/vit, skipped with a message when absent) through the CLI, on drawn squares with masks and labels.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { runEvalExplain } from '../engine/jobs/eval-explain.js';
import { explainImage, ExplainModel } from '../engine/explain/index.js';
import { resizeMap } from '../engine/render/map.js';
import { trapezoidArea, PERTURBATION_STEPS } from '../engine/explain/evaluation/index.js';
import { buildForcedVit, writeTestImage, FORCED_IMAGE } from './explain-fixtures.js';
import { heed, assertUserError, REPO } from './cli-helpers.js';
import { requireReference } from './helpers/reference.js';
import { EVAL_METHODS } from '../engine/explain/evaluation/index.js';
import { copyFileSync } from 'node:fs';

describe('eval explain end to end: forced-attention ViT', function () {
  this.timeout(120_000);
  let dir: string;
  let model: string;
  let images: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heed-evalx-e2e-'));
    model = buildForcedVit(join(dir, 'model'), { target: 2, dynamicBatch: true });
    images = join(dir, 'images');
    mkdirSync(images);
    for (const [i, name] of ['a', 'b', 'c'].entries()) {
      await writeTestImage(join(images, `${name}.png`), FORCED_IMAGE.width + 8 * i, FORCED_IMAGE.height); // resized by the processor
      writeFileSync(join(images, `${name}.label.txt`), '1\n');
    }
    // A mask for `a` only: the left half of the image is the object.
    const m = Buffer.alloc(FORCED_IMAGE.width * FORCED_IMAGE.height, 0);
    for (let y = 0; y < FORCED_IMAGE.height; y++) for (let x = 0; x < FORCED_IMAGE.width / 2; x++) m[y * FORCED_IMAGE.width + x] = 255;
    await sharp(m, { raw: { width: FORCED_IMAGE.width, height: FORCED_IMAGE.height, channels: 1 } }).png().toFile(join(images, 'a.mask.png'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('scores every method on every image; curves start at 1 for the predicted class; AUC is the trapezoid of the curve', async () => {
    const r = await runEvalExplain({ modelDir: model, imagesDir: images, methods: ['rollout', 'chefer', 'random'], target: 'predicted', fill: 'black', granularity: 'pixel' });
    assert.equal(r.images.count, 3);
    assert.equal(r.images.withMasks, 1);
    assert.equal(r.images.withLabels, 3);
    assert.ok(r.modelAccuracy !== undefined && r.modelAccuracy >= 0 && r.modelAccuracy <= 1);
    assert.deepEqual(r.methods.map((m) => m.method), ['rollout', 'chefer', 'random']);
    for (const m of r.methods) {
      for (const d of ['positive', 'negative'] as const) {
        assert.equal(m[d].accuracy.length, PERTURBATION_STEPS.length);
        assert.equal(m[d].accuracy[0], 1, `${m.method} ${d}: the unperturbed prediction is the target`);
        assert.ok(Math.abs(m[d].auc - trapezoidArea([...PERTURBATION_STEPS], m[d].accuracy)) < 1e-12);
      }
      assert.equal(m.segmentation?.images, 1);
    }
    assert.deepEqual(r.perImage.map((p) => p.stem), ['a', 'b', 'c']);
    assert.ok(r.perImage[0]!.methods.rollout!.segmentation);
    assert.equal(r.perImage[1]!.methods.rollout!.segmentation, undefined);
  });

  it("the job's hits equal an independent recomputation: rollout map → bilinear upsample → rank → black pixels → the explain session's logits", async () => {
    const r = await runEvalExplain({ modelDir: model, imagesDir: images, methods: ['rollout'], target: 'predicted', fill: 'black', granularity: 'pixel', limit: 1 });
    const ex = await explainImage(model, join(images, 'a.png'), { methods: ['rollout'], headFusion: 'mean', discard: 0, rolloutNormalization: 'rows' });
    const m = await ExplainModel.load(model);
    try {
      const image = await m.prepareImage(join(images, 'a.png'));
      const { height, width } = image;
      const grid = ex.rollout[0]!.map;
      const up = resizeMap({ width: grid.width, height: grid.height, data: grid.data }, width, height, 'bilinear').data;
      const argmax = (v: Float32Array): number => v.indexOf(Math.max(...v));
      const predicted = argmax((await m.forward(image)).logits!);
      for (const direction of ['positive', 'negative'] as const) {
        const rank = Array.from(up.keys()).sort((a, b) => (direction === 'positive' ? up[b]! - up[a]! : up[a]! - up[b]!) || a - b);
        const hits: number[] = [];
        for (const step of PERTURBATION_STEPS) {
          const pixels = image.pixelValues.slice();
          const count = Math.floor(height * width * step);
          for (const i of rank.slice(0, count)) for (let c = 0; c < 3; c++) pixels[c * height * width + i] = -1; // black: (0 − .5) / .5
          hits.push(argmax((await m.forward({ ...image, pixelValues: pixels })).logits!) === predicted ? 1 : 0);
        }
        assert.deepEqual(r.perImage[0]!.methods.rollout![direction], hits, direction);
      }
    } finally {
      await m.release();
    }
  });

  it('CLI: --target label without labels is a one-line user error naming the fix', async () => {
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    await writeTestImage(join(bare, 'x.png'), FORCED_IMAGE.width, FORCED_IMAGE.height);
    const run = await heed(['eval', 'explain', '--model', model, '--images', bare, '--target', 'label', '--methods', 'random', '--out', join(dir, 'out-bare')]);
    assertUserError(run, /target 'label' needs a <stem>\.label\.txt beside every image.*use target 'predicted'/);
  });
});

describe('eval explain end to end: every method on the reference tiny ViT', function () {
  this.timeout(300_000);
  it('runs all eight methods (the LRP family included) on two images with masks; scores are in range', async function () {
    const ref = requireReference(this);
    const dir = mkdtempSync(join(tmpdir(), 'heed-evalx-tiny-'));
    try {
      copyFileSync(join(ref, 'synthetic_image.png'), join(dir, 'a.png'));
      await writeTestImage(join(dir, 'b.png'), 224, 224);
      const m = Buffer.alloc(224 * 224, 0);
      for (let y = 40; y < 150; y++) for (let x = 60; x < 200; x++) m[y * 224 + x] = 255;
      for (const s of ['a', 'b']) await sharp(m, { raw: { width: 224, height: 224, channels: 1 } }).png().toFile(join(dir, `${s}.mask.png`));
      const r = await runEvalExplain({ modelDir: join(ref, 'vit-tiny'), imagesDir: dir, methods: EVAL_METHODS, target: 'predicted', fill: 'black', granularity: 'patch' });
      assert.deepEqual(r.methods.map((x) => x.method), [...EVAL_METHODS]);
      assert.deepEqual(r.model.grid, { height: 14, width: 14 });
      for (const x of r.methods) {
        assert.equal(x.positive.accuracy[0], 1);
        for (const v of [...x.positive.accuracy, ...x.negative.accuracy]) assert.ok(v >= 0 && v <= 1);
        const seg = x.segmentation!;
        assert.equal(seg.images, 2);
        for (const v of [seg.pixelAccuracy, seg.mIoU, seg.mAP]) assert.ok(v >= 0 && v <= 1, `${x.method}: ${JSON.stringify(seg)}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('eval explain: bad folders are user errors', function () {
  this.timeout(60_000);
  it('a mask of another size than its image names both sizes; an aborted run is cancelled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-evalx-bad-'));
    try {
      const model = buildForcedVit(join(dir, 'model'), { target: 1 });
      mkdirSync(join(dir, 'images'));
      await writeTestImage(join(dir, 'images', 'x.png'), FORCED_IMAGE.width, FORCED_IMAGE.height);
      await writeTestImage(join(dir, 'images', 'x.mask.png'), 10, 10);
      await assert.rejects(
        runEvalExplain({ modelDir: model, imagesDir: join(dir, 'images'), methods: ['random'], target: 'predicted', fill: 'black', granularity: 'pixel' }),
        (e: Error & { kind?: string; field?: string }) => e.kind === 'invalid_input' && e.field === 'images' && /is 10×10 but its image is 48×32/.test(e.message),
      );
      // A stopped job ends as `cancelled` (CLI exit 130), not as an internal error.
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(
        runEvalExplain({ modelDir: model, imagesDir: join(dir, 'images'), methods: ['random'], target: 'predicted', fill: 'black', granularity: 'pixel' }, { signal: ac.signal }),
        (e: Error & { kind?: string }) => e.kind === 'cancelled',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const SHAPES_VIT = join(REPO, 'models/shapes/vit');

describe('eval explain end to end: Shapes ViT through the CLI', function () {
  this.timeout(300_000);
  let dir: string;
  before(async function () {
    if (!existsSync(join(SHAPES_VIT, 'model.onnx'))) {
      console.log(`      (skipped: ${SHAPES_VIT} is absent; it is committed with the Shapes models)`);
      this.skip();
    }
    dir = mkdtempSync(join(tmpdir(), 'heed-evalx-shapes-'));
    // Shapes-world squares drawn here: background (240, 240, 240), one palette-coloured square, its mask and label.
    const squares: [string, [number, number, number], number, number, number][] = [
      ['red square', [220, 40, 40], 10, 14, 50], ['blue square', [40, 80, 220], 60, 50, 44],
      ['green square', [40, 170, 60], 30, 70, 40], ['yellow square', [235, 200, 40], 70, 8, 52],
    ];
    for (const [i, [label, colour, x0, y0, s]] of squares.entries()) {
      const img = Buffer.alloc(128 * 128 * 3, 240);
      const mask = Buffer.alloc(128 * 128, 0);
      for (let y = y0; y < y0 + s; y++) for (let x = x0; x < x0 + s; x++) {
        img.set(colour, (y * 128 + x) * 3);
        mask[y * 128 + x] = 255;
      }
      await sharp(img, { raw: { width: 128, height: 128, channels: 3 } }).png().toFile(join(dir, `${i}.png`));
      await sharp(mask, { raw: { width: 128, height: 128, channels: 1 } }).png().toFile(join(dir, `${i}.mask.png`));
      writeFileSync(join(dir, `${i}.label.txt`), label + '\n');
    }
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('writes the JSON, Markdown table and chart; transformer attribution segments the square better than the random baseline', async () => {
    const out = join(dir, 'out');
    const run = await heed(['eval', 'explain', '--model', SHAPES_VIT, '--images', dir, '--methods', 'transformer-attribution,rollout,random', '--target', 'label', '--fill', '240,240,240', '--out', out, '--json']);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout) as { methods: { method: string; segmentation: { mIoU: number } }[]; modelAccuracy: number; files: string[] };
    assert.equal(summary.files.length, 3);
    for (const f of summary.files) assert.ok(existsSync(f), f);
    const full = JSON.parse(readFileSync(join(out, 'eval-explain.json'), 'utf8')) as { perImage: unknown[] };
    assert.equal(full.perImage.length, 4);
    assert.match(readFileSync(join(out, 'eval-explain.md'), 'utf8'), /\| transformer-attribution \| \d\.\d{3} \| \d\.\d{3} \|/);
    const png = await sharp(join(out, 'perturbation.png')).metadata();
    assert.equal(png.format, 'png');
    const miou = (m: string): number => summary.methods.find((x) => x.method === m)!.segmentation.mIoU;
    assert.ok(miou('transformer-attribution') > miou('random'), `mIoU transformer-attribution ${miou('transformer-attribution')} vs random ${miou('random')}`);
  });
});
