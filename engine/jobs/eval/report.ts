// The report of `heed eval`, recomputed from the per-sample records (samples.jsonl) alone: maps (pointing game, mean
// IoU), presence and neglect with and without Attend-and-Excite, CLIP similarities, and the neglect warning scored as
// a predictor of "subject absent" (precision/recall sweep and the threshold chosen from it). Written as report.json,
// report.md (Markdown tables) and diagnosis.png (the sweep).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderLineChart, type ChartSeries } from '../../render/index.js';
import { bestF1, chooseThreshold, f1, mean, prSweep, thresholdGrid, type PrPoint, type ScoredCase } from './metrics.js';
import type { RunRecord, SampleRecord } from './samples.js';
import type { EvalSettings } from './run.js';

/** Recall the neglect warning must reach; the threshold is the one with the best precision among those that do. */
export const MIN_RECALL = 0.8;

export interface MapScore {
  /** Subjects (present in the image) whose maps were scored. */
  n: number;
  pointing: number | null;
  meanIou: number | null;
}

export interface PresenceScore {
  images: number;
  /** Share of images where each subject (by position in the prompt) is present. */
  eachSubject: (number | null)[];
  /** Share of subject instances present. */
  subjects: number | null;
  /** Share of images with every subject present. */
  all: number | null;
  /** Share of images missing at least one subject. */
  missRate: number | null;
  clipFull: number | null;
  clipMinObject: number | null;
}

export interface PredictorScore {
  /** Subjects scored (pair prompts, plain runs) and how many of them are absent. */
  cases: number;
  absent: number;
  sweep: PrPoint[];
  /** The threshold reaching recall ≥ MIN_RECALL with the best precision (null when none does). */
  chosen: PrPoint | null;
  /** The threshold with the best F1 (for when no threshold reaches the recall). */
  bestF1: (PrPoint & { f1: number }) | null;
}

export interface EvalReport {
  settings: EvalSettings;
  samples: number;
  prompts: number;
  seeds: number[];
  maps: {
    tau: number;
    /** The subject word (the shape word for Shapes prompts). */
    subjectWords: MapScore;
    /** Shapes prompts: the colour word. */
    colourWords: MapScore;
  };
  /** Single-subject prompts, plain runs. */
  single: PresenceScore;
  /** Two-or-more-subject prompts: plain runs, and A&E runs from the same seeds (only samples having both). */
  pairs: { plain: PresenceScore; excite: PresenceScore | null; samplesWithBoth: number };
  diagnosis: {
    minRecall: number;
    /** Relative to the strongest SUBJECT (the fixed predictor, engine/attention/neglect.ts). */
    subjects: PredictorScore;
    /** Relative to the strongest of ALL words, "a" and "and" included (the editor's former predictor). */
    allWords: PredictorScore;
    /**
     * Shapes prompts: the colour word's binding margin (correlation of its map with its own noun's minus the largest
     * with another subject's noun; flagged when under the threshold, swept over −1 … 2). Absent without colour words.
     */
    binding: PredictorScore | null;
    /**
     * Per IMAGE (cases = images, absent = images missing a subject): the largest binding margin among its subjects,
     * flagged when under the threshold — the editor's leakage warning (engine/attention/binding.ts).
     */
    leakage: PredictorScore | null;
  };
}

function rate(flags: readonly boolean[]): number | null {
  return flags.length === 0 ? null : flags.filter(Boolean).length / flags.length;
}

function mapScore(records: readonly SampleRecord[], pick: 'subject' | 'colour'): MapScore {
  const hits: boolean[] = [];
  const ious: number[] = [];
  for (const r of records) {
    for (const s of r.plain.subjects) {
      const p = pick === 'subject' ? s.pointing : s.colourPointing;
      const i = pick === 'subject' ? s.iou : s.colourIou;
      if (p !== undefined) hits.push(p);
      if (i !== undefined) ious.push(i);
    }
  }
  return { n: hits.length, pointing: rate(hits), meanIou: mean(ious) };
}

