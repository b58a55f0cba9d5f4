// The production job runner: what a worker thread executes for `generate` and `explain`. It loads models through the
// worker's LRU cache (a second job on the same model reuses the open ORT sessions), turns pipeline callbacks into
// progress events (with latent previews), writes the same files as the CLI into the job folder, and maps the
// engine's error classes to protocol error codes so clients can point at the offending field.
import { statSync } from 'node:fs';
import { join, relative } from 'node:path';
// The engines are imported when a job first needs them: a worker starts fast, and an explain-only deployment does
// not load the diffusion code (nor the other way round).
import type { GenerateOptions, MapsOptions as PipelineMaps, StepInfo, StableDiffusionPipeline } from '../diffusion/pipeline.js';
import type { ExplainModel, GradientEngine } from '../explain/index.js';
import type { ExplainOptions } from '../explain/api.js';
import { ProtocolError } from './errors.js';
import { folderBytes } from './paths.js';
import { imageThumbnail, latentPreview } from './preview.js';
import type { ExplainResult, FileRef, GenerateRequest, GenerateResult, TokenMap } from './protocol.js';
import type { JobContext, JobResult, JobRunner, WorkerJob } from './runner.js';

/** ORT threads per session in a worker; the server runs `--workers` of these side by side. */
const THREADS = Math.max(1, Number(process.env.HEED_THREADS ?? 2) || 2);

function fileRef(path: string): FileRef {
  return { path, bytes: statSync(path).size };
}

/** Engine error → protocol error (code + field), by the engine's error classes. */
export function classifyEngineError(e: unknown, job: WorkerJob): unknown {
  const kind = job.kind;
  if (!(e instanceof Error) || e instanceof ProtocolError) return e;
  const msg = e.message;
  switch (e.name) {
    case 'CancelledError':
      return Object.assign(new Error(msg), { name: 'AbortError' });
    case 'SchedulerConfigError':
      // An unknown name, or a scheduler the client chose that the folder's config cannot drive, is the request's
      // fault; a broken scheduler_config.json alone is the model's.
      if (/^unknown scheduler/.test(msg) || (job.kind === 'generate' && job.request.scheduler !== undefined)) return new ProtocolError('invalid_input', msg, 'scheduler');
      return new ProtocolError('model_invalid', msg, 'model');
    case 'ModelFolderError':
    case 'TokenizerLoadError':
    case 'OnnxLoadError':
      return new ProtocolError('model_invalid', msg, 'model');
    case 'SchedulerChoiceError':
      return new ProtocolError('invalid_input', msg, 'scheduler');
    case 'LatentsError':
      return new ProtocolError('invalid_input', msg, 'latents');
    case 'ImageSizeError':
      return new ProtocolError('invalid_input', msg, /height/i.test(msg) && !/width/i.test(msg) ? 'height' : 'width');
    case 'GenerationOptionsError': {
      const field = ['prompt', 'steps', 'guidance', 'seed', 'width', 'height'].find((f) => msg.startsWith(f) || msg.includes(`the ${f}`));
      return new ProtocolError('invalid_input', msg, field);
    }
    case 'ExplainError':
    case 'MethodNotApplicableError':
    case 'ImageError':
      return new ProtocolError('invalid_input', msg, kind === 'explain' && /image/i.test(msg) ? 'image' : undefined);
    default:
      return e;
  }
}

function pipelineMaps(req: GenerateRequest): PipelineMaps | false {
  const m = req.maps;
  if (!m) return false;
  if (m === true) return {};
  return {
    ...(m.perStep === false ? { perStepResolutions: [] } : m.perStep && m.resolutions ? { perStepResolutions: m.resolutions } : {}),
    ...(m.perLayer ? { perLayerResolutions: m.resolutions ?? [] } : {}),
  };
}

