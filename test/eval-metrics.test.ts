// `heed eval`'s measurements and the shared neglect predictor, against cases computed by hand.
import assert from 'node:assert/strict';
import { HeedError } from '../engine/errors.js';
import { neglectedSubjects, subjectAttention } from '../engine/attention/neglect.js';
import { exciteWordsOf } from '../engine/jobs/eval/run.js';
import {
  argmax, bestF1, chooseThreshold, cosine, f1, iou, mapIou, maskArea, minObjectSimilarity, nearestColourMasks, normalizeMinMax, pointingHit, prSweep,
  thresholdGrid, thresholdMap, type Mask,
} from '../engine/jobs/eval/metrics.js';
import { evalPrompt, grammarPrompts, parseSeedRange, parseShapesPrompt, promptLines, spreadSubset, SHAPES_BACKGROUND, SHAPES_PALETTE } from '../engine/jobs/eval/prompts.js';

const mask = (width: number, bits: number[]): Mask => ({ width, height: bits.length / width, data: Uint8Array.from(bits) });

describe('eval: colour subjects of a Shapes image', function () {
  it('assigns each pixel to the nearest palette colour within the tolerance, and leaves the rest out', function () {
    // 3×2 image: exact red, red shifted by (15, −10, 10) (distance ≈ 20.6), the background, a grey far from all,
    // exact blue, and a mix of red and yellow at distance > 60 from both (what a soft edge between them looks like).
    const px: [number, number, number][] = [[220, 40, 40], [235, 30, 50], [240, 240, 240], [128, 128, 128], [40, 80, 220], [228, 120, 40]];
    const img = { width: 3, height: 2, data: Uint8Array.from(px.flat()) };
    const [red, blue, bg] = nearestColourMasks(img, [SHAPES_PALETTE.red, SHAPES_PALETTE.blue, SHAPES_BACKGROUND], 60);
    assert.deepEqual([...red!.data], [1, 1, 0, 0, 0, 0]);
    assert.deepEqual([...blue!.data], [0, 0, 0, 0, 1, 0]);
    assert.deepEqual([...bg!.data], [0, 0, 1, 0, 0, 0]);
    assert.equal(maskArea(red!), 2);
    // The shifted red is 20.6 from red: a tolerance of 20 drops it, 21 keeps it.
    assert.deepEqual([...nearestColourMasks(img, [SHAPES_PALETTE.red], 20)[0]!.data], [1, 0, 0, 0, 0, 0]);
    assert.deepEqual([...nearestColourMasks(img, [SHAPES_PALETTE.red], 21)[0]!.data], [1, 1, 0, 0, 0, 0]);
  });
});

describe('eval: pointing game and IoU (DAAM protocol)', function () {
  it('pointing: the map maximum inside the mask; the first maximum on ties', function () {
    const m = mask(3, [0, 1, 1, 0, 0, 0]);
    assert.equal(pointingHit([0.1, 0.9, 0.2, 0.3, 0.1, 0.0], m), true);
    assert.equal(pointingHit([0.1, 0.2, 0.2, 0.9, 0.1, 0.0], m), false);
    assert.equal(argmax([0.5, 0.7, 0.7]), 1);
    assert.equal(pointingHit([0.7, 0.7, 0.1, 0, 0, 0], m), false, 'the first of two equal maxima is at index 0, outside');
    assert.throws(() => pointingHit([1, 2], m), RangeError);
  });

  it('IoU of the min–max normalised map thresholded at tau against the mask', function () {
    // [0, 1, 2, 3, 4] → [0, .25, .5, .75, 1]; > 0.4 → [0, 0, 1, 1, 1]; mask [0, 1, 1, 0, 0]: ∩ 1, ∪ 4.
    const map = [0, 1, 2, 3, 4];
    assert.deepEqual([...normalizeMinMax(map)], [0, 0.25, 0.5, 0.75, 1]);
    assert.deepEqual([...thresholdMap(map, 0.4)], [0, 0, 1, 1, 1]);
    assert.equal(mapIou(map, mask(5, [0, 1, 1, 0, 0]), 0.4), 0.25);
    assert.equal(mapIou(map, mask(5, [0, 0, 1, 1, 1]), 0.4), 1);
    // tau 0.8 leaves only the last value: ∩ 0, ∪ 3.
    assert.equal(mapIou(map, mask(5, [0, 1, 1, 0, 0]), 0.8), 0);
    // Scale and offset do not matter after normalisation.
    assert.equal(mapIou(map.map((v) => 10 + 3 * v), mask(5, [0, 1, 1, 0, 0]), 0.4), 0.25);
    // A constant map segments nothing; two empty masks give 0.
    assert.deepEqual([...thresholdMap([2, 2, 2], 0.4)], [0, 0, 0]);
    assert.equal(iou(new Uint8Array(3), new Uint8Array(3)), 0);
  });
});