function presence(runs: readonly RunRecord[]): PresenceScore {
  const most = Math.max(0, ...runs.map((r) => r.subjects.length));
  return {
    images: runs.length,
    eachSubject: Array.from({ length: most }, (_, k) => rate(runs.filter((r) => r.subjects[k]).map((r) => r.subjects[k]!.present))),
    subjects: rate(runs.flatMap((r) => r.subjects.map((s) => s.present))),
    all: rate(runs.map((r) => r.subjects.every((s) => s.present))),
    missRate: rate(runs.map((r) => r.subjects.some((s) => !s.present))),
    clipFull: mean(runs.map((r) => r.clipFull)),
    clipMinObject: mean(runs.flatMap((r) => (r.clipMinObject === null ? [] : [r.clipMinObject]))),
  };
}

/** A margin difference of two correlations lies in [−2, 2]; −1 … 2 in steps of 0.03 covers what occurs. */
const MARGIN_GRID = thresholdGrid(100).map((t) => Math.round((3 * t - 1) * 1e6) / 1e6);

function predictor(records: readonly SampleRecord[], field: 'relative' | 'relativeAllWords' | 'bindingMargin',
  // 0..1 for the relative scores: a threshold of 1 flags every subject but the strongest (its relative is 1).
  grid: readonly number[] = thresholdGrid(100)): PredictorScore {
  const cases: ScoredCase[] = records.flatMap((r) => r.plain.subjects.flatMap((s) => (s[field] === undefined ? [] : [{ score: s[field]!, positive: !s.present }])));
  const sweep = prSweep(cases, grid);
  const best = bestF1(sweep);
  return {
    cases: cases.length, absent: cases.filter((c) => c.positive).length, sweep, chosen: chooseThreshold(sweep, MIN_RECALL) ?? null,
    bestF1: best ? { ...best, f1: f1(best) } : null,
  };
}

/** Image-level: the largest binding margin of the image's subjects against "the image misses a subject". */
function leakagePredictor(records: readonly SampleRecord[]): PredictorScore | null {
  const cases: ScoredCase[] = records.flatMap((r) => {
    const margins = r.plain.subjects.flatMap((s) => (s.bindingMargin === undefined ? [] : [s.bindingMargin]));
    return margins.length === 0 ? [] : [{ score: Math.max(...margins), positive: r.plain.subjects.some((s) => !s.present) }];
  });
  if (cases.length === 0) return null;
  const sweep = prSweep(cases, MARGIN_GRID);
  const best = bestF1(sweep);
  return {
    cases: cases.length, absent: cases.filter((c) => c.positive).length, sweep, chosen: chooseThreshold(sweep, MIN_RECALL) ?? null,
    bestF1: best ? { ...best, f1: f1(best) } : null,
  };
}

export function buildReport(records: readonly SampleRecord[], settings: EvalSettings): EvalReport {
  const single = records.filter((r) => r.plain.subjects.length === 1);
  const pairs = records.filter((r) => r.plain.subjects.length >= 2);
  const both = pairs.filter((r) => r.excite);
  return {
    settings,
    samples: records.length,
    prompts: new Set(records.map((r) => r.prompt)).size,
    seeds: [...new Set(records.map((r) => r.seed))].sort((a, b) => a - b),
    maps: { tau: settings.tau, subjectWords: mapScore(records, 'subject'), colourWords: mapScore(records, 'colour') },
    single: presence(single.map((r) => r.plain)),
    pairs: {
      plain: presence(pairs.map((r) => r.plain)),
      excite: both.length > 0 ? presence(both.map((r) => r.excite!)) : null,
      samplesWithBoth: both.length,
    },
    diagnosis: {
      minRecall: MIN_RECALL, subjects: predictor(pairs, 'relative'), allWords: predictor(pairs, 'relativeAllWords'),
      binding: pairs.some((r) => r.plain.subjects.some((s) => s.bindingMargin !== undefined)) ? predictor(pairs, 'bindingMargin', MARGIN_GRID) : null,
      leakage: leakagePredictor(pairs),
    },
  };
}

