// The evaluation protocol of `heed eval explain` on cases small enough to work out by hand (perturbation order,
// counts, fills, AUC; segmentation pixel accuracy, IoU, AP), plus the folder convention and the CLI's flag parsing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  removalOrder, removedCount, fillValues, patchOrderToPixels, removePixels, trapezoidArea, perturbationHits, PERTURBATION_STEPS,
  averagePrecision, minMaxNormalize, scoreSegmentation, summarizeSegmentation, upsampleToImage, randomMap, type Classifier,
} from '../engine/explain/evaluation/index.js';
import { listEvalImages, resolveLabel } from '../engine/jobs/eval-explain-folder.js';
import { Command } from 'commander';
import { evalExplain, parseEvalMethods, parseFill } from '../engine/cli/eval-explain.js';
import { compactJson } from '../engine/jobs/eval-explain-outputs.js';

const close = (a: number, b: number, tol = 1e-12): void => assert.ok(Math.abs(a - b) <= tol, `${a} ≠ ${b}`);

describe('eval explain: perturbation protocol (hand-computed)', () => {
  it('orders most relevant first (positive) or least relevant first (negative); ties by index; NaN always last', () => {
    assert.deepEqual([...removalOrder([0.9, 0.1, 0.5, 0.3], 'positive')], [0, 2, 3, 1]);
    assert.deepEqual([...removalOrder([0.9, 0.1, 0.5, 0.3], 'negative')], [1, 3, 2, 0]);
    assert.deepEqual([...removalOrder([1, 2, 2, 1], 'positive')], [1, 2, 0, 3]);
    assert.deepEqual([...removalOrder([NaN, 2, 1], 'positive')], [1, 2, 0]);
    assert.deepEqual([...removalOrder([NaN, 2, 1], 'negative')], [2, 1, 0]);
  });

  it('counts removed units as Python int(n · step)', () => {
    // int(224*224*0.3) = int(15052.8) = 15052; int(10*0.7) = int(7.000000000000001) = 7; int(64*0.1) = 6.
    assert.equal(removedCount(224 * 224, 0.3), 15052);
    assert.equal(removedCount(10, 0.7), 7);
    assert.equal(removedCount(64, 0.1), 6);
    assert.deepEqual(PERTURBATION_STEPS.map((s) => removedCount(4, s)), [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
  });

  it('fills removed pixels with black in [0, 1] (−mean/std), 0 in the normalised input, or a given colour', () => {
    const p = { doRescale: true, rescaleFactor: 1 / 255, doNormalize: true, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    assert.deepEqual(fillValues('black', p), [-1, -1, -1]);
    assert.deepEqual(fillValues('zero', p), [0, 0, 0]);
    const bg = fillValues([240, 240, 240], p);
    for (const v of bg) close(v, (240 / 255 - 0.5) / 0.5, 1e-6);
    const clip = { ...p, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] };
    close(fillValues('black', clip)[2]!, -0.40821073 / 0.27577711, 1e-6);
    assert.deepEqual(fillValues('black', { ...p, doNormalize: false }), [0, 0, 0]);
  });

  it('expands a patch order to the pixels of each patch in turn', () => {
    // 2×2 grid of 2×2-pixel patches on a 4×4 image; patch 3 (bottom right) first, then 0.
    const px = patchOrderToPixels([3, 0, 1, 2], { height: 2, width: 2 }, { height: 2, width: 2 }, { height: 4, width: 4 });
    assert.deepEqual([...px.slice(0, 8)], [10, 11, 14, 15, 0, 1, 4, 5]);
    assert.deepEqual([...px].sort((a, b) => a - b), Array.from({ length: 16 }, (_, i) => i));
  });

  it('removes the first pixels of the order in every channel and leaves the rest', () => {
    const pixels = Float32Array.from({ length: 12 }, (_, i) => i); // 3 channels × 2×2
    const out = removePixels(pixels, 2, 2, [3, 0, 1, 2], 2, [-1, -2, -3]);
    assert.deepEqual([...out], [-1, 1, 2, -1, -2, 5, 6, -2, -3, 9, 10, -3]);
    assert.equal(pixels[0], 0, 'the input is not modified');
  });

  it('area under the curve is the trapezoid rule over 0 … 0.9', () => {
    close(trapezoidArea([...PERTURBATION_STEPS], PERTURBATION_STEPS.map(() => 1)), 0.9);
    close(trapezoidArea([0, 0.5, 1], [0, 1, 0]), 0.5);
  });

  it('a fake model that needs pixel 0: positive perturbation kills it at 30 %, negative never (AUC 0.25 and 0.9)', async () => {
    // 2×2 image, one pixel per unit. The model predicts class 1 while pixel 0 is intact (channel 0 ≠ fill), else 0.
    const fill = [-1, -1, -1];
    const classify: Classifier = async (inputs) => inputs.map((x) => (x[0] === fill[0] ? 0 : 1));
    const pixels = new Float32Array(12).fill(0.25);
    const map = [0.9, 0.1, 0.5, 0.3];
    const run = (direction: 'positive' | 'negative'): Promise<number[]> => perturbationHits(classify, {
      pixels, height: 2, width: 2, order: removalOrder(map, direction), units: { count: 4, pixelsEach: 1 }, fill, target: 1,
    });
    const positive = await run('positive');
    // Counts per step: 0 0 0 1 1 2 2 2 3 3; pixel 0 is the first removed.
    assert.deepEqual(positive, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    close(trapezoidArea([...PERTURBATION_STEPS], positive), 0.2 + 0.05);
    const negative = await run('negative');
    assert.deepEqual(negative, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]); // pixel 0 is last; at most 3 of 4 are removed
    close(trapezoidArea([...PERTURBATION_STEPS], negative), 0.9);
    // The target is what is scored: with target 0 the hits flip.
    const other = await perturbationHits(classify, { pixels, height: 2, width: 2, order: removalOrder(map, 'positive'), units: { count: 4, pixelsEach: 1 }, fill, target: 0 });
    assert.deepEqual(other, positive.map((h) => 1 - h));
  });

  it('patch granularity removes floor(patches · step) whole patches', async () => {
    // 4×4 image of 2×2 patches; the model needs the bottom-right patch (pixels 10, 11, 14, 15) all intact.
    const fill = [0, 0, 0];
    const classify: Classifier = async (inputs) => inputs.map((x) => ([10, 11, 14, 15].every((i) => x[i] !== 0) ? 1 : 0));
    const pixels = new Float32Array(48).fill(1);
    const patchMap = [0.2, 0.1, 0.4, 0.3]; // bottom-right (3) second most relevant
    const order = patchOrderToPixels(removalOrder(patchMap, 'positive'), { height: 2, width: 2 }, { height: 2, width: 2 }, { height: 4, width: 4 });
    const hits = await perturbationHits(classify, { pixels, height: 4, width: 4, order, units: { count: 4, pixelsEach: 4 }, fill, target: 1 });
    // Patches removed per step: 0 0 0 1 1 2 2 2 3 3 → patch 3 goes at the second removal (step 0.5).
    assert.deepEqual(hits, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
  });

  it('upsamples a patch map as torch interpolate(scale_factor, bilinear, align_corners=False)', () => {
    // torch.nn.functional.interpolate(torch.tensor([[0.,1.],[2.,3.]])[None,None], scale_factor=2, mode='bilinear')
    const up = upsampleToImage({ height: 2, width: 2, data: Float32Array.from([0, 1, 2, 3]) }, { height: 2, width: 2 }, { height: 4, width: 4 });
    assert.deepEqual([...up], [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3]);
    // An image larger than the patch grid: the extra column gets the map's minimum.
    const wide = upsampleToImage({ height: 1, width: 1, data: Float32Array.from([5]) }, { height: 2, width: 2 }, { height: 2, width: 3 });
    assert.deepEqual([...wide], [5, 5, 5, 5, 5, 5]);
  });

  it('the random baseline is repeatable per seed and different across seeds', () => {
    const a = randomMap({ height: 2, width: 3 }, 1);
    assert.deepEqual([...a.data], [...randomMap({ height: 2, width: 3 }, 1).data]);
    assert.notDeepEqual([...a.data], [...randomMap({ height: 2, width: 3 }, 2).data]);
    assert.ok([...a.data].every((v) => v >= 0 && v < 1));
  });
});

describe('eval explain: segmentation metrics (hand-computed)', () => {
  it('average precision equals Σ (Rₙ − Rₙ₋₁) Pₙ with tied scores entering together', () => {
    // Ranks: + − + − → P@R=.5 is 1, P@R=1 is 2/3.
    close(averagePrecision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]), 0.5 * 1 + 0.5 * (2 / 3));
    // A tie of one positive and one negative first: P = .5 at R = .5, then 2/3 at R = 1.
    close(averagePrecision([0.5, 0.5, 0.2], [1, 0, 1]), 0.5 * 0.5 + 0.5 * (2 / 3));
    close(averagePrecision([0.1, 0.2], [0, 0]), 0); // no positive: sklearn's NaN, nan_to_num → 0
  });

  it('min–max normalises; a constant map becomes all zeros (torch NaN, zeroed)', () => {
    assert.deepEqual([...minMaxNormalize([2, 4, 3])], [0, 1, 0.5]);
    assert.deepEqual([...minMaxNormalize([3, 3])], [0, 0]);
  });

  it('scores a 2×2 map against a mask: threshold at the mean, pixel accuracy, IoU per class, AP of [1 − map, map]', () => {
    // map → [1, 0, .5, 0], mean .375 → foreground {0, 2}; mask foreground {0}.
    const s = scoreSegmentation([4, 0, 2, 0], [1, 0, 0, 0]);
    assert.equal(s.correct, 3);
    assert.equal(s.labeled, 4);
    assert.deepEqual(s.intersection, [2, 1]); // background {1, 3}; foreground {0}
    assert.deepEqual(s.union, [3, 2]); // background: predicted {1,3} ∪ true {1,2,3}; foreground: {0,2} ∪ {0}
    // 8 scores: background channel [0, 1, .5, 1] (true bg at 1, 2, 3), foreground [1, 0, .5, 0] (true fg at 0).
    // Score 1: three positives → P 1, R .75; score .5: one positive one negative → P .8, R 1.
    close(s.ap, 0.75 * 1 + 0.25 * 0.8);
  });

  it('a constant map predicts background everywhere', () => {
    const s = scoreSegmentation([7, 7, 7, 7], [1, 1, 0, 0]);
    assert.equal(s.correct, 2);
    assert.deepEqual(s.intersection, [2, 0]);
    assert.deepEqual(s.union, [4, 2]);
    close(s.ap, 0.5); // every score tied: precision 4/8 at recall 1
  });

  it('summarises over images as the repository: pixels and areas summed, AP averaged', () => {
    const a = scoreSegmentation([4, 0, 2, 0], [1, 0, 0, 0]);
    const b = scoreSegmentation([7, 7, 7, 7], [1, 1, 0, 0]);
    const sum = summarizeSegmentation([a, b]);
    close(sum.pixelAccuracy, 5 / 8, 1e-12);
    close(sum.iou.background, 4 / 7, 1e-12);
    close(sum.iou.foreground, 1 / 4, 1e-12);
    close(sum.mIoU, (4 / 7 + 1 / 4) / 2, 1e-12);
    close(sum.mAP, (0.95 + 0.5) / 2, 1e-12);
    assert.equal(sum.images, 2);
  });

  it('refuses a map and a mask of different sizes', () => {
    assert.throws(() => scoreSegmentation([1, 2], [1, 0, 0]), /upsample the map/);
  });
});

describe('eval explain: image folder and flags', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'heed-evalx-'));
    for (const f of ['b.png', 'a.jpg', 'a.mask.png', 'b.label.txt', 'notes.txt', 'c.webp', 'c.label.txt']) writeFileSync(join(dir, f), f.endsWith('.txt') ? (f === 'b.label.txt' ? '2\n' : 'red circle\n') : '');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('pairs <stem>.<ext> with <stem>.mask.<ext> and <stem>.label.txt, in name order; masks are not images', () => {
    const e = listEvalImages(dir);
    assert.deepEqual(e.map((x) => x.stem), ['a', 'b', 'c']);
    assert.equal(e[0]!.mask, join(dir, 'a.mask.png'));
    assert.equal(e[0]!.label, undefined);
    assert.equal(e[1]!.label, '2');
    assert.equal(e[1]!.mask, undefined);
    assert.equal(e[2]!.label, 'red circle');
  });

  it('reads a label as an index or an id2label name, and names the fix otherwise', () => {
    const labels = ['red circle', 'green circle', 'blue circle'];
    assert.equal(resolveLabel('2', labels, 3, 'x'), 2);
    assert.equal(resolveLabel('green circle', labels, 3, 'x'), 1);
    assert.throws(() => resolveLabel('3', labels, 3, 'x.label.txt'), /x\.label\.txt: class 3 is out of range/);
    assert.throws(() => resolveLabel('purple', labels, 3, 'x'), /unknown class "purple"; write one of "red circle"/);
  });

  it('evalExplain mounts the command as `explain` under a parent `eval` command', () => {
    const program = new Command('heed');
    const evalCommand = program.command('eval');
    evalExplain(evalCommand);
    const sub = evalCommand.commands.find((c) => c.name() === 'explain');
    assert.ok(sub);
    const flags = sub.options.map((o) => o.long);
    for (const f of ['--model', '--images', '--methods', '--out', '--target', '--fill', '--granularity']) assert.ok(flags.includes(f), f);
  });

  it('writes number arrays on one line and the JSON still parses to the same value', () => {
    const v = { a: [1, 0, 0.5, -2e-7], b: { c: ['x', 'y'], d: [[1, 2], [3]] }, e: [] };
    const text = compactJson(v);
    assert.deepEqual(JSON.parse(text), v);
    assert.match(text, /"a": \[1, 0, 0\.5, -2e-7\]/);
  });

  it('parses --methods and --fill', () => {
    assert.deepEqual(parseEvalMethods(['rollout,random', 'rollout']), ['rollout', 'random']);
    assert.equal(parseEvalMethods(undefined).length, 8);
    assert.throws(() => parseEvalMethods(['heads']), /--methods must be one of/);
    assert.deepEqual(parseFill('240, 240,240'), [240, 240, 240]);
    assert.equal(parseFill('Black'), 'black');
    assert.throws(() => parseFill('256,0,0'), /--fill must be black, zero or a colour R,G,B/);
  });
});
