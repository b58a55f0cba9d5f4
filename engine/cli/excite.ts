// Attend-and-Excite on the command line: `heed generate … --excite cat,frog` (or `auto`), the `--ae-*` overrides of
// issue 6, `--compare` (plain and guided runs from one seed, side by side), and the files the guidance adds:
//   excite.json        subjects (word → scored token and why), options, every loss evaluation and update, timings
//   excite_loss.png    each subject's loss 1 − score at every step (main evaluations), thresholds as rules
//   <trace>/ae_grad_step0.npy, ae_loss_step0.json, latents_after_ae_step0.npy
//   plain/, compare.png  with --compare: the unguided run's files and "plain | Attend-and-Excite"
// The algorithm lives in engine/guidance; this module only maps flags to its options and writes results.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { GenerateResult } from '../diffusion/pipeline.js';
import type { StableDiffusionPipeline } from '../diffusion/pipeline.js';
import type { AttendExcite, AttendExciteOptions } from '../guidance/attend-excite.js';
import type { ResolvedSubject } from '../guidance/subjects.js';
import { encodeNpy } from '../io/npy.js';
import { floatHwcToRgb, renderLineChart, resizeRgb, renderSideBySide, type ChartSeries } from '../render/index.js';
import { UsageError } from './errors.js';
import { finiteNumber, nonNegativeInt, positiveInt } from './options.js';

export interface ExciteCliOptions {
  excite?: string;
  aeMaxIterToAlter?: number;
  aeThresholds?: Record<number, number>;
  aeScaleFactor?: number;
  aeMaxRefinement?: number;
  aeRes?: number;
  aeNoSmoothing?: boolean;
  aeSigma?: number;
  aeKernel?: number;
  aeSd2?: boolean;
  compare?: boolean;
}

/** `0:0.05,10:0.5,20:0.8` → {0: 0.05, 10: 0.5, 20: 0.8}; thresholds in [0, 1], steps non-negative integers. */
export function parseThresholds(v: string): Record<number, number> {
  const out: Record<number, number> = {};
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new InvalidArgumentError(`--ae-thresholds needs step:threshold pairs such as 0:0.05,10:0.5,20:0.8, got '${v}'`);
  for (const p of parts) {
    const m = /^(\d+)\s*:\s*([0-9.eE+-]+)$/.exec(p);
    const t = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(t) || t < 0 || t > 1) {
      throw new InvalidArgumentError(`--ae-thresholds entry '${p}' must be step:threshold with a threshold in [0, 1], e.g. 0:0.05,10:0.5,20:0.8`);
    }
    out[Number(m[1])] = t;
  }
  return out;
}

function oddKernel(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n % 2 === 0 || n > 31) throw new InvalidArgumentError(`--ae-kernel must be an odd integer from 1 to 31, got '${v}'`);
  return n;
}

/** Adds the Attend-and-Excite flags to `heed generate`. */
export function addExciteOptions(cmd: Command): Command {
  return cmd
    .option('--excite <words|auto>', 'Attend-and-Excite: prompt words to strengthen, comma-separated (or token positions, or "auto" for the prompt\'s nouns)')
    .option('--ae-max-iter-to-alter <n>', 'A&E: steps (loop indices) that get a latent update (default 25)', nonNegativeInt('--ae-max-iter-to-alter', 10_000))
    .option('--ae-thresholds <list>', 'A&E: refinement thresholds by step, e.g. 0:0.05,10:0.5,20:0.8 (the default)', parseThresholds)
    .option('--ae-scale-factor <f>', 'A&E: step size scale (default 20)', finiteNumber('--ae-scale-factor', 0, 1e6))
    .option('--ae-max-refinement <n>', 'A&E: most refinement iterations at a threshold step (default 20)', nonNegativeInt('--ae-max-refinement', 1000))
    .option('--ae-res <r>', 'A&E: side of the attention grid the loss reads (default ceil(height/32): 16 at 512)', positiveInt('--ae-res', 1024))
    .option('--ae-no-smoothing', 'A&E: do not Gaussian-smooth the subject maps')
    .option('--ae-sigma <s>', 'A&E: σ of the Gaussian smoothing (default 0.5)', finiteNumber('--ae-sigma', 1e-6, 100))
    .option('--ae-kernel <k>', 'A&E: Gaussian kernel size, odd (default 3)', oddKernel)
    .option('--ae-sd2', 'A&E: the original repo\'s SD 2.x variant: softmax over the prompt\'s tokens only (up to EOT)')
    .option('--compare', 'with --excite: also run without guidance from the same seed; writes plain/ and compare.png');
}

export interface ExcitePlan {
  subjects: ResolvedSubject[];
  options: AttendExciteOptions;
}