describe('eval: CLIP similarities', function () {
  it('cosine and the A&E paper\'s min-object similarity', function () {
    assert.ok(Math.abs(cosine([1, 0], [1, 1]) - Math.SQRT1_2) < 1e-12);
    assert.ok(Math.abs(cosine([3, 4], [-3, -4]) + 1) < 1e-12);
    assert.equal(cosine([0, 0], [1, 1]), 0);
    // Image embedding e, subject texts t1, t2: min over subjects of cos(e, ti).
    const e = [1, 2, 2];
    const sims = [[2, 1, 2], [0, 0, 1]].map((t) => cosine(e, t)); // 8/9, 2/3
    assert.ok(Math.abs(sims[0]! - 8 / 9) < 1e-12 && Math.abs(sims[1]! - 2 / 3) < 1e-12);
    assert.equal(minObjectSimilarity(sims), sims[1]);
    assert.equal(minObjectSimilarity([]), null);
  });
});

describe('eval: the neglect warning as a predictor (precision/recall, threshold choice)', function () {
  // score = relative attention; positive = the subject is absent.
  const cases = [
    { score: 0.1, positive: true },
    { score: 0.3, positive: false },
    { score: 0.5, positive: true },
    { score: 0.9, positive: false },
    { score: 1, positive: false },
  ];

  it('counts flagged (score < threshold) cases at each threshold', function () {
    const [a, b, c, d] = prSweep(cases, [0, 0.2, 0.6, 1]);
    assert.deepEqual(a, { threshold: 0, tp: 0, fp: 0, fn: 2, precision: null, recall: 0 });
    assert.deepEqual(b, { threshold: 0.2, tp: 1, fp: 0, fn: 1, precision: 1, recall: 0.5 });
    assert.deepEqual(c, { threshold: 0.6, tp: 2, fp: 1, fn: 0, precision: 2 / 3, recall: 1 });
    assert.deepEqual(d, { threshold: 1, tp: 2, fp: 2, fn: 0, precision: 0.5, recall: 1 });
    assert.equal(prSweep([{ score: 0.5, positive: false }], [0.6])[0]!.recall, null, 'no absent subject: recall undefined');
  });

  it('chooses the threshold reaching the recall with the best precision, the lowest among equals', function () {
    const sweep = prSweep(cases, thresholdGrid(100));
    assert.equal(sweep.length, 101);
    const chosen = chooseThreshold(sweep, 0.8)!;
    // Recall 1 needs 0.5 < t; precision is 2/3 for t in (0.5, 0.9] and 1/2 above: the lowest grid point is 0.51.
    assert.equal(chosen.threshold, 0.51);
    assert.equal(chosen.precision, 2 / 3);
    assert.equal(chosen.recall, 1);
    // Recall 0.5 is reached at t = 0.11 with precision 1.
    assert.equal(chooseThreshold(sweep, 0.5)!.threshold, 0.11);
    assert.equal(chooseThreshold(prSweep([{ score: 0.5, positive: false }], thresholdGrid(10)), 0.8), undefined);
    // F1: 2/3 for t in (0.1, 0.5], 0.8 for (0.5, 0.9], 2/3 above: the best is the lowest grid point of (0.5, 0.9].
    assert.equal(bestF1(sweep)!.threshold, 0.51);
    assert.ok(Math.abs(f1(bestF1(sweep)!) - 0.8) < 1e-12);
    assert.equal(bestF1(prSweep([{ score: 0.5, positive: false }], thresholdGrid(10))), undefined);
  });

  it('compares subjects only: "a", "and" and colours do not set the scale', function () {
    const words = [
      { word: 'a', maxAttention: 0.9 }, { word: 'red', maxAttention: 0.7 }, { word: 'circle', maxAttention: 0.3 },
      { word: 'and', maxAttention: 0.05 }, { word: 'a', maxAttention: 0.8 }, { word: 'blue', maxAttention: 0.6 }, { word: 'square', maxAttention: 0.15 },
    ];
    // Without named subjects: the candidates are circle and square (function words and colours are not subjects).
    assert.deepEqual(subjectAttention(words).map((s) => [s.word, s.relative]), [['circle', 1], ['square', 0.5]]);
    assert.deepEqual(neglectedSubjects(words, 0.6).map((s) => s.word), ['square']);
    assert.deepEqual(neglectedSubjects(words, 0.5).map((s) => s.word), [], 'strictly under the threshold');
    // Relative to every word (the former predictor), both shapes would be under 0.6 of "a".
    assert.ok(0.3 / 0.9 < 0.6 && 0.15 / 0.9 < 0.6);
    // Named subjects (case-insensitive) are taken as they are, colours included when named.
    assert.deepEqual(subjectAttention(words, ['RED', 'square']).map((s) => [s.word, s.relative]), [['red', 1], ['square', 0.15 / 0.7]]);
  });
});