const pct = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)} %`);
const num = (v: number | null | undefined, d = 3): string => (v === null || v === undefined ? '–' : v.toFixed(d));

function chosenLine(p: PredictorScore): string {
  if (p.absent === 0) return 'no absent subject among the cases: precision/recall cannot be measured';
  if (!p.chosen) {
    const b = p.bestF1;
    return `no threshold reaches recall ≥ ${MIN_RECALL}${b ? `; best F1 ${num(b.f1)} at threshold ${b.threshold.toFixed(2)} (precision ${num(b.precision)}, recall ${num(b.recall)})` : ''}`;
  }
  return `threshold ${p.chosen.threshold.toFixed(2)}: precision ${num(p.chosen.precision)}, recall ${num(p.chosen.recall)} (TP ${p.chosen.tp}, FP ${p.chosen.fp}, FN ${p.chosen.fn})`;
}

export function reportMarkdown(r: EvalReport): string {
  const s = r.settings;
  const lines: string[] = [];
  lines.push('# heed eval', '');
  lines.push(`SD \`${s.sd}\`, CLIP \`${s.clip}\`; ${r.samples} samples (${r.prompts} prompts × seeds ${r.seeds.length <= 8 ? r.seeds.join(', ') : `${r.seeds[0]}..${r.seeds.at(-1)} (${r.seeds.length})`}), ` +
    `${s.steps} steps, guidance ${s.guidance}${s.width ? `, ${s.width}×${s.height}` : ''}${s.excite === false ? ', no A&E runs' : `, A&E ${JSON.stringify(s.excite)} on the ${s.exciteWords === "colour" ? "colour words" : s.exciteWords === "both" ? "colour and subject words" : "subject words"}`}.`, '');
  lines.push('## Word maps (plain runs, subjects found in the image)', '');
  lines.push(`Map upsampled (bicubic) to the image; pointing: its maximum lies inside the subject's mask; IoU: map normalised to [0, 1] and thresholded at τ = ${r.maps.tau} (DAAM's protocol) against the mask.`, '');
  lines.push('| word | subjects | pointing game | mean IoU |', '|---|---:|---:|---:|');
  lines.push(`| subject (shape) word | ${r.maps.subjectWords.n} | ${pct(r.maps.subjectWords.pointing)} | ${num(r.maps.subjectWords.meanIou)} |`);
  if (r.maps.colourWords.n > 0) lines.push(`| colour word | ${r.maps.colourWords.n} | ${pct(r.maps.colourWords.pointing)} | ${num(r.maps.colourWords.meanIou)} |`);
  lines.push('', '## Presence and neglect', '');
  lines.push('| prompts | run | images | subject 1 present | subject 2 present | all present | misses a subject | CLIP full prompt | CLIP min object |', '|---|---|---:|---:|---:|---:|---:|---:|---:|');
  const row = (what: string, run: string, p: PresenceScore): string =>
    `| ${what} | ${run} | ${p.images} | ${pct(p.eachSubject[0])} | ${pct(p.eachSubject[1])} | ${pct(p.all)} | ${pct(p.missRate)} | ${num(p.clipFull)} | ${num(p.clipMinObject)} |`;
  if (r.single.images > 0) lines.push(row('one subject', 'plain', r.single));
  if (r.pairs.plain.images > 0) lines.push(row('two subjects', 'plain', r.pairs.plain));
  if (r.pairs.excite) {
    const plainSame = r.pairs.samplesWithBoth;
    lines.push(row('two subjects', `Attend-and-Excite (same ${plainSame} seeds×prompts)`, r.pairs.excite));
  }
  lines.push('', '## Diagnosis: the "may be neglected" warning as a predictor of "subject absent"', '');
  lines.push(`Over the plain runs of prompts with two or more subjects: a subject is flagged when its max attention relative to the strongest subject is under the threshold. ` +
    `Chosen threshold: recall ≥ ${r.diagnosis.minRecall} with the best precision.`, '');
  lines.push('| predictor | subjects | absent | chosen |', '|---|---:|---:|---|');
  lines.push(`| relative to the strongest subject (Heed's warning) | ${r.diagnosis.subjects.cases} | ${r.diagnosis.subjects.absent} | ${chosenLine(r.diagnosis.subjects)} |`);
  lines.push(`| relative to the strongest word, "a"/"and" included (former) | ${r.diagnosis.allWords.cases} | ${r.diagnosis.allWords.absent} | ${chosenLine(r.diagnosis.allWords)} |`);
  if (r.diagnosis.leakage) lines.push(`| per image: largest binding margin of its subjects (the editor's leakage warning) vs "a subject is missing" | ${r.diagnosis.leakage.cases} images | ${r.diagnosis.leakage.absent} | ${chosenLine(r.diagnosis.leakage)} |`);
  if (r.diagnosis.binding) lines.push(`| colour binding margin (its map's correlation with its own noun's minus with the other noun's) | ${r.diagnosis.binding.cases} | ${r.diagnosis.binding.absent} | ${chosenLine(r.diagnosis.binding)} |`);
  lines.push('', '| threshold | precision | recall | flagged |', '|---:|---:|---:|---:|');
  for (const p of r.diagnosis.subjects.sweep.filter((_, i) => i % 10 === 0)) lines.push(`| ${p.threshold.toFixed(2)} | ${num(p.precision)} | ${num(p.recall)} | ${p.tp + p.fp} |`);
  lines.push('', 'Precision and recall at every threshold: report.json (`diagnosis`), plotted in diagnosis.png.', '');
  return lines.join('\n');
}

