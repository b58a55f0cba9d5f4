// Attend-and-Excite inside a generate job: resolving the subjects and building the guidance options from the
// protocol's excite options (the CLI translates its --excite / --ae-* flags into the same type), each subject's score
// per step, and the files the guidance adds:
//   excite.json        subjects (word → scored token and why), options, every loss evaluation and update, timings
//   excite_loss.png    each subject's loss 1 − score at every step (main evaluations), thresholds as rules
//   <trace>/ae_grad_step0.npy, ae_loss_step0.json, latents_after_ae_step0.npy
//   plain/, compare.png  with compare: the unguided run's files and "plain | Attend-and-Excite"
// The algorithm lives in engine/guidance; this module only maps options to it and writes results.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { GenerateResult } from '../diffusion/pipeline.js';
import type { StableDiffusionPipeline } from '../diffusion/pipeline.js';
import type { AttendExcite, AttendExciteOptions } from '../guidance/attend-excite.js';
import type { ResolvedBinding, ResolvedSubject } from '../guidance/subjects.js';
import { encodeNpy } from '../io/npy.js';
import type { ExciteOptions } from '../protocol/index.js';
import { floatHwcToRgb, renderLineChart, resizeRgb, renderSideBySide, type ChartSeries } from '../render/index.js';

export type { ExciteOptions };

export interface ExcitePlan {
  subjects: ResolvedSubject[];
  /** SynGen: each subject's modifiers (empty for Attend-and-Excite). */
  bindings: ResolvedBinding[];
  options: AttendExciteOptions;
  /** E.g. the default attention grid did not exist at this size and another was taken. */
  warnings: string[];
}

/** Resolves subjects against the prompt and builds the guidance options (diffusers defaults unless overridden).
 *  Subjects stay a list from the request to resolveSubjects: a subject is never joined into a string and split again. */
export async function planExcite(pipe: StableDiffusionPipeline, prompt: string, size: { width: number; height: number }, o: ExciteOptions): Promise<ExcitePlan> {
  const { resolveSubjects, resolveBindings } = await import('../guidance/subjects.js');
  const { AE_DEFAULTS } = await import('../guidance/attend-excite.js');
  const seq = pipe.textEncoder.fixedSequenceLength ?? pipe.tokenizer.maxLength;
  const tokenized = pipe.tokenizer.encode(prompt, { maxLength: seq });
  const subjects = resolveSubjects(tokenized, prompt, o.subjects);
  const method = o.method ?? 'attend-excite';
  if (method === 'syngen') {
    const { HeedError } = await import('../errors.js');
    // SynGen makes one update per step; refinement is Attend-and-Excite's (its thresholds are on A&E's loss).
    if (o.thresholds !== undefined) throw new HeedError('invalid_input', 'refinement thresholds are Attend-and-Excite\'s: SynGen makes one update per step; drop --ae-thresholds or use --ae-loss excite', { field: 'excite.thresholds' });
    if (o.maxRefinement !== undefined) throw new HeedError('invalid_input', 'refinement is Attend-and-Excite\'s: SynGen makes one update per step; drop --ae-max-refinement or use --ae-loss excite', { field: 'excite.maxRefinement' });
  } else if (o.modifiers !== undefined) {
    const { HeedError } = await import('../errors.js');
    throw new HeedError('invalid_input', 'modifiers are bound by SynGen\'s loss: add --ae-loss syngen (method "syngen"), or drop them', { field: 'excite.modifiers' });
  }
  const bindings = method === 'syngen' ? resolveBindings(tokenized, prompt, subjects, o.modifiers) : [];
  // A σ so small that 2σ² underflows makes the Gaussian smoothing kernel 0/0 = NaN, and the NaN losses reach the
  // client as events that fail the protocol's schema: refuse it up front, for the CLI and the server alike.
  const sigma = o.sigma ?? 0.5;
  if (o.smoothing !== false && !(Number.isFinite(sigma) && Number.isFinite(1 / (2 * sigma * sigma)))) {
    const { HeedError } = await import('../errors.js');
    throw new HeedError('invalid_input', `excite sigma ${sigma} is too small for the Gaussian smoothing (2σ² underflows to 0, giving NaN): use at least 1e-100, or turn smoothing off`, { field: 'excite.sigma' });
  }
  const grid = o.res === undefined ? pipe.defaultAttentionGrid(size.width, size.height) : undefined;
  const options: AttendExciteOptions = {
    tokenIndices: subjects.map((s) => s.tokenIndex),
    maxIterToAlter: o.maxIterToAlter ?? AE_DEFAULTS.maxIterToAlter,
    thresholds: o.thresholds ? Object.fromEntries(Object.entries(o.thresholds).map(([k, v]) => [Number(k), v])) : method === 'syngen' ? {} : { ...AE_DEFAULTS.thresholds },
    scaleFactor: o.scaleFactor ?? AE_DEFAULTS.scaleFactor,
    maxRefinementSteps: o.maxRefinement ?? AE_DEFAULTS.maxRefinementSteps,
    resolution: o.res ?? grid!.res,
    loss: { smoothing: o.smoothing !== false, sigma: o.sigma ?? 0.5, kernelSize: o.kernel ?? 3 },
    // SD 2.x variant: only SOT+1..EOT−1 compete, i.e. the slice ends at the EOT position.
    ...(o.sd2 ? { sliceEnd: tokenized.length - 1 } : {}),
    ...(method === 'syngen' ? {
      method,
      bindings: bindings.map((b) => ({ noun: b.nounTokens, modifiers: b.modifiers.map((m) => m.tokenIndices) })),
      // The SynGen pipeline's "outside" words: every position of the prompt between SOT and EOT.
      promptTokens: Array.from({ length: tokenized.length - 2 }, (_, i) => i + 1),
    } : {}),
  };
  return { subjects, bindings, options, warnings: grid?.warning ? [grid.warning] : [] };
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
    ...(plan.bindings.length > 0 ? { bindings: plan.bindings } : {}),
    options: plan.options,
    layers: ae.sites.map((s) => s.modulePath),
    timesteps: result.timesteps,
    perStep: mainLoss.map((e) => ({ step: e.step, timestep: e.timestep, loss: e.loss, scores: e.scores, ...(e.bindingLosses ? { bindingLosses: e.bindingLosses } : {}) })),
    events: ae.events,
    finalScores: scores.map((s) => ({ word: s.word, tokenIndex: s.tokenIndex, lastStep: s.byStep.at(-1) ?? null, daamMax: s.daamMax ?? null })),
    timingsMs: ae.timings,
  };
}

