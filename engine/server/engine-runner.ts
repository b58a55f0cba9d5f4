// The production job runner: what a worker thread executes for `generate` and `explain`. It loads models through the
// worker's LRU cache (a second job on the same model reuses the open ORT sessions), turns pipeline callbacks into
// progress events (with latent previews), writes the same files as the CLI into the job folder, and maps the
// engine's error classes to protocol error codes so clients can point at the offending field.
import { statSync } from 'node:fs';
import { join } from 'node:path';
// The engines are imported when a job first needs them: a worker starts fast, and an explain-only deployment does
// not load the diffusion code (nor the other way round).
import type { StableDiffusionPipeline } from '../diffusion/pipeline.js';
import type { RunLabel } from '../jobs/generate.js';
import type { ExplainModels } from '../jobs/explain.js';
import type { ExplainOptions } from '../explain/api.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import { isDevice, type ConcreteDevice } from '../onnx/device.js';
import { errorKind, HeedError, type HeedErrorKind } from '../errors.js';
import { ProtocolError } from './errors.js';
import { folderBytes } from './paths.js';
import { imageThumbnail, latentPreview } from './preview.js';
import type { ErrorCode, ExplainResult, FileRef, GenerateResult, TokenMap } from '../protocol/index.js';
import type { JobContext, JobResult, JobRunner, WorkerJob } from './runner.js';

/** ORT threads per session in a worker; the server runs `--workers` of these side by side. */
const THREADS = Math.max(1, Number(process.env.HEED_THREADS ?? DEFAULT_THREADS) || DEFAULT_THREADS);
/** The execution provider `heed serve --device` resolved before starting the workers (they inherit HEED_DEVICE). */
const DEVICE: ConcreteDevice = ((): ConcreteDevice => {
  const d = process.env.HEED_DEVICE;
  return d !== undefined && isDevice(d) && d !== 'auto' ? d : 'cpu';
})();

function fileRef(path: string): FileRef {
  return { path, bytes: statSync(path).size };
}

/** Protocol error code of each kind of engine fault: the server's one classification table (the CLI's is
 *  EXIT_CODE_OF_KIND in engine/cli/errors.ts). */
export const PROTOCOL_CODE_OF_KIND: Readonly<Record<HeedErrorKind, ErrorCode>> = {
  invalid_input: 'invalid_input',
  model_invalid: 'model_invalid',
  cancelled: 'cancelled',
  internal: 'job_failed',
};

/** Engine error → protocol error (code + the field the engine set where it found the fault). */
export function classifyEngineError(e: unknown): unknown {
  if (!(e instanceof Error) || e instanceof ProtocolError) return e;
  const kind = errorKind(e);
  // The pool reports an aborted job as `cancelled` from its AbortError (a cancel can also land outside the engine).
  if (kind === 'cancelled') return Object.assign(new Error(e.message), { name: 'AbortError' });
  return new ProtocolError(PROTOCOL_CODE_OF_KIND[kind], e.message || e.name, e instanceof HeedError ? e.field : undefined);
}

