// `heed explain --images DIR --method distance` on the reference tiny ViT: the set's mean (and population std) per
// block and head equal those computed here from single-image runs of the same images; non-image files are ignored;
// bad requests are one-line errors. Plus the accumulator on a hand-computed table.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { requireReference } from './helpers/reference.js';
import { explainImage } from '../engine/explain/index.js';
import { DistanceSetAccumulator } from '../engine/explain/distance-set.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { assertUserError, heed } from './cli-helpers.js';
import { writeTestImage } from './explain-fixtures.js';

describe('explain distance over a set of images', function () {
  it('accumulator: mean and population std per cell, by hand', function () {
    const acc = new DistanceSetAccumulator();
    acc.add([[1, 10], [4, 0]]);
    acc.add([[3, 10], [8, 0]]);
    acc.add([[5, 10], [0, 3]]);
    const s = acc.summary();
    assert.equal(s.images, 3);
    assert.deepEqual(s.mean, [[3, 10], [4, 1]]);
    // block 0 head 0: values 1, 3, 5 → variance (4 + 0 + 4) / 3; block 1 head 0: 4, 8, 0 → (0 + 16 + 16) / 3
    const want = [[Math.sqrt(8 / 3), 0], [Math.sqrt(32 / 3), Math.sqrt(2)]];
    s.std.forEach((row, b) => row.forEach((v, h) => assert.ok(Math.abs(v - want[b]![h]!) < 1e-12, `std[${b}][${h}] ${v}`)));
    assert.throws(() => acc.add([[1, 2, 3], [4, 5, 6]]), /do not match the earlier images' 2×2/);
    assert.throws(() => new DistanceSetAccumulator().summary(), /no image added/);
  });

  describe('heed explain --images (child process, reference tiny ViT)', function () {
    let ref: string;
    let tmp: string;
    let dir: string;
    let images: string[];
    before(async function () {
      ref = requireReference(this);
      tmp = mkdtempSync(join(tmpdir(), 'heed-distance-set-'));
      dir = join(tmp, 'set');
      mkdirSync(dir);
      copyFileSync(join(ref, 'synthetic_image.png'), join(dir, 'a.png'));
      await writeTestImage(join(dir, 'b.png'), 80, 60);
      await sharp(join(ref, 'synthetic_image.png')).flop().jpeg({ quality: 90 }).toFile(join(dir, 'c.jpg'));
      writeFileSync(join(dir, 'notes.txt'), 'not an image');
      mkdirSync(join(dir, 'sub'));
      await writeTestImage(join(dir, 'sub', 'd.png'));
      images = ['a.png', 'b.png', 'c.jpg'].map((n) => join(dir, n));
    });
    after(function () {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('the set mean equals the mean of single-image runs; std, count, chart and .npy', async function () {
      const out = join(tmp, 'out');
      const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--images', dir, '--method', 'distance', '--out', out, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(readFileSync(join(out, 'distance_set.json'), 'utf8')) as { images: number; files: string[]; mean: number[][]; std: number[][]; blocks: number; heads: number };
      assert.equal(j.images, 3, 'the three images; notes.txt and sub/ are not read');
      assert.deepEqual(j.files, images);
      assert.deepEqual([j.blocks, j.heads], [4, 4]);
      const singles = [];
      for (const f of images) singles.push((await explainImage(join(ref, 'vit-tiny'), f, { methods: ['distance'], load: { intraOpThreads: 2 } })).distance!.values);
      for (let b = 0; b < 4; b++) {
        for (let h = 0; h < 4; h++) {
          const v = singles.map((s) => s[b]![h]!);
          const mean = v.reduce((a, x) => a + x, 0) / v.length;
          const std = Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / v.length);
          assert.ok(Math.abs(j.mean[b]![h]! - mean) <= 1e-4, `mean[${b}][${h}] ${j.mean[b]![h]} vs ${mean}`);
          assert.ok(Math.abs(j.std[b]![h]! - std) <= 1e-4, `std[${b}][${h}] ${j.std[b]![h]} vs ${std}`);
        }
      }
      // The images differ, so the spread is not zero everywhere.
      assert.ok(j.std.flat().some((s) => s > 0.01));
      const npy = readNpyFloat32(join(out, 'distance_set.npy'));
      assert.deepEqual(npy.shape, [2, 4, 4]);
      assert.ok(Math.abs(npy.data[5]! - j.mean[1]![1]!) < 1e-3);
      const chart = await sharp(join(out, 'distance_set.png')).metadata();
      assert.deepEqual([chart.width, chart.height], [720, 440]);
    });

    it('bad requests are one-line errors (exit 2)', async function () {
      const vit = join(ref, 'vit-tiny');
      const out = join(tmp, 'bad');
      assertUserError(await heed(['explain', '--model', vit, '--images', dir, '--out', out]), /--images averages mean attention distance over a folder: give --method distance/);
      assertUserError(await heed(['explain', '--model', vit, '--images', dir, '--method', 'distance,rollout', '--out', out]), /not rollout; explain one image with --image/);
      const empty = join(tmp, 'empty');
      mkdirSync(empty, { recursive: true });
      assertUserError(await heed(['explain', '--model', vit, '--images', empty, '--method', 'distance', '--out', out]), /empty holds no image/);
      assertUserError(await heed(['explain', '--model', vit, '--images', join(tmp, 'nope'), '--method', 'distance', '--out', out]), /--images .*nope: no such folder/);
      const broken = join(tmp, 'broken');
      mkdirSync(broken, { recursive: true });
      writeFileSync(join(broken, 'x.png'), 'not a png');
      assertUserError(await heed(['explain', '--model', vit, '--images', broken, '--method', 'distance', '--quiet', '--out', out]), /x\.png: /);
    });
  });
});
