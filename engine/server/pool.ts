// Worker pool and job queue. Jobs queue FIFO per model (bounded: a full queue is refused, not buffered without end);
// a free worker takes the oldest waiting job, preferring one whose model it already has loaded. A worker that dies
// (uncaught error, process.exit, killed, out of memory) fails only its own job with `worker_crashed` and is
// replaced; the queue goes on. Workers are child processes by default (see worker-handle.ts for why).
import { ProtocolError, type ErrorInfo } from './errors.js';
import type { JobResult, ProgressUpdate, WorkerJob } from './runner.js';
import type { CacheReport, FromWorker } from './worker-messages.js';
import { spawnWorker, type Isolation, type WorkerHandle } from './worker-handle.js';
import type { WorkerStatus } from '../protocol/index.js';

export interface PoolOptions {
  workers: number;
  runnerModule: string;
  cacheBytes: number;
  maxJobMemoryMb?: number;
  /** Max queued (not yet running) jobs per model. */
  queueLimit: number;
  /** Child processes (default) or worker threads. */
  isolation?: Isolation;
  /** The Node binary for worker processes (default: the server's own). */
  execPath?: string;
  /**
   * After a cancel, how long a running job has to reach a step boundary before its worker process is terminated
   * (a step stuck in native code, or a read that never returns). Default 30 s. Threads cannot be terminated safely
   * (see worker-handle.ts), so with thread isolation the cancel only waits.
   */
  cancelGraceMs?: number;
  /** Longest a job may run before its worker is terminated and the job fails (0 = no limit). Default 0. */
  jobTimeoutMs?: number;
  log?: (message: string) => void;
}

export interface JobHandlers {
  onStart?(): void;
  onProgress(update: ProgressUpdate): void;
  onDone(result: JobResult): void;
  onError(error: ErrorInfo): void;
}

interface PoolJob {
  seq: number;
  job: WorkerJob;
  modelKey: string;
  handlers: JobHandlers;
  state: 'queued' | 'running' | 'finished';
  worker?: Slot;
  /** The cancel grace and the watchdog. */
  timers: NodeJS.Timeout[];
  /** Set when the pool terminated the job's worker on purpose: what the job's end is then reported as. */
  forcedEnd?: ErrorInfo;
}

interface Slot {
  index: number;
  worker: WorkerHandle;
  ready: boolean;
  job?: PoolJob;
  restarts: number;
  cache: CacheReport;
  lastError?: string;
  /** Consecutive exits before becoming ready. */
  failedStarts: number;
}

/** Consecutive failed starts of every worker after which jobs are refused instead of queued (retries go on). */
const FAILED_STARTS_BEFORE_REFUSING = 3;