async function runGenerate(job: Extract<WorkerJob, { kind: 'generate' }>, ctx: JobContext): Promise<GenerateResult> {
  const req = job.request;
  if (req.excite) {
    throw new ProtocolError('invalid_input', 'Attend-and-Excite is not available in this engine build yet (engine/guidance); run without excite', 'excite');
  }
  const t0 = performance.now();
  ctx.progress({ phase: 'loading', step: 0, total: 0 });
  const { StableDiffusionPipeline } = await import('../diffusion/pipeline.js');
  const { writeGenerateOutputs } = await import('../cli/outputs.js');
  const pipeline = await ctx.cache.get<StableDiffusionPipeline>(`sd:${job.modelDir}`, async () => {
    const p = await StableDiffusionPipeline.load(job.modelDir, { threads: THREADS });
    return { value: p, bytes: await folderBytes(job.modelDir), dispose: () => p.dispose() };
  });
  const loadMs = performance.now() - t0;
  ctx.signal.throwIfAborted();
  ctx.progress({ phase: 'encoding', step: 0, total: 0 });
  const previewEvery = req.preview?.every ?? 0;
  const tDen = performance.now();
  const options: GenerateOptions = {
    prompt: req.prompt,
    ...(req.negativePrompt !== undefined ? { negativePrompt: req.negativePrompt } : {}),
    ...(req.steps !== undefined ? { steps: req.steps } : {}),
    ...(req.guidance !== undefined ? { guidance: req.guidance } : {}),
    ...(req.scheduler !== undefined ? { scheduler: req.scheduler } : {}),
    ...(req.seed !== undefined ? { seed: req.seed } : {}),
    ...(job.latentsPath ? { latents: job.latentsPath } : {}),
    ...(req.width !== undefined ? { width: req.width } : {}),
    ...(req.height !== undefined ? { height: req.height } : {}),
    maps: pipelineMaps(req),
    signal: ctx.signal,
    onStep: async (s: StepInfo) => {
      const done = s.step + 1;
      const perStep = (performance.now() - tDen) / done;
      const preview = previewEvery > 0 && (done % previewEvery === 0 || done === s.total)
        ? await latentPreview(s.latents, s.latentShape, req.preview?.size ?? 64)
        : undefined;
      ctx.progress({ phase: 'denoising', step: done, total: s.total, etaMs: perStep * (s.total - done), ...(preview ? { preview } : {}) });
      // Let this thread's event loop run once per step, so a cancel message is seen promptly.
      await new Promise((r) => setImmediate(r));
    },
  };
  const result = await pipeline.generate(options);
  ctx.progress({ phase: 'writing', step: 0, total: 0 });
  const tWrite = performance.now();
  // The CLI's writer: a job folder holds exactly what `heed generate --out` writes.
  const written = await writeGenerateOutputs(result, job.outDir, {
    maps: !!req.maps,
    ...(req.trace ? { traceDir: join(job.outDir, 'trace') } : {}),
    tokenText: (t) => pipeline.tokenizer.tokenText(t),
    extraReport: { model: job.modelDir, ...(job.latentsPath ? { latentsFile: job.latentsPath } : {}) },
  });
  const writeMs = performance.now() - tWrite;
  const maps: TokenMap[] = written.maps.map((m) => ({
    word: m.word,
    tokenIndices: m.tokenIndices,
    ...(m.maxAttention !== undefined ? { maxAttention: m.maxAttention } : {}),
    ...(m.png ? { png: fileRef(m.png) } : {}),
    ...(m.npy ? { npy: fileRef(m.npy) } : {}),
  }));
  return {
    kind: 'generate',
    jobId: job.jobId,
    outDir: job.outDir,
    image: { file: fileRef(written.image), width: result.image.width, height: result.image.height, preview: await imageThumbnail(written.image) },
    maps,
    ...(written.mapsGrid ? { mapsGrid: fileRef(written.mapsGrid) } : {}),
    files: written.files.map(fileRef),
    report: written.report,
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

interface LoadedExplain {
  model: ExplainModel;
  gradients: GradientEngine;
}

async function runExplain(job: Extract<WorkerJob, { kind: 'explain' }>, ctx: JobContext): Promise<ExplainResult> {
  const req = job.request;
  const t0 = performance.now();
  ctx.progress({ phase: 'loading', step: 0, total: 0 });
  const { ExplainModel, GradientEngine, explainWithModel, explainJson, writeExplainOutputs } = await import('../explain/index.js');
  const loaded = await ctx.cache.get<LoadedExplain>(`explain:${job.modelDir}`, async () => {
    const model = await ExplainModel.load(job.modelDir);
    const gradients = new GradientEngine(model);
    return {
      value: { model, gradients },
      bytes: await folderBytes(job.modelDir),
      dispose: async () => {
        await gradients.release();
        await model.release();
      },
    };
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
  };
  const prepared = await loaded.model.prepareImage(job.imagePath);
  const result = await explainWithModel(loaded.model, loaded.gradients, prepared, options);
  ctx.signal.throwIfAborted();
  ctx.progress({ phase: 'writing', step: 1, total: 1 });
  const written = await writeExplainOutputs(result, job.outDir, req.trace ? join(job.outDir, 'trace') : undefined);
  const files = [...written.files.map((f) => join(written.outDir, f)), ...written.traceFiles.map((f) => (f.startsWith('/') ? f : join(job.outDir, 'trace', f)))];
  return {
    kind: 'explain',
    jobId: job.jobId,
    outDir: job.outDir,
    files: files.map(fileRef),
    explain: explainJson(result),
    timingsMs: { ...result.timings, total: performance.now() - t0 },
  };
}

export function createRunner(): JobRunner {
  return {
    async run(job: WorkerJob, ctx: JobContext): Promise<JobResult> {
      try {
        return job.kind === 'generate' ? await runGenerate(job, ctx) : await runExplain(job, ctx);
      } catch (e) {
        throw classifyEngineError(e, job);
      }
    },
  };
}

/** Paths in results are absolute; this gives them relative to the job folder (for logs). */
export function jobRelative(job: WorkerJob, path: string): string {
  return relative(job.outDir, path);
}