/** Checks flag combinations that need no model. */
export function validateExciteFlags(o: ExciteCliOptions): void {
  const aeFlags: (keyof ExciteCliOptions)[] = ['aeMaxIterToAlter', 'aeThresholds', 'aeScaleFactor', 'aeMaxRefinement', 'aeRes', 'aeNoSmoothing', 'aeSigma', 'aeKernel', 'aeSd2', 'compare'];
  const given = aeFlags.filter((k) => o[k] !== undefined && o[k] !== false);
  if (o.excite === undefined && given.length > 0) {
    const flag = (k: string): string => '--' + k.replace(/[A-Z0-9]+/g, (m) => '-' + m.toLowerCase()).replace(/-(\d)/g, '$1');
    throw new UsageError(`${given.map(flag).join(', ')} only apply to Attend-and-Excite: add --excite WORDS (e.g. --excite cat,frog or --excite auto)`);
  }
  if (o.excite !== undefined && o.excite.trim() === '') {
    throw new UsageError('--excite is empty: give prompt words to strengthen, e.g. --excite cat,frog, or --excite auto');
  }
}

/** Resolves subjects against the prompt and builds the guidance options (diffusers defaults unless overridden). */
export async function planExcite(pipe: StableDiffusionPipeline, prompt: string, height: number, o: ExciteCliOptions): Promise<ExcitePlan> {
  const { resolveSubjects } = await import('../guidance/subjects.js');
  const { AE_DEFAULTS } = await import('../guidance/attend-excite.js');
  const seq = pipe.textEncoder.fixedSequenceLength ?? pipe.tokenizer.maxLength;
  const tokenized = pipe.tokenizer.encode(prompt, { maxLength: seq });
  const subjects = resolveSubjects(tokenized, prompt, o.excite!);
  const options: AttendExciteOptions = {
    tokenIndices: subjects.map((s) => s.tokenIndex),
    maxIterToAlter: o.aeMaxIterToAlter ?? AE_DEFAULTS.maxIterToAlter,
    thresholds: o.aeThresholds ?? { ...AE_DEFAULTS.thresholds },
    scaleFactor: o.aeScaleFactor ?? AE_DEFAULTS.scaleFactor,
    maxRefinementSteps: o.aeMaxRefinement ?? AE_DEFAULTS.maxRefinementSteps,
    resolution: o.aeRes ?? Math.ceil(height / 32),
    loss: { smoothing: !o.aeNoSmoothing, sigma: o.aeSigma ?? 0.5, kernelSize: o.aeKernel ?? 3 },
    // SD 2.x variant: only SOT+1..EOT−1 compete, i.e. the slice ends at the EOT position.
    ...(o.aeSd2 ? { sliceEnd: tokenized.length - 1 } : {}),
  };
  return { subjects, options };
}

export interface SubjectScores {
  word: string;
  tokenIndex: number;
  /** A&E's score (max of the smoothed, softmaxed map) of the denoising pass at each step, from the attention store. */
  byStep: number[];
  /** Max of the word's DAAM map (all its tokens), when maps were collected. */
  daamMax?: number;
}

/**
 * Each subject's A&E score at every step of a finished run, computed the same way for a plain and a guided run: on
 * the conditional half of each denoising UNet call (the store's per-step map at the A&E resolution). So "with vs
 * without guidance" compares like with like, after each step's A&E update.
 */
export async function subjectScores(result: GenerateResult, plan: ExcitePlan): Promise<SubjectScores[]> {
  const { aeLoss } = await import('../guidance/ae-loss.js');
  const store = result.attention;
  const res = plan.options.resolution;
  const by: number[][] = plan.subjects.map(() => []);
  if (store && store.options.perStepResolutions.includes(res)) {
    for (let i = 0; i < store.records.length; i++) {
      let m;
      try {
        m = store.stepMap(i, res);
      } catch {
        break; // no layer at this resolution: no per-step scores
      }
      const r = aeLoss(m.data, m.height, m.width, m.keys, plan.options.tokenIndices, { ...plan.options.loss, sliceEnd: plan.options.sliceEnd });
      r.scores.forEach((s, k) => by[k]!.push(s));
    }
  }
  let global;
  try {
    global = store?.options.daam ? store.daamGlobal() : undefined;
  } catch {
    global = undefined;
  }
  return plan.subjects.map((s, k) => {
    const out: SubjectScores = { word: s.word, tokenIndex: s.tokenIndex, byStep: by[k]! };
    if (global && store) {
      const rows = s.tokenIndices.filter((t) => t < global.tokens);
      if (rows.length) out.daamMax = Math.max(...store.wordMap(rows, global));
    }
    return out;
  });
}

