// One generate job, plain or with Attend-and-Excite, as both faces run it: `heed generate` (engine/cli/generate.ts
// translates its flags into a GenerateJobSpec) and the server's worker (engine/server/engine-runner.ts passes the
// request's fields through). The sequence — resolve subjects, fix a seed for --compare, plan the maps, the
// optional unguided run into plain/, the guided run, subject scores, excite files, compare.png, report.json — lives
// only here, so a job folder holds exactly what `heed generate --out` writes. The callers differ only in how they
// show progress (bars vs protocol events), how they cancel and which errors they reword: those come in as hooks.
import { join, relative } from 'node:path';
import type { BeforeStepContext, GenerateOptions, GenerateResult, StableDiffusionPipeline, StepInfo } from '../diffusion/pipeline.js';
import { checkImageSize } from './size-check.js';
import { HeedError } from '../errors.js';
import type { AeEvent, AttendExcite } from '../guidance/attend-excite.js';
import type { ColormapName } from '../render/colormap.js';
import { guidanceLabel, planExcite, subjectScores, writeComparePng, writeExciteFiles, type ExciteOptions, type ExcitePlan, type SubjectScores } from './excite.js';
import { mapsRequest, planMaps } from './maps.js';
import type { MapsOptions } from '../protocol/index.js';
import type { WriteGenerateOptions, WrittenGenerate } from './outputs.js';

/** Which run a step belongs to: `plain` is --compare's unguided run, `guided` the Attend-and-Excite one; a job
 *  without A&E has one unlabelled run. */
export type RunLabel = 'plain' | 'guided' | undefined;

export interface GenerateJobSpec {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  /** SDXL only: diffusers' guidance_rescale. */
  guidanceRescale?: number;
  /** SDXL only: original_size / crops_coords_top_left / target_size, (height, width) and (top, left). */
  sdxl?: GenerateOptions['sdxl'];
  scheduler?: string;
  seed?: number;
  /** Initial latents .npy (also reported as report.json's `latentsFile`). */
  latents?: string;
  /** Image size; default the model's. */
  width?: number;
  height?: number;
  /** What maps to write, as the protocol's `maps` option (omitted: none); a trace's own need for attention comes
   *  from `traceDir`. */
  maps?: MapsOptions;
  /** Attend-and-Excite: the protocol's excite options as they are (`compare`: also the unguided run). */
  excite?: ExciteOptions;
  outDir: string;
  traceDir?: string;
  /** report.json's `model`. */
  model: string;
  colormap?: ColormapName;
  opacity?: number;
  /** Refuse sizes whose estimated working set exceeds this many MiB (see size-check.ts); omitted: no limit. */
  maxJobMemoryMb?: number;
}

export interface GenerateJobHooks {
  signal?: AbortSignal;
  /** Subjects resolved, before any run (only with A&E). */
  onPlan?(plan: ExcitePlan): void;
  /** A run starts / finished (not called when it fails). */
  onRunStart?(run: RunLabel): void;
  onRunEnd?(run: RunLabel): void;
  onStep?(run: RunLabel, info: StepInfo): void | Promise<void>;
  /** After A&E's hook at a step (before that step's UNet call): the loss evaluations and updates it logged there. */
  onGuidance?(ctx: BeforeStepContext, events: readonly AeEvent[], plan: ExcitePlan): void | Promise<void>;
  /** The last run finished; the job's outputs are written next. */
  onWriting?(): void;
  /** Rewords a failure of a run (the CLI explains image sizes the UNet cannot take). */
  mapError?(e: unknown, size: { width: number; height: number }): unknown;
}

/** A subject's scores without and with guidance (report.json's `excite.compare`). */
export interface SubjectComparison {
  word: string;
  tokenIndex: number;
  plain: ScoreSummary;
  excited: ScoreSummary;
}

interface ScoreSummary {
  lastStepScore: number | null;
  maxScore: number | null;
  daamMax: number | null;
}