export async function renderDiagnosisChart(r: EvalReport): Promise<Buffer> {
  const pts = (sweep: readonly PrPoint[], k: 'precision' | 'recall'): (readonly [number, number])[] =>
    sweep.map((p) => [p.threshold, p[k] ?? NaN] as const);
  const series: ChartSeries[] = [
    { name: 'precision (subjects only)', points: pts(r.diagnosis.subjects.sweep, 'precision'), markers: false },
    { name: 'recall (subjects only)', points: pts(r.diagnosis.subjects.sweep, 'recall'), markers: false },
    { name: 'precision (all words, former)', points: pts(r.diagnosis.allWords.sweep, 'precision'), dashed: true, markers: false },
    { name: 'recall (all words, former)', points: pts(r.diagnosis.allWords.sweep, 'recall'), dashed: true, markers: false },
  ];
  const chosen = r.diagnosis.subjects.chosen;
  return renderLineChart({
    title: `Neglect warning vs absent subjects (${r.diagnosis.subjects.absent} of ${r.diagnosis.subjects.cases} absent)${chosen ? `; chosen threshold ${chosen.threshold.toFixed(2)}` : ''}`,
    xLabel: 'threshold on relative max attention', yLabel: 'precision / recall', series,
    rules: [{ y: MIN_RECALL, label: `recall ${MIN_RECALL}`, color: '#999' }],
    xDomain: [0, 1], yDomain: [0, 1], width: 760, height: 440,
  });
}

export async function writeReport(out: string, r: EvalReport): Promise<{ json: string; md: string; chart: string }> {
  const json = join(out, 'report.json');
  const md = join(out, 'report.md');
  const chart = join(out, 'diagnosis.png');
  writeFileSync(json, JSON.stringify(r, null, 1) + '\n');
  writeFileSync(md, reportMarkdown(r));
  writeFileSync(chart, await renderDiagnosisChart(r));
  return { json, md, chart };
}