/** The excite.json document. */
export function exciteJson(plan: ExcitePlan, ae: AttendExcite, result: GenerateResult, scores: SubjectScores[]): Record<string, unknown> {
  const mainLoss = ae.events.filter((e) => e.kind === 'loss' && e.phase === 'main');
  return {
    subjects: plan.subjects.map((s) => ({ word: s.word, tokenIndex: s.tokenIndex, tokenIndices: s.tokenIndices, ...(s.note ? { note: s.note } : {}) })),
    options: plan.options,
    layers: ae.sites.map((s) => s.modulePath),
    timesteps: result.timesteps,
    perStep: mainLoss.map((e) => ({ step: e.step, timestep: e.timestep, loss: e.loss, scores: e.scores })),
    events: ae.events,
    finalScores: scores.map((s) => ({ word: s.word, tokenIndex: s.tokenIndex, lastStep: s.byStep.at(-1) ?? null, daamMax: s.daamMax ?? null })),
    timingsMs: ae.timings,
  };
}

/** Loss of each subject (1 − score, clamped at 0) per step, from the main evaluations. */
export function lossChartSeries(plan: ExcitePlan, ae: AttendExcite): ChartSeries[] {
  const main = ae.events.filter((e) => e.kind === 'loss' && e.phase === 'main' && e.scores);
  const series: ChartSeries[] = plan.subjects.map((s, k) => ({
    name: `${s.word} (token ${s.tokenIndex})`,
    points: main.map((e) => [e.step, Math.max(0, 1 - e.scores![k]!)] as const),
  }));
  const refine = ae.events.filter((e) => e.kind === 'loss' && e.phase === 'refine');
  if (refine.length > 0) {
    // Refinement iterations drawn between their step and the next, so the drop they achieve is visible.
    const perStep = new Map<number, number>();
    for (const e of refine) perStep.set(e.step, (perStep.get(e.step) ?? 0) + 1);
    const seen = new Map<number, number>();
    const points: (readonly [number, number])[] = [];
    let prevStep = -1;
    for (const e of refine) {
      if (prevStep !== -1 && e.step !== prevStep) points.push([NaN, NaN]); // a gap: one refinement run per step
      prevStep = e.step;
      const n = perStep.get(e.step)!;
      const i = (seen.get(e.step) ?? 0) + 1;
      seen.set(e.step, i);
      points.push([e.step + (0.9 * i) / (n + 1), e.loss]);
    }
    series.push({ name: 'loss during refinement', dashed: true, markers: true, points });
  }
  return series;
}

export async function writeExciteFiles(outDir: string, traceDir: string | undefined, plan: ExcitePlan, ae: AttendExcite, result: GenerateResult, scores: SubjectScores[]): Promise<string[]> {
  const files: string[] = [];
  const put = (dir: string, name: string, data: string | Buffer): void => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), data);
    files.push(join(dir, name));
  };
  put(outDir, 'excite.json', JSON.stringify(exciteJson(plan, ae, result, scores), null, 1) + '\n');
  const calls = result.timesteps.length;
  // Only thresholds at steps this run reached (diffusers' defaults name steps 10 and 20, beyond a short run).
  const rules = Object.entries(plan.options.thresholds).filter(([step]) => Number(step) < calls)
    .map(([step, t]) => ({ y: 1 - t, label: `step ${step}: loss target ${(1 - t).toFixed(2)}`, color: '#999' }));
  put(outDir, 'excite_loss.png', await renderLineChart({
    title: 'Attend-and-Excite: subject loss (1 − max attention) per step', xLabel: 'step', yLabel: 'loss', integerX: true,
    series: lossChartSeries(plan, ae), rules, yDomain: [0, 1], xDomain: [0, Math.max(1, calls - 1)], width: 720, height: 420,
  }));
  if (traceDir !== undefined) {
    const first = ae.firstUpdate;
    const shape = [...result.latentShape];
    if (first) {
      put(traceDir, 'ae_grad_step0.npy', encodeNpy(first.grad, shape, 'float32'));
      put(traceDir, 'latents_after_ae_step0.npy', encodeNpy(ae.latentsAfterStep0 ?? first.latentsAfter, shape, 'float32'));
    }
    const step0 = ae.events.filter((e) => e.step === 0);
    put(traceDir, 'ae_loss_step0.json', JSON.stringify({
      firstUpdate: first ? { step: first.step, loss: first.loss, stepSize: first.stepSize } : null,
      events: step0,
    }, null, 1) + '\n');
  }
  return files;
}

/** "plain | Attend-and-Excite" PNG from two finished runs. */
export async function writeComparePng(path: string, plain: GenerateResult, excited: GenerateResult, words: string): Promise<void> {
  // Small images (tiny models, previews) are enlarged so that the panel titles fit; large ones are kept as they are.
  const img = async (r: GenerateResult) => {
    const rgb = floatHwcToRgb(r.image.data, r.image.height, r.image.width, 3);
    const k = Math.max(1, Math.ceil(256 / Math.max(r.image.width, 1)));
    return k > 1 ? resizeRgb(rgb, rgb.width * k, rgb.height * k, 'nearest') : rgb;
  };
  const { png } = await renderSideBySide([
    { image: await img(plain), title: 'plain' },
    { image: await img(excited), title: `Attend-and-Excite: ${words}` },
  ], { title: excited.promptText });
  writeFileSync(resolve(path), png);
}

