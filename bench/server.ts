// Server benchmark (wired into `npm run bench` by bench/run.ts):
// - event-loop latency: p99 lateness of a 1 ms timer on the server's main thread while a worker runs UNet steps
//   (goal < 20 ms), beside the same measurement with the pipeline running on the main thread (what the worker avoids);
// - overhead of serving: a generation requested over WebSocket (validation, worker hop, progress events, result)
//   against the same job run in-process by the same runner (same model cache state, same files written); goal < 5%.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModels } from '../models/cache.js';
import { ModelCache } from '../engine/server/cache.js';
import { HeedClient } from '../engine/server/client.js';
import { createRunner } from '../engine/server/engine-runner.js';
import { GenerateRequest } from '../engine/protocol/index.js';
import type { WorkerJob } from '../engine/server/runner.js';
import { startServer } from '../engine/server/server.js';

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

/** Lateness of back-to-back 1 ms timers until `until` resolves. */
async function timerLateness<T>(until: Promise<T>): Promise<{ lateness: number[]; value: T }> {
  const lateness: number[] = [];
  let done = false;
  const finished = until.finally(() => {
    done = true;
  });
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const t0 = performance.now();
      setTimeout(() => {
        lateness.push(performance.now() - t0 - 1);
        if (done) resolve();
        else tick();
      }, 1);
    };
    tick();
  });
  return { lateness, value: await finished };
}

export async function benchServer(): Promise<Record<string, number>> {
  const models = await ensureTinyModels();
  const dir = mkdtempSync(join(tmpdir(), 'heed-bench-server-'));
  // 128×128 (16×16 latents): UNet steps long enough to measure lateness against, short enough for the whole
  // benchmark to take a minute or two. (At 512×512 the tiny UNet's step time is dominated by memory traffic of its
  // activations, not compute, so it would measure the memory system rather than the server.)
  const steps = 6;
  const size = 128;
  const reps = 3;
  const out: Record<string, number> = {};
  const server = await startServer({ port: 0, outDir: join(dir, 'out'), infoFile: false, modelRoots: [models.sd], log: () => undefined });
  try {
    await server.pool.whenReady();
    const client = await HeedClient.connect(server.url, { token: server.token });
    const request = { type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps, seed: 1234, width: size, height: size, maps: true } as const;
    const warm = await client.request(request); // loads the model into the worker's cache
    if (warm.terminal.type !== 'result') throw new Error(`warm-up generation failed: ${JSON.stringify(warm.terminal)}`);

    // 1. Event-loop lateness while the worker runs UNet steps.
    const { lateness } = await timerLateness(client.request(request));
    out.server_event_loop_p99_ms = percentile(lateness, 99);
    out.server_event_loop_max_ms = Math.max(...lateness);

    // 2. WebSocket round trip vs the same runner in-process (warm caches on both sides). The two are interleaved
    //    and the minimum of each is compared: on a shared machine, load drifts over a run and only hurts.
    const runner = createRunner();
    const cache = new ModelCache(Number.MAX_SAFE_INTEGER);
    const parsed = GenerateRequest.parse({ ...request, id: 'bench' });
    const job = (n: number): WorkerJob => ({ kind: 'generate', jobId: `direct-${n}`, request: parsed, modelDir: models.sd, outDir: join(dir, `direct-${n}`) });
    const ctx = { signal: new AbortController().signal, cache, progress: () => undefined, log: () => undefined };
    await runner.run(job(0), ctx); // warm: load the model in this thread
    const ws: number[] = [];
    const direct: number[] = [];
    for (let i = 1; i <= reps; i++) {
      let t0 = performance.now();
      const x = await client.request(request);
      ws.push(performance.now() - t0);
      if (x.terminal.type !== 'result') throw new Error('generation over WebSocket failed');
      t0 = performance.now();
      await runner.run(job(i), ctx);
      direct.push(performance.now() - t0);
    }
    await client.close();
    // The same generation on the main thread: the lateness a server without workers would show.
    const { lateness: blocked } = await timerLateness(runner.run(job(reps + 1), ctx));
    out.direct_event_loop_p99_ms = percentile(blocked, 99);
    await cache.clear();

    out.server_generate_ws_min_ms = Math.min(...ws);
    out.server_generate_direct_min_ms = Math.min(...direct);
    out.server_ws_overhead_ratio = Math.min(...ws) / Math.min(...direct) - 1;
    out.server_generate_ws_median_ms = median(ws);
    out.server_generate_direct_median_ms = median(direct);
    out.server_steps = steps;
    out.server_image_size = size;
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

// `node dist/bench/server.js` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  benchServer().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