export interface GenerateJobOutput {
  /** The job's run (the guided one with A&E) and what was written for it into outDir. */
  result: GenerateResult;
  written: WrittenGenerate;
  /** With compare: the unguided run from the same seed, written into outDir/plain. */
  plain?: { result: GenerateResult; written: WrittenGenerate; scores: SubjectScores[] };
  excite?: {
    plan: ExcitePlan;
    scores: SubjectScores[];
    /** excite.json, excite_loss.png and the A&E trace files. */
    files: string[];
    json: string;
    /** What excite.json holds, as JSON values (what a client reading the file would get). */
    document: unknown;
    comparison?: SubjectComparison[];
  };
}

export async function runGenerateJob(pipe: StableDiffusionPipeline, spec: GenerateJobSpec, hooks: GenerateJobHooks = {}): Promise<GenerateJobOutput> {
  // Loaded on demand, as the callers do: a server worker or `heed tokenize` should not pay for them up front.
  const { writeGenerateOutputs } = await import('./outputs.js');
  const width = spec.width ?? pipe.folder.defaultImageSize;
  const height = spec.height ?? pipe.folder.defaultImageSize;
  // Before any session runs: a bad size would otherwise fail inside onnxruntime, or exhaust memory.
  checkImageSize(pipe, width, height, (spec.guidance ?? 7.5) > 1, spec.maxJobMemoryMb);
  if (typeof spec.maps === 'object' && spec.maps.daamGrid !== undefined && width !== height) {
    // DAAM's own code reshapes each map as a square; its grid has no meaning for other images.
    throw new HeedError('invalid_input', `maps.daamGrid reproduces DAAM's own code, which only handles square images; ` +
      `the image is ${width}x${height}: use a square size or leave daamGrid unset (the default maps work at any size)`, { field: 'maps.daamGrid' });
  }
  const plan = spec.excite !== undefined ? await planExcite(pipe, spec.prompt, { width, height }, spec.excite) : null;
  const compare = plan !== null && spec.excite?.compare === true;
  // --compare runs twice from the same initial latents: fix the seed here when none was given.
  const seed = spec.seed ?? (compare && spec.latents === undefined ? Math.floor(Math.random() * 2 ** 32) : undefined);
  // A&E runs also keep the per-step maps at the A&E resolution: report.json compares subject scores from them.
  // A trace needs the attention too (attn<r>_step0.npy, DAAM heat maps) even without maps.
  const mapsPlan = planMaps({ ...mapsRequest(spec.maps), trace: spec.traceDir !== undefined }, plan ? plan.options.resolution : null);
  const traceOpt = spec.traceDir !== undefined ? { traceDir: spec.traceDir } : {};
  const outputOptions = (extra: Record<string, unknown>): WriteGenerateOptions => ({
    ...mapsPlan.write,
    ...(spec.colormap !== undefined ? { colormap: spec.colormap } : {}),
    ...(spec.opacity !== undefined ? { opacity: spec.opacity } : {}),
    tokenText: (t: string) => pipe.tokenizer.tokenText(t),
    extraReport: { model: spec.model, ...(spec.latents !== undefined ? { latentsFile: spec.latents } : {}), ...extra },
  });
  const generate = async (run: RunLabel, extra: Partial<GenerateOptions> = {}): Promise<GenerateResult> => {
    hooks.onRunStart?.(run);
    const result = await pipe.generate({
      prompt: spec.prompt,
      ...(spec.negativePrompt !== undefined ? { negativePrompt: spec.negativePrompt } : {}),
      ...(spec.steps !== undefined ? { steps: spec.steps } : {}),
      ...(spec.guidance !== undefined ? { guidance: spec.guidance } : {}),
      ...(spec.guidanceRescale !== undefined ? { guidanceRescale: spec.guidanceRescale } : {}),
      ...(spec.sdxl !== undefined ? { sdxl: spec.sdxl } : {}),
      ...(spec.scheduler !== undefined ? { scheduler: spec.scheduler } : {}),
      ...(seed !== undefined ? { seed } : {}),
      ...(spec.latents !== undefined ? { latents: spec.latents } : {}),
      width, height,
      maps: mapsPlan.pipeline,
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      ...(hooks.onStep ? { onStep: (s: StepInfo) => hooks.onStep!(run, s) } : {}),
      ...extra,
    }).catch((e: unknown) => {
      throw hooks.mapError ? hooks.mapError(e, { width, height }) : e;
    });
    // The plan's own findings (e.g. which attention grid A&E reads) belong in the run's report with the pipeline's.
    if (plan) for (const w of plan.warnings) if (!result.warnings.includes(w)) result.warnings.push(w);
    hooks.onRunEnd?.(run);
    return result;
  };

  if (!plan) {
    const result = await generate(undefined);
    hooks.onWriting?.();
    const written = await writeGenerateOutputs(result, spec.outDir, { ...outputOptions({}), ...traceOpt });
    return { result, written };
  }

  hooks.onPlan?.(plan);
  let plain: GenerateJobOutput['plain'];
  if (compare) {
    const result = await generate('plain');
    const scores = await subjectScores(result, plan);
    const written = await writeGenerateOutputs(result, join(spec.outDir, 'plain'), outputOptions({ excite: { guided: false, subjects: scores } }));
    plain = { result, written, scores };
  }
  const { AttendExcite } = await import('../guidance/attend-excite.js');
  const ae: AttendExcite = await AttendExcite.create(pipe, [1, pipe.unet.io.channels, height / 8, width / 8], plan.options);
  try {
    let seen = 0;
    const result = await generate('guided', {
      beforeStep: async (c) => {
        const out = await ae.hook(c);
        const fresh = ae.events.slice(seen);
        seen = ae.events.length;
        await hooks.onGuidance?.(c, fresh, plan);
        return out;
      },
    });
    hooks.onWriting?.();
    const scores = await subjectScores(result, plan);
    const { files, document } = await writeExciteFiles(spec.outDir, spec.traceDir, plan, ae, result, scores);
    const comparison = plain ? compareScores(plain.scores, scores) : undefined;
    const comparePng = join(spec.outDir, 'compare.png');
    if (plain) await writeComparePng(comparePng, plain.result, result, guidanceLabel(plan));
    const written = await writeGenerateOutputs(result, spec.outDir, {
      ...outputOptions({
        excite: {
          subjects: plan.subjects.map((s) => ({ word: s.word, tokenIndex: s.tokenIndex, tokenIndices: s.tokenIndices, ...(s.note ? { note: s.note } : {}) })),
          scores,
          ...(comparison ? { compare: comparison, comparePng: 'compare.png', plainDir: 'plain' } : {}),
          files: files.map((f) => relative(spec.outDir, f)),
        },
      }),
      ...traceOpt,
    });
    written.files.push(...files, ...(plain ? [comparePng] : []));
    return {
      result, written,
      ...(plain ? { plain } : {}),
      excite: { plan, scores, files, json: join(spec.outDir, 'excite.json'), document, ...(comparison ? { comparison } : {}) },
    };
  } finally {
    await ae.dispose();
  }
}

function compareScores(plain: readonly SubjectScores[], excited: readonly SubjectScores[]): SubjectComparison[] {
  const summary = (s: SubjectScores): ScoreSummary => ({ lastStepScore: s.byStep.at(-1) ?? null, maxScore: maxOf(s.byStep), daamMax: s.daamMax ?? null });
  return excited.map((s, k) => ({ word: s.word, tokenIndex: s.tokenIndex, plain: summary(plain[k]!), excited: summary(s) }));
}

function maxOf(v: readonly number[]): number | null {
  return v.length ? Math.max(...v) : null;
}
