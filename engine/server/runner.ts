// The contract between the worker thread and whatever executes a job. The production runner
// (engine-runner.ts) calls the diffusion pipeline / explain code; tests inject a small runner module to drive the
// queue, cancel and crash paths without loading models. A runner module exports `createRunner(): JobRunner`.
import type { ExplainRequest, ExplainResult, GenerateRequest, GenerateResult, ProgressEvent } from '../protocol/index.js';
import type { ModelCache } from './cache.js';

/** What the main thread hands a worker: the validated request plus the paths the server resolved and allowed. */
export type WorkerJob =
  | { kind: 'generate'; jobId: string; request: GenerateRequest; modelDir: string; latentsPath?: string; outDir: string }
  | { kind: 'explain'; jobId: string; request: ExplainRequest; modelDir: string; imagePath: string; outDir: string };

export type JobResult = GenerateResult | ExplainResult;

export type ProgressUpdate = Omit<ProgressEvent, 'type' | 'id' | 'jobId'>;

export interface JobContext {
  /** Aborted when the client cancels; runners check it between steps (`signal.throwIfAborted()`). */
  readonly signal: AbortSignal;
  /** Reports progress; also the moment a pending cancel is noticed, so call it once per step. */
  progress(update: ProgressUpdate): void;
  /** The worker's model cache (LRU by memory); runners keep loaded sessions there. */
  readonly cache: ModelCache;
  /** Generate jobs whose estimated working set exceeds this many MiB are refused (`heed serve --max-job-memory-mb`). */
  readonly maxJobMemoryMb?: number;
  log(message: string): void;
}

export interface JobRunner {
  run(job: WorkerJob, ctx: JobContext): Promise<JobResult>;
}

export type RunnerFactory = () => JobRunner | Promise<JobRunner>;
