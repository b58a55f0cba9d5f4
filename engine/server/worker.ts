// Worker-thread entry: runs one job at a time with the runner module named in workerData. ORT's session.run blocks
// the thread it runs on, so jobs live here and the main thread stays free for sockets, progress and cancels.
//
// Cancellation reaches the job two ways: a `cancel` message (delivered whenever this thread's event loop turns) and a
// shared Int32Array slot the main thread writes synchronously, which `ctx.progress()` polls — so a cancel is seen at
// the next step boundary even if the runner never yields to the event loop between steps.
import { parentPort, workerData } from 'node:worker_threads';
import { ModelCache } from './cache.js';
import { toErrorInfo } from './errors.js';
import type { JobContext, JobRunner, RunnerFactory, WorkerJob } from './runner.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-messages.js';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('engine/server/worker.js must be started as a worker thread');
const cancelSlot = new Int32Array(init.cancelBuffer);
const cache = new ModelCache(init.cacheBytes);

function post(msg: FromWorker): void {
  port!.postMessage(msg);
}

let current: { seq: number; controller: AbortController } | undefined;

function pollCancel(): void {
  if (current && Atomics.load(cancelSlot, 0) === current.seq && !current.controller.signal.aborted) {
    current.controller.abort(Object.assign(new Error('the job was cancelled'), { name: 'AbortError' }));
  }
}

async function runJob(runner: JobRunner, seq: number, job: WorkerJob): Promise<void> {
  const controller = new AbortController();
  current = { seq, controller };
  pollCancel(); // cancelled while the message was in flight
  const ctx: JobContext = {
    signal: controller.signal,
    cache,
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
  }
}

async function main(): Promise<void> {
  const mod = (await import(init.runnerModule)) as { createRunner?: RunnerFactory };
  if (typeof mod.createRunner !== 'function') throw new Error(`runner module ${init.runnerModule} does not export createRunner()`);
  const runner = await mod.createRunner();
  port!.on('message', (msg: ToWorker) => {
    if (msg.type === 'run') void runJob(runner, msg.seq, msg.job);
    else if (msg.type === 'cancel') pollCancel();
  });
  post({ type: 'ready' });
}

void main().catch((e: unknown) => {
  // A runner that cannot even start is a crash: the pool sees the exit and reports it.
  post({ type: 'log', message: `worker failed to start: ${(e as Error).stack ?? String(e)}` });
  process.exit(1);
});