describe('eval: prompts and seeds', function () {
  it('the Shapes grammar: 12 single-shape and 72 two-shape prompts with their subjects', function () {
    assert.equal(grammarPrompts('single').length, 12);
    const pairs = grammarPrompts('pairs');
    assert.equal(pairs.length, 72, '4·3 ordered colour pairs × 3·2 ordered shape pairs');
    assert.equal(new Set(pairs).size, 72);
    assert.equal(grammarPrompts('all').length, 84);
    for (const p of pairs) assert.equal(parseShapesPrompt(p)?.length, 2, p);
    assert.deepEqual(parseShapesPrompt('a red circle and a blue triangle'), [
      { word: 'circle', text: 'a red circle', colour: 'red', colourWord: 'red' },
      { word: 'triangle', text: 'a blue triangle', colour: 'blue', colourWord: 'blue' },
    ]);
    assert.equal(parseShapesPrompt('a red circle and a red square'), undefined, 'two red things cannot be told apart by colour');
    assert.equal(parseShapesPrompt('a purple circle'), undefined);
    assert.deepEqual(spreadSubset([0, 1, 2, 3, 4, 5], 3), [0, 2, 4]);
  });

  it('other prompts: the subjects are the nouns (or the given words), each with its sub-prompt', function () {
    const p = evalPrompt('a cat on a mat and a frog', () => ['cat', 'mat', 'frog']);
    assert.equal(p.shapes, false);
    assert.deepEqual(p.subjects, [{ word: 'cat', text: 'a cat' }, { word: 'mat', text: 'a mat' }, { word: 'frog', text: 'a frog' }]);
    assert.deepEqual(evalPrompt('a red circle next to a blue square, photo', () => ['circle', 'square']).subjects.map((x) => x.text), ['a red circle', 'a blue square']);
    assert.deepEqual(evalPrompt('red apples on the table', () => ['apples', 'dog']).subjects.map((x) => x.text), ['red apples', 'a dog']);
    assert.deepEqual(evalPrompt('a red circle', () => []).subjects.map((s) => s.word), ['circle']);
    assert.deepEqual(evalPrompt('a red circle', () => [], ['red']).subjects, [{ word: 'red', text: 'a red' }]);
    assert.deepEqual(promptLines('# header\na cat\n\n  a dog  \r\n#x\n'), ['a cat', 'a dog']);
  });

  it('seed ranges', function () {
    assert.deepEqual(parseSeedRange('0..3'), [0, 1, 2, 3]);
    assert.deepEqual(parseSeedRange('7'), [7]);
    assert.deepEqual(parseSeedRange('2-3, 10, 3'), [2, 3, 10]);
    for (const bad of ['3..1', 'a..b', '', '1,,2', '-1', '1.5']) {
      assert.throws(() => parseSeedRange(bad), (e: unknown) => e instanceof HeedError && e.kind === 'invalid_input' && e.field === 'seeds', bad);
    }
  });
});

describe('heed eval: which words Attend-and-Excite strengthens', () => {
  const subjects = evalPrompt('a red circle and a blue square', () => []).subjects;
  it('the nouns by default (the paper), the colour words, or both in prompt order; a subject without a colour keeps its noun', () => {
    assert.deepEqual(exciteWordsOf(subjects), ['circle', 'square']);
    assert.deepEqual(exciteWordsOf(subjects, 'colour'), ['red', 'blue']);
    assert.deepEqual(exciteWordsOf(subjects, 'both'), ['red', 'circle', 'blue', 'square']);
    assert.deepEqual(exciteWordsOf([{ word: 'cat' }], 'colour'), ['cat']);
  });
});
