// `heed eval` as a job: for every prompt × seed, a plain run with DAAM maps and (for prompts with two or more
// subjects) an Attend-and-Excite run from the same seed; each run's subjects are looked for in the image, scored with
// CLIP, and (plain runs) their word maps are scored against the subjects' masks. One JSON line per sample is appended
// to samples.jsonl as soon as it is done; the report (report.json, report.md, diagnosis.png) is recomputed from that
// file at the end, so an interrupted run resumes with --resume where it stopped.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeedError } from '../../errors.js';
import type { ConcreteDevice } from '../../onnx/device.js';
import type { GenerateResult, StableDiffusionPipeline } from '../../diffusion/pipeline.js';
import { bicubicResize } from '../../attention/aggregate.js';
import { subjectAttention } from '../../attention/neglect.js';
import { encodePng, floatHwcToRgb, type RgbImage } from '../../render/index.js';
import type { ExciteOptions } from '../../protocol/index.js';
import { ClipScorer } from './clip.js';
import { mapIou, maskArea, minObjectSimilarity, nearestColourMasks, normalizeMinMax, pointingHit, type Mask } from './metrics.js';
import { SHAPES_BACKGROUND, SHAPES_COLOURS, SHAPES_PALETTE, type EvalPrompt } from './prompts.js';
import { colourBinding } from './binding.js';
import { appendSample, readSamples, sampleKey, type RunRecord, type SampleRecord, type SubjectRecord } from './samples.js';
import { buildReport, writeReport, type EvalReport } from './report.js';

/** Settings that decide what a sample record holds: a resumed run must use the same ones. */
export interface EvalSettings {
  sd: string;
  clip: string;
  steps: number;
  guidance: number;
  scheduler?: string;
  width?: number;
  height?: number;
  /** A&E options other than the subjects (e.g. res); `false`: no A&E runs. */
  excite: Omit<ExciteOptions, 'subjects' | 'compare'> | false;
  /** Which words of each subject A&E strengthens: its noun (the paper's choice), its colour word, or both (Shapes
   *  prompts; other prompts have no colour word and always use the noun). Absent: 'subject'. */
  exciteWords?: ExciteWords;
  /** DAAM's threshold on the normalised word map (0.4). */
  tau: number;
  /** Colour matching: max RGB distance of a pixel to a palette colour (Shapes prompts). */
  colourTolerance: number;
  /** A subject is present when its mask covers at least this share of the image. */
  minArea: number;
  /** Non-Shapes prompts: a subject is present when its CLIP similarity to the image is at least this. */
  presentSimilarity: number;
  /** Non-Shapes prompts: the Chefer relevance mask is the normalised relevance above this. */
  relevanceThreshold: number;
}

export const EXCITE_WORDS = ['subject', 'colour', 'both'] as const;
export type ExciteWords = (typeof EXCITE_WORDS)[number];

/** The words A&E strengthens for a prompt's subjects. */
export function exciteWordsOf(subjects: readonly { word: string; colour?: string }[], which: ExciteWords = 'subject'): string[] {
  return subjects.flatMap((x) => {
    if (which === 'subject' || !x.colour) return [x.word];
    return which === 'colour' ? [x.colour] : [x.colour, x.word];
  });
}

export const EVAL_DEFAULTS = { tau: 0.4, colourTolerance: 60, minArea: 0.01, presentSimilarity: 0.2, relevanceThreshold: 0.5 } as const;

export interface EvalJobSpec {
  settings: EvalSettings;
  prompts: readonly EvalPrompt[];
  seeds: readonly number[];
  out: string;
  resume: boolean;
  device?: ConcreteDevice;
  threads?: number;
}

export interface EvalProgress {
  /** Runs finished and planned (a sample is one plain run, plus one A&E run for multi-subject prompts). */
  done: number;
  total: number;
  detail: string;
}

export interface EvalJobHooks {
  signal?: AbortSignal;
  onLoaded?(info: { skipped: number; todo: number }): void;
  onProgress?(p: EvalProgress): void;
  /** Rewords a run's failure (the CLI explains sizes the UNet cannot take). */
  mapError?(e: unknown, size: { width: number; height: number }): unknown;
}

