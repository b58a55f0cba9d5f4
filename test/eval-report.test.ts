// `heed eval` end to end on the committed Shapes models: a tiny run (one two-subject prompt, one then two seeds, two
// steps) whose report must agree with its per-sample records, records that must agree with the saved images
// (colour areas recomputed from the PNGs), and a resume that must not redo finished samples. Plus the CLI's
// refusals of bad input, which need no model.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertUserError, heed, REPO } from './cli-helpers.js';
import { decodeImage } from '../engine/render/index.js';
import { mean, nearestColourMasks, maskArea, prSweep } from '../engine/jobs/eval/metrics.js';
import { SHAPES_BACKGROUND, SHAPES_COLOURS, SHAPES_PALETTE, type ShapesColour } from '../engine/jobs/eval/prompts.js';
import type { SampleRecord } from '../engine/jobs/eval/samples.js';
import type { EvalReport } from '../engine/jobs/eval/report.js';
import { planEval, type EvalCliOptions } from '../engine/cli/eval.js';
import { HeedError } from '../engine/errors.js';

const SD = join(REPO, 'models/shapes/sd');
const CLIP = join(REPO, 'models/shapes/clip');
const VIT = join(REPO, 'models/shapes/vit');

function samples(out: string): SampleRecord[] {
  return readFileSync(join(out, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SampleRecord);
}

const close = (a: number | null, b: number | null, what: string): void => {
  assert.ok(a !== null && b !== null && Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);
};

describe('heed eval: bad input', function () {
  this.timeout(60_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'heed-eval-bad-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('refuses a missing folder on the command line: exit 2, one line naming the flag', async function () {
    assertUserError(await heed(['eval', '--sd', join(tmp, 'nope'), '--clip', tmp, '--out', join(tmp, 'o')]), /--sd .*nope: no such folder/);
  });

  it('refuses bad seeds, empty prompt files, missing flags and contradicting flags before loading anything (field named)', async function () {
    const base = { sd: tmp, clip: tmp, out: join(tmp, 'o'), seeds: '0..1', steps: 2, guidance: 7.5, excite: true, tau: 0.4, colourTolerance: 60, minArea: 0.01, presentSim: 0.2, threads: 1 };
    const refused = async (o: Partial<EvalCliOptions>, field: string, pattern: RegExp): Promise<void> => {
      await assert.rejects(planEval({ ...base, ...o } as EvalCliOptions), (e: unknown) => {
        assert.ok(e instanceof HeedError, String(e));
        assert.equal(e.kind, 'invalid_input');
        assert.equal(e.field, field);
        assert.match(e.message, pattern);
        return true;
      });
    };
    await refused({ seeds: '5..2' }, 'seeds', /--seeds '5\.\.2': '5\.\.2' ends before it starts/);
    await refused({ seeds: 'x' }, 'seeds', /range such as 0\.\.9/);
    await refused({ sd: undefined }, 'sd', /--sd is required/);
    await refused({ clip: join(tmp, 'none') }, 'clip', /--clip .*none: no such folder/);
    writeFileSync(join(tmp, 'empty.txt'), '# nothing\n\n');
    await refused({ prompts: join(tmp, 'empty.txt') }, 'prompts', /holds no prompt/);
    await refused({ prompts: join(tmp, 'empty.txt'), grammar: 'pairs' }, 'prompts', /give one of them/);
    await refused({ excite: false, aeRes: 8 }, 'excite', /--no-excite/);
    writeFileSync(join(tmp, 'p.txt'), 'a cat and a frog\n');
    await refused({ prompts: join(tmp, 'p.txt'), subjects: 'dog' }, 'subjects', /'dog' is not a word of the prompt/);
    const ok = await planEval({ ...base, prompts: join(tmp, 'p.txt') } as EvalCliOptions);
    assert.deepEqual(ok.prompts[0]!.subjects.map((s) => [s.word, s.text]), [['cat', 'a cat'], ['frog', 'a frog']]);
    assert.deepEqual(ok.seeds, [0, 1]);
  });

  it('refuses a --clip folder that is not a CLIP model, naming it', async function () {
    if (!existsSync(SD) || !existsSync(VIT)) {
      console.log('      (skipped: models/shapes/sd or models/shapes/vit is absent; the lead commits the Shapes models)');
      this.skip();
    }
    const out = join(tmp, 'vit');
    assertUserError(await heed(['eval', '--sd', SD, '--clip', VIT, '--out', out, '--seeds', '0', '--grammar', 'single', '--max-prompts', '1', '--steps', '1']), /--clip .*vit is a vit model .*not CLIP/);
    assertUserError(await heed(['eval', '--sd', SD, '--clip', SD, '--out', join(tmp, 'sd'), '--seeds', '0', '--grammar', 'single', '--max-prompts', '1', '--steps', '1']), /--clip .*is not a CLIP model Heed can use/);
  });
});