/** Loss of each subject (1 − score, clamped at 0) per step, from the main evaluations. */
export function lossChartSeries(plan: ExcitePlan, ae: AttendExcite): ChartSeries[] {
  if (plan.options.method === 'syngen') {
    // SynGen's loss per binding (positive: modifier vs noun; negative: both vs the other words) and in total.
    const steps = ae.events.filter((e) => e.kind === 'loss' && e.phase === 'main' && e.bindingLosses);
    return [
      ...plan.bindings.map((b, k) => ({
        name: [...b.modifiers.map((m) => m.word), b.noun].join(' '),
        points: steps.map((e) => [e.step, e.bindingLosses![k]!] as const),
      })),
      { name: 'total', dashed: true, points: steps.map((e) => [e.step, e.loss] as const) },
    ];
  }
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

export async function writeExciteFiles(outDir: string, traceDir: string | undefined, plan: ExcitePlan, ae: AttendExcite, result: GenerateResult, scores: SubjectScores[]): Promise<{ files: string[]; document: unknown }> {
  const files: string[] = [];
  const put = (dir: string, name: string, data: string | Buffer): void => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), data);
    files.push(join(dir, name));
  };
  const text = JSON.stringify(exciteJson(plan, ae, result, scores), null, 1) + '\n';
  put(outDir, 'excite.json', text);
  const calls = result.timesteps.length;
  // Only thresholds at steps this run reached (diffusers' defaults name steps 10 and 20, beyond a short run).
  const rules = Object.entries(plan.options.thresholds).filter(([step]) => Number(step) < calls)
    .map(([step, t]) => ({ y: 1 - t, label: `step ${step}: loss target ${(1 - t).toFixed(2)}`, color: '#999' }));
  const syngen = plan.options.method === 'syngen';
  put(outDir, 'excite_loss.png', await renderLineChart({
    title: syngen ? 'SynGen: binding loss per step (lower = modifiers on their nouns, apart from the other words)' : 'Attend-and-Excite: subject loss (1 − max attention) per step',
    xLabel: 'step', yLabel: 'loss', integerX: true,
    series: lossChartSeries(plan, ae), rules, ...(syngen ? {} : { yDomain: [0, 1] as [number, number] }), xDomain: [0, Math.max(1, calls - 1)], width: 720, height: 420,
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
  return { files, document: JSON.parse(text) as unknown };
}

/** The guided panel's title: the method and what it acts on ("SynGen: red triangle, green circle"). */
export function guidanceLabel(plan: ExcitePlan): string {
  if (plan.options.method === 'syngen') return `SynGen: ${plan.bindings.map((b) => [...b.modifiers.map((m) => m.word), b.noun].join(' ')).join(', ')}`;
  return `Attend-and-Excite: ${plan.subjects.map((s) => s.word).join(', ')}`;
}

/** "plain | guided" PNG from two finished runs; `label` titles the guided panel (guidanceLabel). */
export async function writeComparePng(path: string, plain: GenerateResult, excited: GenerateResult, label: string): Promise<void> {
  // Small images (tiny models, previews) are enlarged so that the panel titles fit; large ones are kept as they are.
  const img = async (r: GenerateResult) => {
    const rgb = floatHwcToRgb(r.image.data, r.image.height, r.image.width, 3);
    const k = Math.max(1, Math.ceil(256 / Math.max(r.image.width, 1)));
    return k > 1 ? resizeRgb(rgb, rgb.width * k, rgb.height * k, 'nearest') : rgb;
  };
  const { png } = await renderSideBySide([
    { image: await img(plain), title: 'plain' },
    { image: await img(excited), title: label },
  ], { title: excited.promptText });
  writeFileSync(resolve(path), png);
}
