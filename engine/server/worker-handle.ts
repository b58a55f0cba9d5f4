// How a job worker is hosted: a child process (default) or a worker thread. Both keep onnxruntime's blocking
// `session.run` off the server's main thread; they differ in what a dying worker can take down:
//
// * thread: cheapest (no second Node, no IPC copy), but it shares the process. Measured here: terminating a worker
//   thread while onnxruntime-node is inside `session.run` aborts the WHOLE process ("terminate called after throwing
//   an instance of 'Napi::Error'"), and a native crash or the kernel's OOM killer (a real risk at SD 1.5 sizes)
//   would too.
// * process (default): a killed, crashed or out-of-memory worker is just an exited child; the server fails that one
//   job and starts another worker. The cost is one Node + ORT start per worker and structured-clone IPC of progress
//   and results (small: results are file paths).
import { fork, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { FromWorker, ToWorker, WorkerInit } from './worker-messages.js';
import { withMallocEnv } from '../onnx/memory.js';

export type Isolation = 'process' | 'thread';

export interface WorkerHandle {
  post(msg: ToWorker): void;
  /** Threads only: the shared cancel slot (processes are cancelled by message). */
  readonly cancelSlot?: Int32Array;
  /** Stops the worker the hard way (SIGKILL / terminate()). */
  kill(): Promise<void>;
  readonly pid?: number;
}

export interface WorkerEvents {
  message(msg: FromWorker): void;
  /** An uncaught error of a worker thread. */
  error(text: string): void;
  /** A line the child process printed (logged, not an error by itself). */
  output(text: string): void;
  exit(description: string): void;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);
export const INIT_ENV = 'HEED_WORKER_INIT';

export interface SpawnOptions {
  /** The Node binary for a worker process (default: the server's own). */
  execPath?: string;
}

export function spawnWorker(isolation: Isolation, init: Omit<WorkerInit, 'cancelBuffer'>, on: WorkerEvents, spawnOptions: SpawnOptions = {}): WorkerHandle {
  try {
    return isolation === 'thread' ? spawnThread(init, on) : spawnProcess(init, on, spawnOptions);
  } catch (e) {
    // Thrown synchronously (a worker thread that cannot be created, an invalid spawn option): report it the way a
    // failed start is reported, after the caller has its handle.
    const text = e instanceof Error ? e.message : String(e);
    const reported = new Promise<void>((resolve) =>
      setImmediate(() => {
        on.error(text);
        on.exit(`could not be started: ${text}`);
        resolve();
      }),
    );
    return { post: () => undefined, kill: () => reported };
  }
}

function spawnThread(init: Omit<WorkerInit, 'cancelBuffer'>, on: WorkerEvents): WorkerHandle {
  const cancelBuffer = new SharedArrayBuffer(4);
  const worker = new Worker(WORKER_URL, { workerData: { ...init, cancelBuffer } satisfies WorkerInit });
  worker.on('message', (m: FromWorker) => on.message(m));
  worker.on('error', (err) => on.error(err.stack ?? err.message));
  worker.on('exit', (code) => on.exit(`exit code ${code}`));
  return {
    post: (msg) => worker.postMessage(msg),
    cancelSlot: new Int32Array(cancelBuffer),
    kill: async () => {
      await worker.terminate();
    },
  };
}

function spawnProcess(init: Omit<WorkerInit, 'cancelBuffer'>, on: WorkerEvents, spawnOptions: SpawnOptions): WorkerHandle {
  const child: ChildProcess = fork(fileURLToPath(WORKER_URL), [], {
    serialization: 'advanced', // structured clone: typed arrays and nested objects cross as they are
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'], // keep the worker's output off the server's stdout (--json mode)
    env: { ...withMallocEnv(process.env), [INIT_ENV]: JSON.stringify(init) },
    ...(spawnOptions.execPath ? { execPath: spawnOptions.execPath } : {}),
  });
  const forward = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) on.output(line);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  child.on('message', (m) => on.message(m as FromWorker));
  // A process that could not be spawned (EMFILE, ENOENT, EAGAIN…) reports `error` and never `exit`: it is an exit all
  // the same, or its slot would never be replaced and kill() (shutdown) would wait for it forever.
  let ended = false;
  let endedResolve!: () => void;
  const exited = new Promise<void>((resolve) => (endedResolve = resolve));
  const end = (description: string): void => {
    if (ended) return;
    ended = true;
    on.exit(description);
    endedResolve();
  };
  child.on('error', (err) => {
    on.error(err.message);
    if (child.pid === undefined) end(`could not be started: ${err.message}`);
  });
  child.on('exit', (code, signal) => end(signal ? `killed by ${signal}` : `exit code ${code}`));
  return {
    post: (msg) => {
      if (child.connected) child.send(msg);
    },
    pid: child.pid,
    kill: async () => {
      if (!ended && child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