export const DEFAULT_CANCEL_GRACE_MS = 30_000;

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queues = new Map<string, PoolJob[]>();
  private readonly jobs = new Map<string, PoolJob>();
  private seq = 0;
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    if (!Number.isInteger(options.workers) || options.workers < 1) throw new Error(`--workers must be a positive integer, got ${options.workers}`);
    for (let i = 0; i < options.workers; i++) this.slots.push(this.spawn(i, 0));
  }

  private log(msg: string): void {
    this.options.log?.(msg);
  }

  private spawn(index: number, restarts: number): Slot {
    const slot = { index, ready: false, restarts, cache: { keys: [], bytes: 0 }, failedStarts: 0 } as Omit<Slot, 'worker'> as Slot;
    slot.worker = spawnWorker(this.options.isolation ?? 'process', { runnerModule: this.options.runnerModule, cacheBytes: this.options.cacheBytes, ...(this.options.maxJobMemoryMb !== undefined ? { maxJobMemoryMb: this.options.maxJobMemoryMb } : {}) }, {
      message: (msg) => this.onMessage(slot, msg),
      error: (text) => {
        slot.lastError = text;
        this.log(`worker ${index}: uncaught error: ${text}`);
      },
      output: (text) => this.log(`worker ${index}: ${text}`),
      exit: (description) => this.onExit(slot, description),
    }, { ...(this.options.execPath ? { execPath: this.options.execPath } : {}) });
    return slot;
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    switch (msg.type) {
      case 'ready':
        slot.ready = true;
        // A start that worked ends the run of failed ones: the count only measures consecutive failures.
        slot.failedStarts = 0;
        this.dispatch();
        return;
      case 'log':
        this.log(`worker ${slot.index}: ${msg.message}`);
        return;
      case 'fatal':
        slot.lastError = msg.message;
        this.log(`worker ${slot.index}: ${msg.message}`);
        return;
      case 'progress':
        if (slot.job?.seq === msg.seq && slot.job.state === 'running') slot.job.handlers.onProgress(msg.update);
        return;
      case 'done':
      case 'failed': {
        slot.cache = msg.cache;
        const job = slot.job;
        if (!job || job.seq !== msg.seq) return;
        slot.job = undefined;
        this.finish(job);
        if (msg.type === 'done') job.handlers.onDone(msg.result);
        else job.handlers.onError(msg.error);
        this.dispatch();
        return;
      }
    }
  }

  private onExit(slot: Slot, description: string): void {
    if (this.slots[slot.index] !== slot) return; // an old slot already replaced
    const job = slot.job;
    const wasReady = slot.ready;
    slot.job = undefined;
    slot.ready = false;
    if (this.closed) return;
    const why = slot.lastError ? `: ${slot.lastError.split('\n')[0]}` : '';
    this.log(`worker ${slot.index} stopped (${description})${why}; restarting it`);
    // A worker that dies before becoming ready would loop: back off, growing with consecutive failed starts, and
    // once no worker can start at all, fail the waiting jobs with the reason instead of letting them wait forever.
    const failedStarts = wasReady || job ? 0 : slot.failedStarts + 1;
    if (failedStarts >= FAILED_STARTS_BEFORE_REFUSING && !this.slots.some((s) => s.ready)) {
      for (const q of this.queues.values()) {
        for (const waiting of q) {
          this.finish(waiting);
          waiting.handlers.onError({ code: 'internal', message: `no worker can start (${failedStarts} attempts)${why}; check the engine installation (heed serve logs the details)` });
        }
      }
      this.queues.clear();
    }
    const delay = failedStarts === 0 ? 0 : Math.min(5000, 100 * 2 ** Math.min(failedStarts, 6));
    const respawn = (): void => {
      if (this.closed) return;
      const next = this.spawn(slot.index, slot.restarts + 1);
      next.failedStarts = failedStarts;
      next.lastError = slot.lastError;
      this.slots[slot.index] = next;
    };
    // Without back-off the replacement starts now, before the job's end is reported: its message says the worker
    // "has been restarted", and a status request right after it must show the restart.
    if (delay === 0) respawn();
    else setTimeout(respawn, delay).unref();
    if (job?.forcedEnd) {
      this.finish(job);
      job.handlers.onError(job.forcedEnd);
    } else if (job) {
      this.finish(job);
      job.handlers.onError({
        code: 'worker_crashed',
        message: `the worker running job ${job.job.jobId} stopped (${description}${why}); it has been restarted and the other jobs go on — retry the request`,
      });
    }
  }

  private finish(job: PoolJob): void {
    for (const t of job.timers) clearTimeout(t);
    job.timers = [];
    job.state = 'finished';
    job.worker = undefined;
    this.jobs.delete(job.job.jobId);
  }

  /** Queues a job; throws ProtocolError('queue_full') at the bound. Returns the number of jobs ahead of it. */
  submit(job: WorkerJob, handlers: JobHandlers): { position: number; started: boolean } {
    if (this.closed) throw new ProtocolError('shutting_down', 'the server is shutting down');
    // Refused only while no worker is up and every one has failed to start several times in a row; the pool keeps
    // retrying with back-off, so this clears by itself once a worker starts.
    if (!this.slots.some((s) => s.ready) && this.slots.every((s) => s.failedStarts >= FAILED_STARTS_BEFORE_REFUSING)) {
      const why = this.slots.find((s) => s.lastError)?.lastError?.split('\n')[0] ?? 'unknown reason';
      throw new ProtocolError('internal', `no worker can start (${why}); the server keeps retrying — check the engine installation (heed serve logs the details)`);
    }
    const modelKey = job.modelDir;
    const queue = this.queues.get(modelKey) ?? [];
    if (queue.length >= this.options.queueLimit) {
      throw new ProtocolError('queue_full', `${queue.length} jobs already wait for ${modelKey} (the limit is ${this.options.queueLimit}); wait for one to finish or cancel one`);
    }
    const entry: PoolJob = { seq: ++this.seq, job, modelKey, handlers, state: 'queued', timers: [] };
    queue.push(entry);
    this.queues.set(modelKey, queue);
    this.jobs.set(job.jobId, entry);
    this.dispatch();
    // Jobs of the same model still waiting ahead of this one (0 when it runs, or runs next).
    const position = entry.state === 'running' ? 0 : queue.indexOf(entry);
    return { position, started: entry.state === 'running' };
  }

  /** Cancels a queued or running job. The job's handlers get `cancelled` (now if queued, at the next step if running). */
  cancel(jobId: string): 'queued' | 'running' | undefined {
    const job = this.jobs.get(jobId);
    if (!job) return undefined;
    if (job.state === 'queued') {
      const q = this.queues.get(job.modelKey) ?? [];
      q.splice(q.indexOf(job), 1);
      if (q.length === 0) this.queues.delete(job.modelKey);
      this.finish(job);
      job.handlers.onError({ code: 'cancelled', message: 'the job was cancelled before it started' });
      return 'queued';
    }
    if (job.state === 'running' && job.worker) {
      if (job.worker.worker.cancelSlot) Atomics.store(job.worker.worker.cancelSlot, 0, job.seq);
      job.worker.worker.post({ type: 'cancel', seq: job.seq });
      const grace = this.options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS;
      this.arm(job, grace, {
        code: 'cancelled',
        message: `the job was cancelled; it did not reach a step boundary within ${grace / 1000} s, so its worker was terminated (and has been restarted)`,
      });
      return 'running';
    }
    return undefined;
  }

  /**
   * After `ms`, if the job still runs, terminates its worker process and ends the job with `end`. Worker threads are
   * not terminated (that can abort the whole server while ORT runs); they get a cancel instead.
   */
  private arm(job: PoolJob, ms: number, end: ErrorInfo): void {
    const timer = setTimeout(() => {
      const slot = job.worker;
      if (job.state !== 'running' || !slot || job.forcedEnd) return;
      if ((this.options.isolation ?? 'process') !== 'process') {
        this.log(`job ${job.job.jobId}: ${end.message.split(';')[0]}; worker threads cannot be terminated safely, so it runs on until its next step boundary`);
        if (slot.worker.cancelSlot) Atomics.store(slot.worker.cancelSlot, 0, job.seq);
        slot.worker.post({ type: 'cancel', seq: job.seq });
        return;
      }
      job.forcedEnd = end;
      this.log(`job ${job.job.jobId}: ${end.message}`);
      void slot.worker.kill();
    }, ms);
    timer.unref();
    job.timers.push(timer);
  }

  /** Terminates the worker running a job, as a crash would (tests; also a last resort for a stuck job). */
  async terminateJobWorker(jobId: string): Promise<boolean> {
    const job = this.jobs.get(jobId);
    if (!job?.worker) return false;
    await job.worker.worker.kill();
    return true;
  }

  private dispatch(): void {
    if (this.closed) return;
    for (;;) {
      const idle = this.slots.filter((s) => s.ready && !s.job);
      if (idle.length === 0) return;
      // Oldest queue head first (FIFO across models too, so no model starves).
      let next: PoolJob | undefined;
      for (const q of this.queues.values()) if (q[0] && (!next || q[0].seq < next.seq)) next = q[0];
      if (!next) return;
      const slot = idle.find((s) => s.cache.keys.some((k) => k.includes(next!.modelKey))) ?? idle[0];
      const q = this.queues.get(next.modelKey)!;
      q.shift();
      if (q.length === 0) this.queues.delete(next.modelKey);
      next.state = 'running';
      next.worker = slot;
      slot.job = next;
      slot.worker.post({ type: 'run', seq: next.seq, job: next.job });
      const limit = this.options.jobTimeoutMs ?? 0;
      if (limit > 0) {
        this.arm(next, limit, {
          code: 'job_failed',
          message: `the job ran longer than the server's limit of ${Math.round(limit / 60_000)} min (--job-timeout); its worker was terminated (and has been restarted)`,
        });
      }
      next.handlers.onStart?.();
    }
  }

  jobState(jobId: string): 'queued' | 'running' | undefined {
    const s = this.jobs.get(jobId)?.state;
    return s === 'queued' || s === 'running' ? s : undefined;
  }

  queueLengths(): Record<string, number> {
    return Object.fromEntries([...this.queues].map(([k, q]) => [k, q.length]));
  }

  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      index: s.index,
      busy: !!s.job,
      ...(s.job ? { jobId: s.job.job.jobId, model: s.job.modelKey } : {}),
      restarts: s.restarts,
      cachedModels: s.cache.keys,
      cacheBytes: s.cache.bytes,
    }));
  }

  /** Resolves when every worker has started (tests, benchmarks). */
  async whenReady(timeoutMs = 60_000): Promise<void> {
    const t0 = Date.now();
    while (!this.slots.every((s) => s.ready)) {
      if (Date.now() - t0 > timeoutMs) throw new Error('workers did not start in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queues.values()) {
      for (const job of q) {
        this.finish(job);
        job.handlers.onError({ code: 'shutting_down', message: 'the server shut down before the job started' });
      }
    }
    this.queues.clear();
    await Promise.all(
      this.slots.map(async (s) => {
        const job = s.job;
        s.job = undefined;
        await s.worker.kill();
        if (job) {
          this.finish(job);
          job.handlers.onError({ code: 'shutting_down', message: 'the server shut down while the job ran' });
        }
      }),
    );
  }
}