async function runGenerate(job: Extract<WorkerJob, { kind: 'generate' }>, ctx: JobContext): Promise<GenerateResult> {
  const req = job.request;
  const t0 = performance.now();
  ctx.progress({ phase: 'loading', step: 0, total: 0 });
  const { StableDiffusionPipeline } = await import('../diffusion/pipeline.js');
  const pipeline = await ctx.cache.get<StableDiffusionPipeline>(`sd:${job.modelDir}`, async () => {
    const p = await StableDiffusionPipeline.load(job.modelDir, { threads: THREADS, session: { device: DEVICE } });
    return { value: p, bytes: await folderBytes(job.modelDir), dispose: () => p.dispose() };
  });
  const loadMs = performance.now() - t0;
  ctx.signal.throwIfAborted();
  ctx.progress({ phase: 'encoding', step: 0, total: 0 });
  const previewEvery = req.preview?.every ?? 0;
  // Events name their run only when there are two (A&E with compare).
  const label = (run: RunLabel): RunLabel => (req.excite?.compare ? run : undefined);
  let tDen = performance.now();
  let tWrite = performance.now();
  let lastLoss: { loss: number; scores?: Record<string, number> } | undefined;
  const { runGenerateJob } = await import('../jobs/generate.js');
  // The same job as the CLI's: a job folder holds exactly what `heed generate --out` writes.
  const { result, written, excite: ae } = await runGenerateJob(pipeline, {
    prompt: req.prompt,
    ...(req.negativePrompt !== undefined ? { negativePrompt: req.negativePrompt } : {}),
    ...(req.steps !== undefined ? { steps: req.steps } : {}),
    ...(req.guidance !== undefined ? { guidance: req.guidance } : {}),
    ...(req.guidanceRescale !== undefined ? { guidanceRescale: req.guidanceRescale } : {}),
    ...(req.sdxl !== undefined ? { sdxl: req.sdxl } : {}),
    ...(req.scheduler !== undefined ? { scheduler: req.scheduler } : {}),
    ...(req.seed !== undefined ? { seed: req.seed } : {}),
    ...(job.latentsPath ? { latents: job.latentsPath } : {}),
    ...(req.width !== undefined ? { width: req.width } : {}),
    ...(req.height !== undefined ? { height: req.height } : {}),
    ...(req.maps !== undefined ? { maps: req.maps } : {}),
    ...(req.excite ? { excite: req.excite } : {}),
    outDir: job.outDir,
    ...(req.trace ? { traceDir: join(job.outDir, 'trace') } : {}),
    model: job.modelDir,
    ...(ctx.maxJobMemoryMb !== undefined ? { maxJobMemoryMb: ctx.maxJobMemoryMb } : {}),
  }, {
    signal: ctx.signal,
    onRunStart: () => {
      tDen = performance.now();
    },
    onStep: async (run, s) => {
      const done = s.step + 1;
      const perStep = (performance.now() - tDen) / done;
      const preview = previewEvery > 0 && (done % previewEvery === 0 || done === s.total)
        ? await latentPreview(s.latents, s.latentShape, req.preview?.size ?? 64)
        : undefined;
      ctx.progress({
        phase: 'denoising', step: done, total: s.total, etaMs: perStep * (s.total - done),
        ...(preview ? { preview } : {}),
        ...(lastLoss ? { loss: lastLoss.loss, ...(lastLoss.scores ? { scores: lastLoss.scores } : {}) } : {}),
        ...(label(run) ? { run: label(run)! } : {}),
      });
      // Let this worker's event loop run once per step, so a cancel message is seen promptly.
      await new Promise((r) => setImmediate(r));
    },
    // What the guidance did at this step, streamed: its loss, each subject's score, refinement iterations.
    onGuidance: (c, events, plan) => {
      const named = (scores: number[]) => Object.fromEntries(plan.subjects.map((s, k) => [s.word, scores[k] ?? NaN]));
      const main = events.find((e) => e.kind === 'loss' && e.phase === 'main');
      const refines = events.filter((e) => e.kind === 'loss' && e.phase === 'refine');
      const last = refines.at(-1);
      const run = label('guided');
      if (last) ctx.progress({ phase: 'refining', step: c.step + 1, total: c.total, iteration: refines.length, loss: last.loss, ...(last.scores ? { scores: named(last.scores) } : {}), ...(run ? { run } : {}) });
      const latest = last ?? main;
      if (latest) lastLoss = { loss: latest.loss, ...(latest.scores ? { scores: named(latest.scores) } : {}) };
    },
    onWriting: () => {
      ctx.progress({ phase: 'writing', step: 0, total: 0 });
      tWrite = performance.now();
    },
  });
  const excite = ae?.document;
  const writeMs = performance.now() - tWrite;
  const maps: TokenMap[] = written.maps.map((m) => ({
    word: m.word,
    tokenIndices: m.tokenIndices,
    ...(m.maxAttention !== undefined ? { maxAttention: m.maxAttention } : {}),
    ...(m.png ? { png: fileRef(m.png) } : {}),
    ...(m.npy ? { npy: fileRef(m.npy) } : {}),
    ...(m.perStep ? { perStep: m.perStep.map((x) => ({ height: x.height, width: x.width, npy: fileRef(x.npy) })) } : {}),
    ...(m.perLayer ? { perLayer: m.perLayer.map((x) => ({ height: x.height, width: x.width, npy: fileRef(x.npy) })) } : {}),
  }));
  return {
    kind: 'generate',
    jobId: job.jobId,
    outDir: job.outDir,
    image: { file: fileRef(written.image), width: result.image.width, height: result.image.height, preview: await imageThumbnail(written.image) },
    maps,
    ...(written.mapsGrid ? { mapsGrid: fileRef(written.mapsGrid) } : {}),
    ...(written.stepMaps ? { stepMaps: written.stepMaps } : {}),
    ...(written.layerMaps ? { layerMaps: written.layerMaps } : {}),
    files: written.files.map(fileRef),
    report: written.report,
    ...(excite !== undefined ? { excite } : {}),
    timingsMs: {
      load: loadMs,
      encode: result.timings.encodeMs,
      denoise: result.timings.denoiseMs,
      decode: result.timings.decodeMs,
      write: writeMs,
      total: performance.now() - t0,
    },
  };
}

