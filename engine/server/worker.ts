// Job worker entry, run as a child process (default) or a worker thread (see worker-handle.ts): runs one job at a
// time with the runner module it is given. ORT's session.run blocks the thread it runs on, so jobs live here and the
// server's main thread stays free for sockets, progress and cancels.
//
// Cancellation reaches a running job as a `cancel` message, seen whenever this worker's event loop turns (the engine
// runner yields once per step); threads also get a shared Int32Array slot written synchronously by the main thread
// and polled by `ctx.progress()`, so a cancel is seen at the next step boundary even without yielding.
import { parentPort, workerData } from 'node:worker_threads';
import { ModelCache } from './cache.js';
import { toErrorInfo } from './errors.js';
import type { JobContext, JobRunner, RunnerFactory, WorkerJob } from './runner.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-messages.js';
import { INIT_ENV } from './worker-handle.js';

const port = parentPort;
const isChild = !port && typeof process.send === 'function';
if (!port && !isChild) throw new Error('engine/server/worker.js is started by the server (as a worker thread or a forked process), not directly');
const init: WorkerInit = port ? (workerData as WorkerInit) : (JSON.parse(process.env[INIT_ENV] ?? '{}') as WorkerInit);
const cancelSlot = init.cancelBuffer ? new Int32Array(init.cancelBuffer) : undefined;
const cache = new ModelCache(init.cacheBytes);
// A job that exhausts memory should take this worker down, not the server: ask the kernel's OOM killer to pick us
// first (best effort: not Linux, or a worker thread sharing the server's process, leaves it as is).
if (isChild) {
  try {
    (await import('node:fs')).writeFileSync('/proc/self/oom_score_adj', '500');
  } catch {
    // not Linux, or not permitted: the estimate in jobs/size-check.ts is the first line of defence anyway
  }
}
const cancelled = new Set<number>();

function post(msg: FromWorker): void {
  if (port) port.postMessage(msg);
  else if (process.connected) process.send!(msg);
}

let current: { seq: number; controller: AbortController } | undefined;

function pollCancel(): void {
  if (!current || current.controller.signal.aborted) return;
  if (cancelled.has(current.seq) || (cancelSlot && Atomics.load(cancelSlot, 0) === current.seq)) {
    current.controller.abort(Object.assign(new Error('the job was cancelled'), { name: 'AbortError' }));
  }
}

async function runJob(runner: JobRunner, seq: number, job: WorkerJob): Promise<void> {
  const controller = new AbortController();
  current = { seq, controller };
  pollCancel(); // cancelled while the run message was in flight
  const ctx: JobContext = {
    signal: controller.signal,
    cache,
    ...(init.maxJobMemoryMb !== undefined ? { maxJobMemoryMb: init.maxJobMemoryMb } : {}),
    progress(update) {
      pollCancel();
      post({ type: 'progress', seq, update });
    },
    log(message) {
      post({ type: 'log', message });
    },
  };
  try {
    controller.signal.throwIfAborted();
    const result = await runner.run(job, ctx);
    post({ type: 'done', seq, result, cache: { keys: cache.keys(), bytes: cache.totalBytes } });
  } catch (e) {
    const info = controller.signal.aborted ? { code: 'cancelled' as const, message: 'the job was cancelled' } : toErrorInfo(e);
    post({ type: 'failed', seq, error: info, cache: { keys: cache.keys(), bytes: cache.totalBytes } });
  } finally {
    current = undefined;
    cancelled.delete(seq);
  }
}

function onMessage(runner: JobRunner, msg: ToWorker): void {
  if (msg.type === 'run') void runJob(runner, msg.seq, msg.job);
  else if (msg.type === 'cancel') {
    cancelled.add(msg.seq);
    pollCancel();
  }
}

function die(what: string, e: unknown): never {
  post({ type: 'fatal', message: `${what}: ${e instanceof Error ? e.message : String(e)}` });
  if (e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(70);
}

if (isChild) {
  // A crash must end this process (the pool replaces it), after telling the pool why.
  process.on('uncaughtException', (e) => die('uncaught exception', e));
  process.on('unhandledRejection', (e) => die('unhandled promise rejection', e));
  // The server went away (even by SIGKILL): do not linger as an orphan holding models in memory.
  process.on('disconnect', () => process.exit(0));
}

async function main(): Promise<void> {
  const mod = (await import(init.runnerModule)) as { createRunner?: RunnerFactory };
  if (typeof mod.createRunner !== 'function') throw new Error(`runner module ${init.runnerModule} does not export createRunner()`);
  const runner = await mod.createRunner();
  if (port) port.on('message', (msg: ToWorker) => onMessage(runner, msg));
  else process.on('message', (msg) => onMessage(runner, msg as ToWorker));
  post({ type: 'ready' });
}

void main().catch((e: unknown) => die('worker failed to start', e));