describe('heed eval: the report\'s numbers on a tiny run (Shapes models)', function () {
  this.timeout(600_000);
  let out: string;
  before(function () {
    if (!existsSync(join(SD, 'model_index.json')) || !existsSync(join(CLIP, 'config.json'))) {
      console.log('      (skipped: models/shapes/sd or models/shapes/clip is absent; the lead commits the Shapes models)');
      this.skip();
    }
    out = mkdtempSync(join(tmpdir(), 'heed-eval-'));
  });
  after(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  const args = (seeds: string, ...extra: string[]): string[] => [
    'eval', '--sd', SD, '--clip', CLIP, '--grammar', 'pairs', '--max-prompts', '1', '--seeds', seeds, '--steps', '2', '--size', '128x128',
    '--ae-res', '8', '--out', out, ...extra,
  ];

  it('writes one record per sample, and a report computed from the records', async function () {
    const r = await heed(args('0'));
    assert.equal(r.code, 0, r.stderr);
    const recs = samples(out);
    assert.equal(recs.length, 1);
    const rec = recs[0]!;
    assert.equal(rec.prompt, 'a red circle and a green square');
    assert.equal(rec.seed, 0);
    assert.equal(rec.by, 'colour');
    assert.ok(rec.excite, 'a two-subject prompt gets an Attend-and-Excite run from the same seed');
    for (const f of ['report.json', 'report.md', 'diagnosis.png']) assert.ok(existsSync(join(out, f)), f);

    // The records agree with the saved images: colour areas recomputed from the PNGs.
    for (const run of [rec.plain, rec.excite]) {
      const img = await decodeImage(join(out, run.image));
      const masks = nearestColourMasks(img, [...SHAPES_COLOURS.map((c) => SHAPES_PALETTE[c]), SHAPES_BACKGROUND], 60);
      for (const s of run.subjects) {
        const area = maskArea(masks[SHAPES_COLOURS.indexOf(s.colour as ShapesColour)]!) / (img.width * img.height);
        assert.ok(Math.abs(area - s.area) < 1e-6, `${run.image} ${s.word}: area ${s.area} vs ${area} from the PNG`);
        assert.equal(s.present, area >= 0.01);
      }
      close(run.clipMinObject, Math.min(...run.subjects.map((s) => s.clip)), 'min-object similarity');
    }
    // The predictor: relative to the strongest subject (one of them is 1), never above the all-words scale's ratio.
    const rel = rec.plain.subjects.map((s) => s.relative!);
    assert.equal(Math.max(...rel), 1);
    for (const s of rec.plain.subjects) assert.ok(s.relativeAllWords! <= s.relative! + 1e-6);

    // The report's numbers from the records.
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as EvalReport;
    assert.equal(rep.samples, 1);
    assert.equal(rep.pairs.plain.images, 1);
    assert.equal(rep.pairs.samplesWithBoth, 1);
    close(rep.pairs.plain.missRate, rec.plain.subjects.some((s) => !s.present) ? 1 : 0, 'plain miss rate');
    close(rep.pairs.excite!.missRate, rec.excite!.subjects.some((s) => !s.present) ? 1 : 0, 'A&E miss rate');
    close(rep.pairs.plain.clipFull, rec.plain.clipFull, 'full-prompt similarity');
    close(rep.pairs.excite!.clipMinObject, rec.excite!.clipMinObject, 'A&E min-object similarity');
    const scored = rec.plain.subjects.filter((s) => s.pointing !== undefined);
    assert.equal(rep.maps.subjectWords.n, scored.length);
    assert.equal(scored.length, rec.plain.subjects.filter((s) => s.present).length, 'maps are scored exactly for the subjects found');
    if (scored.length > 0) {
      close(rep.maps.subjectWords.pointing, scored.filter((s) => s.pointing).length / scored.length, 'pointing game');
      close(rep.maps.subjectWords.meanIou, mean(scored.map((s) => s.iou!)), 'mean IoU');
    }
    assert.equal(rep.diagnosis.subjects.cases, 2);
    assert.equal(rep.diagnosis.subjects.absent, rec.plain.subjects.filter((s) => !s.present).length);
    const at = rep.diagnosis.subjects.sweep.find((p) => p.threshold === 0.5)!;
    assert.deepEqual(at, prSweep(rec.plain.subjects.map((s) => ({ score: s.relative!, positive: !s.present })), [0.5])[0]);
    assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /\| two subjects \| plain \| 1 \|/);
    // Colour binding: each subject's margin is its two correlations' difference, and the predictor sweeps it.
    for (const s of rec.plain.subjects) {
      assert.ok(Math.abs(s.bindingMargin! - (s.colourOnOwn! - s.colourOnOther!)) < 2e-6, `${s.word}: margin = onOwn − onOther`);
      assert.ok(s.colourOnOwn! >= -1 && s.colourOnOwn! <= 1 && s.colourRelative! > 0 && s.colourRelative! <= 1);
    }
    assert.equal(Math.max(...rec.plain.subjects.map((s) => s.colourRelative!)), 1);
    const b = rep.diagnosis.binding!;
    assert.equal(b.cases, 2);
    const t = b.sweep[50]!.threshold;
    assert.deepEqual(b.sweep[50], prSweep(rec.plain.subjects.map((s) => ({ score: s.bindingMargin!, positive: !s.present })), [t])[0]);
  });

  it('finds the subjects of other prompts by CLIP (presence by similarity, masks by Chefer relevance)', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'heed-eval-clip-'));
    try {
      writeFileSync(join(dir, 'prompts.txt'), '# not of the grammar\na red circle next to a blue square\n');
      const r = await heed(['eval', '--sd', SD, '--clip', CLIP, '--prompts', join(dir, 'prompts.txt'), '--subjects', 'circle,square', '--seeds', '3',
        '--steps', '2', '--size', '128x128', '--no-excite', '--present-sim', '0.3', '--out', join(dir, 'out')]);
      assert.equal(r.code, 0, r.stderr);
      const [rec] = samples(join(dir, 'out'));
      assert.equal(rec!.by, 'clip');
      assert.equal(rec!.excite, undefined, '--no-excite');
      assert.deepEqual(rec!.plain.subjects.map((s) => s.text), ['a red circle', 'a blue square']);
      for (const s of rec!.plain.subjects) {
        assert.equal(s.present, s.clip >= 0.3, `${s.word}: present iff its similarity ${s.clip} ≥ --present-sim`);
        assert.ok(s.area > 0 && s.area < 1, `${s.word}: the relevance mask (> 0.5 of its range) covers part of the image, got ${s.area}`);
        assert.equal(s.pointing !== undefined, s.present);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resumes without redoing finished samples, and refuses to mix settings', async function () {
    if (!existsSync(join(out, 'samples.jsonl'))) this.skip();
    const first = readFileSync(join(out, 'samples.jsonl'), 'utf8');
    // Regenerating would write identical bytes (the run is deterministic): the file's mtime tells whether it was.
    const plainMtime = statSync(join(out, samples(out)[0]!.plain.image)).mtimeMs;

    assertUserError(await heed(args('0..1')), /already holds samples\.jsonl.*--resume/);
    assertUserError(await heed(args('0..1', '--resume', '--tau', '0.5')), /other settings \(tau: 0\.4 → 0\.5\)/);

    const r = await heed(args('0..1', '--resume'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /resuming: 1 sample already in samples\.jsonl, 1 to run/);
    const after = readFileSync(join(out, 'samples.jsonl'), 'utf8');
    assert.ok(after.startsWith(first), 'the finished sample\'s line is kept as it was');
    const recs = samples(out);
    assert.deepEqual(recs.map((x) => x.seed), [0, 1]);
    assert.equal(statSync(join(out, recs[0]!.plain.image)).mtimeMs, plainMtime, 'seed 0 was not generated again');
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as EvalReport;
    assert.equal(rep.samples, 2);
    assert.deepEqual(rep.seeds, [0, 1]);
    close(rep.pairs.plain.clipFull, (recs[0]!.plain.clipFull + recs[1]!.plain.clipFull) / 2, 'mean over both samples');

    // Nothing left to do: the report is recomputed from the file without loading a model.
    const again = await heed(args('0..1', '--resume'));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /resuming: 2 samples already in samples\.jsonl, 0 to run/);
    assert.equal(readFileSync(join(out, 'samples.jsonl'), 'utf8'), after);
  });
});