export interface EvalJobOutput {
  report: EvalReport;
  files: { jsonl: string; json: string; md: string; chart: string };
  /** Samples computed by this call (the others came from samples.jsonl). */
  computed: number;
  reused: number;
}

export const SAMPLES_FILE = 'samples.jsonl';
const SETTINGS_FILE = 'eval-settings.json';

/** What a resumed run must share with the run that wrote samples.jsonl. */
function checkResume(out: string, settings: EvalSettings, resume: boolean): void {
  const jsonl = join(out, SAMPLES_FILE);
  const settingsFile = join(out, SETTINGS_FILE);
  const have = existsSync(jsonl) && readFileSync(jsonl, 'utf8').trim() !== '';
  if (have && !resume) {
    throw new HeedError('invalid_input', `--out ${out} already holds ${SAMPLES_FILE} from an earlier evaluation: pass --resume to continue it, or choose another --out folder`, { field: 'resume' });
  }
  if (have && existsSync(settingsFile)) {
    const before = JSON.parse(readFileSync(settingsFile, 'utf8')) as Record<string, unknown>;
    const now = JSON.parse(JSON.stringify(settings)) as Record<string, unknown>;
    const changed = [...new Set([...Object.keys(before), ...Object.keys(now)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(now[k]));
    if (changed.length > 0) {
      throw new HeedError('invalid_input', `--resume: the evaluation in ${out} was made with other settings (${changed.map((k) => `${k}: ${JSON.stringify(before[k])} → ${JSON.stringify(now[k])}`).join('; ')}); ` +
        'resume with the same flags, or choose another --out folder', { field: 'resume' });
    }
  }
}

export async function runEvalJob(spec: EvalJobSpec, hooks: EvalJobHooks = {}): Promise<EvalJobOutput> {
  const { settings, out } = spec;
  mkdirSync(join(out, 'samples'), { recursive: true });
  checkResume(out, settings, spec.resume);
  const jsonl = join(out, SAMPLES_FILE);
  const done = new Map(readSamples(jsonl).map((r) => [r.key, r] as const));
  writeFileSync(join(out, SETTINGS_FILE), JSON.stringify(settings, null, 1) + '\n');

  const todo: { prompt: EvalPrompt; seed: number }[] = [];
  let reused = 0;
  for (const prompt of spec.prompts) {
    for (const seed of spec.seeds) {
      if (done.has(sampleKey(prompt.text, seed))) reused++;
      else todo.push({ prompt, seed });
    }
  }
  hooks.onLoaded?.({ skipped: reused, todo: todo.length });
  if (todo.length > 0) {
    const runsOf = (p: EvalPrompt): number => (settings.excite !== false && p.subjects.length >= 2 ? 2 : 1);
    const total = todo.reduce((n, t) => n + runsOf(t.prompt), 0);
    // CLIP first: it loads in a fraction of the time, so a wrong --clip folder fails before the pipeline loads.
    const clip = await ClipScorer.load(settings.clip, { ...(spec.device ? { device: spec.device } : {}), threads: spec.threads ?? 1 });
    const { StableDiffusionPipeline } = await import('../../diffusion/pipeline.js');
    let pipe: StableDiffusionPipeline;
    try {
      pipe = await StableDiffusionPipeline.load(settings.sd, { threads: spec.threads ?? 1, session: { logSeverity: 4, ...(spec.device ? { device: spec.device } : {}) } });
    } catch (e) {
      await clip.release();
      if (e instanceof HeedError && e.kind !== 'internal') throw new HeedError(e.kind, `--sd ${settings.sd}: ${e.message}`, { field: 'sd', cause: e });
      throw e;
    }
    try {
      let finished = 0;
      for (const { prompt, seed } of todo) {
        const label = `"${prompt.text}" seed ${seed}`;
        const progress = (run: string) => (s: { step: number; total: number }): void => {
          hooks.onProgress?.({ done: finished, total, detail: `${label} ${run} step ${s.step + 1}/${s.total}` });
        };
        const t0 = performance.now();
        const plainResult = await generate(pipe, settings, prompt, seed, false, hooks, progress('plain'));
        const plain = await scoreRun(plainResult, prompt, settings, clip, true, join(out, 'samples'), `${fileStem(prompt.text)}_s${seed}_plain.png`, performance.now() - t0);
        finished++;
        let excite: RunRecord | undefined;
        if (runsOf(prompt) === 2) {
          const t1 = performance.now();
          const guided = await generate(pipe, settings, prompt, seed, true, hooks, progress('A&E'));
          excite = await scoreRun(guided, prompt, settings, clip, false, join(out, 'samples'), `${fileStem(prompt.text)}_s${seed}_excite.png`, performance.now() - t1);
          finished++;
        }
        const record: SampleRecord = {
          key: sampleKey(prompt.text, seed), prompt: prompt.text, seed, by: prompt.shapes ? 'colour' : 'clip', plain, ...(excite ? { excite } : {}),
        };
        appendSample(jsonl, record);
        done.set(record.key, record);
        hooks.onProgress?.({ done: finished, total, detail: label });
      }
    } finally {
      await clip.release();
      await pipe.dispose();
    }
  }
  const records = readSamples(jsonl);
  const report = buildReport(records, settings);
  const files = await writeReport(out, report);
  return { report, files: { jsonl, ...files }, computed: todo.length, reused };
}

/** A readable file name for a prompt, with a hash of the exact text (prompts that differ only in case, punctuation
 *  or past 60 characters get different files). */
function fileStem(text: string): string {
  const slug = text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'prompt';
  return `${slug}-${createHash('sha1').update(text).digest('hex').slice(0, 8)}`;
}

async function generate(pipe: StableDiffusionPipeline, s: EvalSettings, prompt: EvalPrompt, seed: number, excite: boolean, hooks: EvalJobHooks,
  onStep: (info: { step: number; total: number }) => void): Promise<GenerateResult> {
  const width = s.width ?? pipe.folder.defaultImageSize;
  const height = s.height ?? pipe.folder.defaultImageSize;
  const base = {
    prompt: prompt.text, steps: s.steps, guidance: s.guidance, seed, width, height,
    ...(s.scheduler !== undefined ? { scheduler: s.scheduler } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    onStep,
    keepNoisePredictions: 0,
  };
  const wrap = (e: unknown): never => {
    throw hooks.mapError ? hooks.mapError(e, { width, height }) : e;
  };
  if (!excite || s.excite === false) return pipe.generate({ ...base, maps: { daam: true } }).catch(wrap);
  const { planExcite } = await import('../excite.js');
  const { AttendExcite } = await import('../../guidance/attend-excite.js');
  const plan = await planExcite(pipe, prompt.text, { width, height }, { ...s.excite, subjects: exciteWordsOf(prompt.subjects, s.exciteWords) });
  const ae = await AttendExcite.create(pipe, [1, pipe.unet.io.channels, height / 8, width / 8], plan.options);
  try {
    return await pipe.generate({ ...base, maps: { daam: false, perStepResolutions: [plan.options.resolution] }, beforeStep: (c) => ae.hook(c) }).catch(wrap);
  } finally {
    await ae.dispose();
  }
}

/** Where each subject is in the image, and whether it is there at all. */
async function findSubjects(img: RgbImage, prompt: EvalPrompt, s: EvalSettings, clip: ClipScorer, similarities: number[]): Promise<{ masks: Mask[]; present: boolean[] }> {
  const pixels = img.width * img.height;
  if (prompt.shapes) {
    const colours = [...SHAPES_COLOURS.map((c) => SHAPES_PALETTE[c]), SHAPES_BACKGROUND];
    const byColour = nearestColourMasks(img, colours, s.colourTolerance);
    const masks = prompt.subjects.map((x) => byColour[SHAPES_COLOURS.indexOf(x.colour!)]!);
    return { masks, present: masks.map((m) => maskArea(m) >= s.minArea * pixels) };
  }
  const relevance = await clip.relevance(img, prompt.subjects.map((x) => x.text));
  const masks = relevance.map((g) => {
    const up = normalizeMinMax(bicubicResize(g.data, 1, g.height, g.width, img.height, img.width));
    const data = new Uint8Array(pixels);
    for (let i = 0; i < pixels; i++) data[i] = up[i]! > s.relevanceThreshold ? 1 : 0;
    return { width: img.width, height: img.height, data };
  });
  return { masks, present: similarities.map((v) => v >= s.presentSimilarity) };
}

/** The word's DAAM map at image resolution (bicubic, as DAAM upsamples), and its max before upsampling. */
function wordMapAt(result: GenerateResult, word: string, width: number, height: number): { map: Float32Array; max: number } | undefined {
  const store = result.attention;
  if (!store || !store.options.daam) return undefined;
  const w = result.prompt.words.find((x) => x.normalized === word.toLowerCase() && x.tokenIndices.length > 0);
  if (!w) return undefined;
  const global = store.daamGlobal();
  const rows = w.tokenIndices.filter((i) => i < global.tokens);
  if (rows.length === 0) return undefined;
  const m = store.wordMap(rows, global);
  let max = -Infinity;
  for (const v of m) if (v > max) max = v;
  return { map: bicubicResize(m, 1, global.height, global.width, height, width), max };
}

/** Every word's max attention (the editor's former scale: all words, "a" and "and" included). */
function allWordMaxima(result: GenerateResult): { word: string; maxAttention: number }[] {
  const store = result.attention;
  if (!store || !store.options.daam) return [];
  const global = store.daamGlobal();
  return result.prompt.words.flatMap((w) => {
    const rows = w.tokenIndices.filter((i) => i < global.tokens);
    if (rows.length === 0 || !/[\p{L}\p{N}]/u.test(w.word)) return [];
    let max = -Infinity;
    for (const v of store.wordMap(rows, global)) if (v > max) max = v;
    return [{ word: w.word, maxAttention: max }];
  });
}

async function scoreRun(result: GenerateResult, prompt: EvalPrompt, s: EvalSettings, clip: ClipScorer, withMaps: boolean, dir: string, name: string, ms: number): Promise<RunRecord> {
  const { width, height, data } = result.image;
  const img = floatHwcToRgb(data, height, width, 3);
  writeFileSync(join(dir, name), await encodePng(img));
  const sims = await clip.similarities(img, [prompt.text, ...prompt.subjects.map((x) => x.text)]);
  const subjectSims = sims.slice(1);
  const { masks, present } = await findSubjects(img, prompt, s, clip, subjectSims);
  const maps = withMaps ? prompt.subjects.map((x) => wordMapAt(result, x.word, width, height)) : [];
  const relative = withMaps ? subjectAttention(prompt.subjects.flatMap((x, k) => (maps[k] ? [{ word: x.word, maxAttention: maps[k].max }] : [])), prompt.subjects.map((x) => x.word)) : [];
  const everyWord = withMaps ? allWordMaxima(result) : [];
  const binding = withMaps ? colourBinding(result, prompt) : [];
  const topAll = Math.max(0, ...everyWord.map((w) => w.maxAttention));
  const subjects: SubjectRecord[] = prompt.subjects.map((x, k) => {
    const r: SubjectRecord = { word: x.word, text: x.text, ...(x.colour ? { colour: x.colour } : {}), present: present[k]!, area: round(maskArea(masks[k]!) / (width * height)), clip: round(subjectSims[k]!) };
    const m = maps[k];
    if (m) {
      r.maxAttention = round(m.max);
      const rel = relative.find((q) => q.word.toLowerCase() === x.word.toLowerCase());
      if (rel) r.relative = round(rel.relative);
      if (topAll > 0) r.relativeAllWords = round(m.max / topAll);
      const b = binding[k];
      if (b) {
        r.colourMaxAttention = round(b.colourMax);
        r.colourRelative = round(b.colourRelative);
        r.bindingMargin = round(b.margin);
        r.colourOnOwn = round(b.onOwn);
        r.colourOnOther = round(b.onOther);
      }
      if (present[k]) {
        r.pointing = pointingHit(m.map, masks[k]!);
        r.iou = round(mapIou(m.map, masks[k]!, s.tau));
        const c = x.colourWord ? wordMapAt(result, x.colourWord, width, height) : undefined;
        if (c) {
          r.colourPointing = pointingHit(c.map, masks[k]!);
          r.colourIou = round(mapIou(c.map, masks[k]!, s.tau));
        }
      }
    }
    return r;
  });
  return {
    image: `samples/${name}`, subjects, clipFull: round(sims[0]!), clipMinObject: prompt.subjects.length > 0 ? round(minObjectSimilarity(subjectSims)!) : null, ms: Math.round(ms),
  };
}

function round(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}
