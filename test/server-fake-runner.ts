// A test-only job runner for the server's queue/cancel/crash tests: no models, behaviour chosen by words in the
// prompt. `ms=N` makes each step take N ms, `block` makes it a synchronous busy-wait (like ORT's session.run, which
// holds the thread), `crash-at=K` kills the worker with an uncaught exception at step K, `exit-at=K` calls
// process.exit in the worker, `fail-at=K` ends the job with an engine error; a `latents` file is read as text and
// echoed in the report. Files go to the job folder as the real
// runner's would, so the server's bookkeeping is exercised as well.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { ProtocolError } from '../engine/server/errors.js';
import type { JobContext, JobResult, JobRunner, WorkerJob } from '../engine/server/runner.js';

function opt(prompt: string, name: string): number | undefined {
  const m = new RegExp(`\\b${name}=(\\d+)`).exec(prompt);
  return m ? Number(m[1]) : undefined;
}

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* hold the thread */
  }
}

export function createRunner(): JobRunner {
  return {
    async run(job: WorkerJob, ctx: JobContext): Promise<JobResult> {
      if (job.kind !== 'generate') throw new ProtocolError('invalid_input', 'the fake runner only generates');
      const prompt = job.request.prompt;
      const steps = job.request.steps ?? 4;
      const ms = opt(prompt, 'ms') ?? 5;
      const block = /\bblock\b/.test(prompt);
      const t0 = performance.now();
      ctx.progress({ phase: 'loading', step: 0, total: 0 });
      for (let i = 1; i <= steps; i++) {
        ctx.signal.throwIfAborted();
        if (opt(prompt, 'crash-at') === i) setTimeout(() => { throw new Error(`fake crash at step ${i}`); }, 0);
        if (opt(prompt, 'exit-at') === i) process.exit(3);
        if (opt(prompt, 'fail-at') === i) throw new ProtocolError('invalid_input', `fake engine error at step ${i}`, 'prompt');
        if (block) busyWait(ms);
        else await new Promise((r) => setTimeout(r, ms));
        const elapsed = performance.now() - t0;
        ctx.progress({ phase: 'denoising', step: i, total: steps, etaMs: opt(prompt, 'nan-at') === i ? NaN : (elapsed / i) * (steps - i), ...(job.request.excite ? { loss: 1 / i } : {}) });
        // A crash lands when the thread yields: give it the chance a real step boundary would.
        await new Promise((r) => setImmediate(r));
      }
      const file = join(job.outDir, 'image.png');
      const content = `fake image for "${prompt}" seed ${job.request.seed ?? 0} by thread ${threadId}`;
      writeFileSync(file, content);
      return {
        kind: 'generate',
        jobId: job.jobId,
        outDir: job.outDir,
        image: { file: { path: file, bytes: Buffer.byteLength(content) }, width: 8, height: 8 },
        maps: [],
        files: [{ path: file, bytes: Buffer.byteLength(content) }],
        // What the worker was given to read as latents (the server's checked copy), so tests can see it.
        report: { prompt, threadId, ...(job.latentsPath ? { latentsPath: job.latentsPath, latentsText: readFileSync(job.latentsPath, 'utf8') } : {}) },
        timingsMs: { total: performance.now() - t0 },
      };
    },
  };
}