type LoadedExplain = ExplainModels;

async function runExplain(job: Extract<WorkerJob, { kind: 'explain' }>, ctx: JobContext): Promise<ExplainResult> {
  const req = job.request;
  const t0 = performance.now();
  ctx.progress({ phase: 'loading', step: 0, total: 0 });
  const { openExplainModels, runExplainJob } = await import('../jobs/explain.js');
  const { explainJson } = await import('../jobs/explain-outputs.js');
  const loaded = await ctx.cache.get<LoadedExplain>(`explain:${job.modelDir}`, async () => {
    const opened = await openExplainModels(job.modelDir, { device: DEVICE, intraOpThreads: THREADS });
    return { value: opened, bytes: await folderBytes(job.modelDir), dispose: () => opened.release() };
  });
  ctx.signal.throwIfAborted();
  ctx.progress({ phase: 'explaining', step: 0, total: 1 });
  const options: ExplainOptions = {
    ...(req.methods ? { methods: req.methods } : {}),
    ...(req.classIndex !== undefined ? { classIndex: req.classIndex } : {}),
    ...(req.top !== undefined ? { topK: req.top } : {}),
    ...(req.headFusion ? { headFusion: req.headFusion } : {}),
    ...(req.discard !== undefined ? { discard: req.discard } : {}),
    ...(req.texts ? { texts: req.texts } : {}),
    ...(req.rolloutNormalization ? { rolloutNormalization: req.rolloutNormalization } : {}),
    ...(req.gradRollout ? { gradRollout: req.gradRollout } : {}),
    ...(req.cheferStart !== undefined ? { cheferStart: req.cheferStart } : {}),
    ...(req.headsLayer !== undefined ? { headsLayer: req.headsLayer } : {}),
    ...(req.attnLrpAttention ? { attnLrpAttention: req.attnLrpAttention } : {}),
  };
  if (req.compare) return runCompare(job, ctx, loaded, options, t0);
  const { result, files } = await runExplainJob(loaded, {
    image: job.imagePath, options, outDir: job.outDir, ...(req.trace ? { traceDir: join(job.outDir, 'trace') } : {}),
  }, {
    signal: ctx.signal,
    onWriting: () => ctx.progress({ phase: 'writing', step: 1, total: 1 }),
  });
  return {
    kind: 'explain',
    jobId: job.jobId,
    outDir: job.outDir,
    files: files.map(fileRef),
    explain: explainJson(result),
    timingsMs: { ...result.timings, total: performance.now() - t0 },
  };
}

/** `compare: true`: the map methods side by side (jobs/explain.ts runCompareJob); progress counts the runs. */
async function runCompare(job: Extract<WorkerJob, { kind: 'explain' }>, ctx: JobContext, loaded: LoadedExplain, options: ExplainOptions, t0: number): Promise<ExplainResult> {
  const req = job.request;
  const { runCompareJob } = await import('../jobs/explain.js');
  const { compareJson } = await import('../jobs/compare-outputs.js');
  if (req.top !== undefined) throw new HeedError('invalid_input', 'compare explains one class: give classIndex (default: the top class), not top', { field: 'top' });
  const { methods, topK: _topK, ...rest } = options;
  const scale = req.compareScale ?? 'normalized';
  const { result, files } = await runCompareJob(loaded, {
    image: job.imagePath, options: { ...rest, ...(methods ? { methods } : {}) }, outDir: job.outDir, scale, ...(req.trace ? { traceDir: join(job.outDir, 'trace') } : {}),
  }, {
    signal: ctx.signal,
    onRun: (phase, _method, i, total) => ctx.progress({ phase: 'explaining', step: phase === 'warm-up' ? i : total + i, total: 2 * total }),
    onWriting: () => ctx.progress({ phase: 'writing', step: 1, total: 1 }),
  });
  return {
    kind: 'explain',
    jobId: job.jobId,
    outDir: job.outDir,
    files: files.map(fileRef),
    explain: compareJson(result, scale),
    compare: true,
    timingsMs: { ...Object.fromEntries(result.methods.map((m) => [m.method, m.wallMs])), total: performance.now() - t0 },
  };
}

export function createRunner(): JobRunner {
  return {
    async run(job: WorkerJob, ctx: JobContext): Promise<JobResult> {
      try {
        return job.kind === 'generate' ? await runGenerate(job, ctx) : await runExplain(job, ctx);
      } catch (e) {
        throw classifyEngineError(e);
      }
    },
  };
}
