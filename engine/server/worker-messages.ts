// Messages between the pool (main thread) and a worker thread. Both sides are our own code in one process, so these
// are plain TypeScript types (structured clone), not zod schemas: validation happens once, at the socket.
import type { ErrorInfo } from './errors.js';
import type { JobResult, ProgressUpdate, WorkerJob } from './runner.js';

export interface WorkerInit {
  /** URL or path of the runner module (exports createRunner). */
  runnerModule: string;
  cacheBytes: number;
  maxJobMemoryMb?: number;
  /** Threads only: one Int32 slot, the seq of a job the main thread wants cancelled. */
  cancelBuffer?: SharedArrayBuffer;
}

export type ToWorker = { type: 'run'; seq: number; job: WorkerJob } | { type: 'cancel'; seq: number };

export interface CacheReport {
  keys: string[];
  bytes: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'log'; message: string }
  /** The worker is about to die: why (startup failure, uncaught exception). */
  | { type: 'fatal'; message: string }
  | { type: 'progress'; seq: number; update: ProgressUpdate }
  | { type: 'done'; seq: number; result: JobResult; cache: CacheReport }
  | { type: 'failed'; seq: number; error: ErrorInfo; cache: CacheReport };
