// Job mechanics of the server with the test runner (test/server-fake-runner.ts): progress for every step, cancel of
// running and queued jobs, the queue bound, two clients at once, a crashed or killed worker, and the main thread's
// responsiveness while a worker holds its thread. Real ws clients against a real server on 127.0.0.1.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeedClient, type Exchange } from '../engine/server/client.js';
import { startServer, type HeedServer } from '../engine/server/server.js';
import type { ServerEvent } from '../engine/protocol/index.js';
import { ModelCache } from '../engine/server/cache.js';

const FAKE_RUNNER = new URL('./server-fake-runner.js', import.meta.url).href;

function progressSteps(x: Exchange): number[] {
  return x.events.flatMap((e) => (e.type === 'progress' && e.phase === 'denoising' ? [e.step] : []));
}

function code(x: Exchange): string | undefined {
  return x.terminal.type === 'error' ? x.terminal.code : undefined;
}

async function until(pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const isolation of ['process', 'thread'] as const) describe(`server: jobs (test runner, ${isolation} workers)`, function () {
  let server: HeedServer;
  let dir: string;
  let models: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heed-server-jobs-'));
    models = join(dir, 'models');
    for (const m of ['a', 'b']) {
      mkdirSync(join(models, m, 'unet'), { recursive: true });
      writeFileSync(join(models, m, 'model_index.json'), '{}');
    }
    server = await startServer({ port: 0, modelRoots: [models], workers: 2, queueLimit: 2, isolation, outDir: join(dir, 'out'), runnerModule: FAKE_RUNNER, log: () => undefined });
    await server.pool.whenReady();
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams accepted, progress for every step, then the result; files land in the job folder', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'generate', model: 'a', prompt: 'ms=2', steps: 6 });
    assert.equal(x.events[0]?.type, 'accepted');
    assert.deepEqual(progressSteps(x), [1, 2, 3, 4, 5, 6]);
    assert.equal(x.terminal.type, 'result');
    const accepted = x.events[0] as Extract<ServerEvent, { type: 'accepted' }>;
    assert.ok(existsSync(join(accepted.outDir, 'image.png')));
    assert.ok(existsSync(join(accepted.outDir, 'request.json')));
    assert.ok(existsSync(join(accepted.outDir, 'result.json')));
    for (const e of x.events) if (e.type === 'progress') assert.equal(e.jobId, accepted.jobId);
    await c.close();
  });

  it('cancel mid-generation → cancelled; the worker stays healthy and the next job runs normally', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    let cancelSent = false;
    const job = c.request({ type: 'generate', model: 'a', prompt: 'ms=30 block', steps: 40 }, (e) => {
      if (!cancelSent && e.type === 'progress' && e.phase === 'denoising' && e.step === 3) {
        cancelSent = true;
        void c.request({ type: 'cancel', target: job.id }).then((r) => {
          assert.equal(r.terminal.type, 'result');
          assert.ok(r.terminal.type === 'result' && r.terminal.result.kind === 'cancel' && r.terminal.result.was === 'running');
        });
      }
    });
    const x = await job;
    assert.equal(code(x), 'cancelled');
    const steps = progressSteps(x);
    assert.ok(steps.length >= 3 && steps.length < 40, `stopped at a step boundary after the cancel, before the end (steps seen: ${steps.length})`);
    const restarts = server.pool.status().map((w) => w.restarts);
    const next = await c.request({ type: 'generate', model: 'a', prompt: 'ms=1', steps: 3 });
    assert.equal(next.terminal.type, 'result');
    assert.deepEqual(progressSteps(next), [1, 2, 3]);
    assert.deepEqual(server.pool.status().map((w) => w.restarts), restarts, 'no worker was restarted');
    await c.close();
  });

  it('cancels a queued job, refuses past the queue bound, and cancel of an unknown id → not_found', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    // Two workers busy on model b, then two queued (the bound), then one too many.
    const running = [c.request({ type: 'generate', model: 'b', prompt: 'ms=40', steps: 10 }), c.request({ type: 'generate', model: 'b', prompt: 'ms=40', steps: 10 })];
    const queued = [c.request({ type: 'generate', model: 'b', prompt: 'ms=1', steps: 1 }), c.request({ type: 'generate', model: 'b', prompt: 'ms=1', steps: 1 })];
    await until(() => queued.every((q) => c.all.some((e) => e.id === q.id && e.type === 'accepted')), 'queued jobs accepted');
    const accepted = c.all.filter((e) => e.type === 'accepted' && queued.some((q) => q.id === e.id)) as Array<Extract<ServerEvent, { type: 'accepted' }>>;
    assert.deepEqual(accepted.map((a) => a.position), [0, 1], 'requests enter the queue in the order they were sent');
    const over = await c.request({ type: 'generate', model: 'b', prompt: 'ms=1', steps: 1 });
    assert.equal(code(over), 'queue_full');
    assert.equal(over.terminal.type === 'error' && over.terminal.field, undefined);
    const cancel = await c.request({ type: 'cancel', target: queued[1]!.id });
    assert.ok(cancel.terminal.type === 'result' && cancel.terminal.result.kind === 'cancel' && cancel.terminal.result.was === 'queued');
    assert.equal(code(await queued[1]!), 'cancelled');
    const unknown = await c.request({ type: 'cancel', target: 'nope' });
    assert.equal(code(unknown), 'not_found');
    for (const r of [...running, queued[0]!]) assert.equal((await r).terminal.type, 'result');
    await c.close();
  });

  it('two clients at once: both complete, each sees only its own events', async () => {
    const c1 = await HeedClient.connect(server.url, { token: server.token });
    const c2 = await HeedClient.connect(server.url, { token: server.token });
    // Same request ids on both connections: ids are per connection.
    const [x1, x2] = await Promise.all([
      c1.request({ id: 'same', type: 'generate', model: 'a', prompt: 'ms=10 client one', steps: 5 }),
      c2.request({ id: 'same', type: 'generate', model: 'b', prompt: 'ms=10 client two', steps: 7 }),
    ]);
    assert.equal(x1.terminal.type, 'result');
    assert.equal(x2.terminal.type, 'result');
    assert.deepEqual(progressSteps(x1), [1, 2, 3, 4, 5]);
    assert.deepEqual(progressSteps(x2), [1, 2, 3, 4, 5, 6, 7]);
    const job1 = (x1.events[0] as Extract<ServerEvent, { type: 'accepted' }>).jobId;
    const job2 = (x2.events[0] as Extract<ServerEvent, { type: 'accepted' }>).jobId;
    for (const e of c1.all) if ('jobId' in e && e.jobId) assert.equal(e.jobId, job1);
    for (const e of c2.all) if ('jobId' in e && e.jobId) assert.equal(e.jobId, job2);
    assert.deepEqual(c1.stray, []);
    assert.deepEqual(c2.stray, []);
    await c1.close();
    await c2.close();
  });

  it('a job whose client went away still finishes and writes its files', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    let outDir = '';
    const x = c.request({ type: 'generate', model: 'a', prompt: 'ms=20 orphan', steps: 5 }, (e) => {
      if (e.type === 'accepted') outDir = e.outDir;
    });
    await until(() => outDir !== '', 'accepted');
    await c.close();
    await x.catch(() => undefined);
    await until(() => existsSync(join(outDir, 'result.json')), 'the orphaned job to finish');
    assert.match(readFileSync(join(outDir, 'image.png'), 'utf8'), /orphan/);
  });

  for (const how of ['crash-at=2', 'exit-at=2', 'terminate']) {
    it(`a worker that dies during a job (${how}) → worker_crashed; the server recovers and the next job succeeds`, async () => {
      const c = await HeedClient.connect(server.url, { token: server.token });
      const bystander = c.request({ type: 'generate', model: 'b', prompt: 'ms=30 bystander', steps: 8 });
      let terminated = false;
      const victim = c.request({ type: 'generate', model: 'a', prompt: `ms=30 ${how === 'terminate' ? '' : how}`, steps: 20 }, (e) => {
        if (how === 'terminate' && !terminated && e.type === 'progress' && e.step === 2) {
          terminated = true;
          void server.pool.terminateJobWorker(e.jobId);
        }
      });
      const x = await victim;
      assert.equal(code(x), 'worker_crashed', x.terminal.type === 'error' ? x.terminal.message : 'result');
      assert.match(x.terminal.type === 'error' ? x.terminal.message : '', /restarted/);
      assert.equal((await bystander).terminal.type, 'result', 'the job on the other worker went on');
      const next = await c.request({ type: 'generate', model: 'a', prompt: 'ms=1 after crash', steps: 3 });
      assert.equal(next.terminal.type, 'result');
      assert.deepEqual(progressSteps(next), [1, 2, 3]);
      assert.ok(server.pool.status().some((w) => w.restarts > 0));
      await c.close();
    });
  }

  it('an engine error ends the job with its code and field; the worker goes on', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'generate', model: 'a', prompt: 'ms=1 fail-at=2', steps: 4 });
    assert.equal(code(x), 'invalid_input');
    assert.equal(x.terminal.type === 'error' && x.terminal.field, 'prompt');
    assert.equal((await c.request({ type: 'generate', model: 'a', prompt: 'ms=1', steps: 2 })).terminal.type, 'result');
    await c.close();
  });

  it('the main thread stays responsive while a worker holds its thread (status answered mid-step)', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const job = c.request({ type: 'generate', model: 'a', prompt: 'ms=300 block', steps: 3 });
    await until(() => c.all.some((e) => e.id === job.id && e.type === 'progress' && e.phase === 'denoising'), 'first step');
    const s = await c.request({ type: 'status' });
    // Order, not time: the status answer arrives while the job is still running (its worker blocked in a step).
    const jobEndedBeforeStatus = c.all.some((e) => e.id === job.id && (e.type === 'result' || e.type === 'error'));
    assert.equal(jobEndedBeforeStatus, false, 'status was answered only after the job ended');
    assert.equal(s.terminal.type, 'result');
    assert.ok(s.terminal.type === 'result' && s.terminal.result.kind === 'status');
    if (s.terminal.type === 'result' && s.terminal.result.kind === 'status') {
      assert.deepEqual(s.terminal.result.yourJobs.map((j) => j.state), ['running']);
    }
    await job;
    await c.close();
  });
});

describe('server: model cache (LRU by memory)', () => {
  it('evicts the least recently used entries past the budget, disposes them, never the one in use', async () => {
    const disposed: string[] = [];
    const cache = new ModelCache(100);
    const load = (k: string, bytes: number) => async () => ({ value: k, bytes, dispose: () => void disposed.push(k) });
    assert.equal(await cache.get('a', load('a', 40)), 'a');
    await cache.get('b', load('b', 40));
    await cache.get('a', load('a', 40)); // a is now more recent than b
    await cache.get('c', load('c', 40)); // 120 > 100: evict b
    assert.deepEqual(disposed, ['b']);
    assert.deepEqual(cache.keys().sort(), ['a', 'c']);
    await cache.use('a', load('a', 40), async () => {
      await cache.get('d', load('d', 90)); // a in use: c goes, then nothing evictable but a → over budget, kept
    });
    assert.deepEqual(disposed, ['b', 'c']);
    assert.ok(cache.has('a') && cache.has('d'));
    await cache.get('e', load('e', 10)); // now a is free again: a (LRU) evicted
    assert.deepEqual(disposed, ['b', 'c', 'a']);
    let loads = 0;
    await assert.rejects(cache.get('bad', async () => { loads++; throw new Error('corrupt model'); }), /corrupt model/);
    assert.ok(!cache.has('bad'), 'a failed load is not cached');
    assert.equal(loads, 1);
  });
});

describe('server: a runner that cannot start', () => {
  it('fails waiting jobs with the reason instead of queueing them forever', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-server-broken-'));
    mkdirSync(join(dir, 'm', 'unet'), { recursive: true });
    writeFileSync(join(dir, 'm', 'model_index.json'), '{}');
    const server = await startServer({ port: 0, outDir: join(dir, 'out'), runnerModule: new URL('file:///nonexistent/heed-runner.js').href, log: () => undefined });
    try {
      const c = await HeedClient.connect(server.url, { token: server.token });
      const x = await c.request({ type: 'generate', model: join(dir, 'm'), prompt: 'a' });
      assert.equal(code(x), 'internal');
      assert.match(x.terminal.type === 'error' ? x.terminal.message : '', /no worker can start.*heed-runner\.js/);
      assert.equal((await c.request({ type: 'status' })).terminal.type, 'result', 'the server itself still answers');
      await c.close();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
