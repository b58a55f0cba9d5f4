// Issue 16: faults and hostile input found by probing `heed serve`, each reproduced with real ws clients against a
// real server on 127.0.0.1 (the test runner, test/server-fake-runner.ts, keeps jobs cheap). Loops are bounded; waits
// are bounded by iteration counts, and no assertion is about elapsed time.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WebSocketServer } from 'ws';
import { HeedClient, type Exchange } from '../engine/server/client.js';
import { startServer, type HeedServer, type ServerOptions } from '../engine/server/server.js';
import { classifyEngineError } from '../engine/server/engine-runner.js';
import { ProtocolError } from '../engine/server/errors.js';
import { createScheduler } from '../engine/diffusion/schedulers/index.js';
import { WORD_STEM_MAX_BYTES, wordFileStem } from '../engine/jobs/trace.js';
import { nestingDepthOver } from '../engine/server/limits.js';

const FAKE_RUNNER = new URL('./server-fake-runner.js', import.meta.url).href;
const FLAKY_RUNNER = new URL('./server-flaky-runner.js', import.meta.url).href;

function code(x: Exchange): string | undefined {
  return x.terminal.type === 'error' ? x.terminal.code : undefined;
}

function message(x: Exchange): string {
  return x.terminal.type === 'error' ? x.terminal.message : '';
}

/** Polls `pred` every 10 ms, at most `tries` times. */
async function until(pred: () => boolean, what: string, tries = 2000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

function makeModel(root: string, name: string): string {
  mkdirSync(join(root, name, 'unet'), { recursive: true });
  writeFileSync(join(root, name, 'model_index.json'), '{}');
  return join(root, name);
}

/** Bytes the server has handed to its sockets but not yet to the kernel, over all its WebSocket connections. */
function serverBufferedBytes(server: HeedServer): number {
  const wss = (server as unknown as { wss: WebSocketServer }).wss;
  let total = 0;
  for (const ws of wss.clients) total += ws.bufferedAmount;
  return total;
}

describe('server hardening (issue 16)', function () {
  this.timeout(60_000);
  let dir: string;
  const servers: HeedServer[] = [];

  async function serve(opts: ServerOptions): Promise<HeedServer> {
    const s = await startServer({ port: 0, runnerModule: FAKE_RUNNER, log: () => undefined, ...opts });
    servers.push(s);
    return s;
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'heed-hardening-'));
  });

  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('1: workers that died while starting do not block jobs once a worker is ready', async () => {
    const root = join(dir, 'flaky');
    const model = makeModel(root, 'm');
    // Four deaths before the fifth start succeeds (the issue saw it after a worker was killed 5× while starting).
    const runner = `${FLAKY_RUNNER}?counter=${encodeURIComponent(join(root, 'starts'))}&failures=4`;
    const server = await serve({ outDir: join(root, 'out'), runnerModule: runner });
    await server.pool.whenReady();
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 2 });
    assert.equal(x.terminal.type, 'result', message(x));
    assert.equal(readFileSync(join(root, 'starts'), 'utf8').length, 5, 'four failed starts, then one that worked');
    await c.close();
  });

  it('2: a worker that cannot be spawned is retried, and shutdown completes and removes server.json', async () => {
    const root = join(dir, 'spawn');
    const model = makeModel(root, 'm');
    const node = join(root, 'node-appears-later');
    const out = join(root, 'out');
    const server = await serve({ outDir: out, workerExecPath: node });
    const c = await HeedClient.connect(server.url, { token: server.token });
    // No worker can start: the job is refused with the reason instead of waiting forever.
    const x = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 1 });
    assert.equal(code(x), 'internal');
    assert.match(message(x), /no worker can start.*ENOENT/);
    // The pool keeps retrying (with back-off): once the binary exists, a worker starts and jobs run.
    symlinkSync(process.execPath, node);
    await server.pool.whenReady();
    const y = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 1 });
    assert.equal(y.terminal.type, 'result', message(y));
    await c.close();
    // And with a worker that never spawns, close() still completes.
    const out2 = join(root, 'out2');
    const broken = await serve({ outDir: out2, workerExecPath: join(root, 'no-such-node') });
    assert.ok(existsSync(join(out2, 'server.json')));
    await broken.close();
    assert.ok(!existsSync(join(out2, 'server.json')), 'server.json removed on shutdown');
  });

  it('3: a client that stops reading cannot make the server hold file data; fetches in flight are bounded', async () => {
    const root = join(dir, 'fetch');
    const out = join(root, 'out');
    mkdirSync(join(out, 'jobs', 'big'), { recursive: true });
    const size = 24 * 1024 * 1024;
    const content = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) content.writeUInt32LE(i, i);
    const file = join(out, 'jobs', 'big', 'file.bin');
    writeFileSync(file, content);
    const highWater = 1024 * 1024;
    const server = await serve({ outDir: out, maxFetchesInFlight: 2, fetchHighWaterBytes: highWater });
    const c = await HeedClient.connect(server.url, { token: server.token });
    c.ws.pause(); // stop reading: the kernel buffers fill, then the server's
    const requests = Array.from({ length: 10 }, () => c.request({ type: 'fetch', path: file }));
    let peak = 0;
    for (let i = 0; i < 100; i++) {
      peak = Math.max(peak, serverBufferedBytes(server));
      await new Promise((r) => setTimeout(r, 10));
    }
    c.ws.resume();
    const done = await Promise.all(requests);
    const ok = done.filter((x) => x.terminal.type === 'result');
    const refused = done.filter((x) => code(x) === 'too_many_fetches');
    assert.equal(ok.length, 2, 'the bound of fetches in flight');
    assert.equal(refused.length, 8);
    assert.match(message(refused[0]!), /2 fetches/);
    for (const x of ok) assert.ok(x.binary && Buffer.from(x.binary.payload).equals(content), 'the streamed bytes are the file');
    // One streamed chunk beyond the high-water mark, plus the small text events; never whole files.
    assert.ok(peak <= highWater + 512 * 1024, `the server buffered ${peak} bytes for a client that did not read`);
    await c.close();
  });

  it('4: latents must be a regular file of a plausible size, checked on the opened descriptor; the worker reads a copy', async () => {
    const root = join(dir, 'inputs');
    const models = join(root, 'models');
    const model = makeModel(models, 'm');
    const fifo = join(models, 'latents.fifo');
    execFileSync('mkfifo', [fifo]);
    const huge = join(models, 'huge.npy');
    writeFileSync(huge, '');
    truncateSync(huge, 65 * 1024 * 1024); // sparse: no disk used
    const good = join(models, 'good.npy');
    writeFileSync(good, 'latents bytes');
    const restricted = await serve({ outDir: join(root, 'out'), modelRoots: [models] });
    const c = await HeedClient.connect(restricted.url, { token: restricted.token });
    const x = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 1, latents: fifo });
    assert.equal(code(x), 'file_not_found', message(x));
    assert.equal(x.terminal.type === 'error' && x.terminal.field, 'latents');
    assert.match(message(x), /not a regular file/);
    const y = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 1, latents: huge });
    assert.equal(code(y), 'file_too_large', message(y));
    const z = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 1, latents: good });
    assert.equal(z.terminal.type, 'result', message(z));
    const report = z.terminal.type === 'result' && z.terminal.result.kind === 'generate' ? (z.terminal.result.report as { latentsPath?: string; latentsText?: string }) : {};
    assert.equal(report.latentsText, 'latents bytes');
    assert.ok(report.latentsPath?.startsWith(join(root, 'out', 'jobs')), `the worker read the server's copy, not ${report.latentsPath}`);
    await until(() => !existsSync(report.latentsPath!), 'the copy to be removed when the job ended', 500);
    await c.close();
    // Without --models (how the extension starts the engine) a device is still not a latents file.
    const open = await serve({ outDir: join(root, 'out2') });
    const c2 = await HeedClient.connect(open.url, { token: open.token });
    const d = await c2.request({ type: 'generate', model, prompt: 'ms=1', steps: 1, latents: '/dev/zero' });
    assert.equal(code(d), 'file_not_found', message(d));
    await c2.close();
  });

  it('4: a cancel the job cannot honour at a step boundary terminates its worker; the watchdog ends overlong jobs', async () => {
    const root = join(dir, 'stuck');
    const model = makeModel(root, 'm');
    const server = await serve({ outDir: join(root, 'out'), cancelGraceMs: 200, jobTimeoutMs: 1500 });
    await server.pool.whenReady();
    const c = await HeedClient.connect(server.url, { token: server.token });
    // Each step holds the worker's thread for 20 s, like a read that never returns or a native call that hangs.
    let cancel: Promise<Exchange> | undefined;
    const stuck = c.request({ type: 'generate', model, prompt: 'ms=20000 block', steps: 3 }, (e) => {
      if (!cancel && e.type === 'progress' && e.phase === 'loading') cancel = c.request({ type: 'cancel', target: stuck.id });
    });
    const x = await stuck;
    assert.equal(code(x), 'cancelled', message(x));
    assert.match(message(x), /worker was terminated/);
    const was = await cancel!;
    assert.ok(was.terminal.type === 'result' && was.terminal.result.kind === 'cancel' && was.terminal.result.was === 'running');
    assert.ok(server.pool.status()[0]!.restarts >= 1, 'the worker was replaced');
    // No cancel at all: the watchdog ends a job that outlives --job-timeout.
    const y = await c.request({ type: 'generate', model, prompt: 'ms=20000 block', steps: 3 });
    assert.equal(code(y), 'job_failed', message(y));
    assert.match(message(y), /ran longer than the server's limit/);
    const z = await c.request({ type: 'generate', model, prompt: 'ms=1', steps: 2 });
    assert.equal(z.terminal.type, 'result', 'the replacement worker runs the next job');
    await c.close();
  });

  it('7: deeply nested JSON is refused before parsing; brackets inside strings do not count', async () => {
    const root = join(dir, 'nest');
    const model = makeModel(root, 'm');
    const server = await serve({ outDir: join(root, 'out') });
    const c = await HeedClient.connect(server.url, { token: server.token });
    const depth = 4 * 1024 * 1024; // an 8 MB message
    c.sendRaw('['.repeat(depth) + ']'.repeat(depth));
    const e = await c.nextStray(30_000);
    assert.equal(e.type === 'error' && e.code, 'bad_json');
    assert.match(e.type === 'error' ? e.message : '', /nest.*64/);
    const brackets = await c.request({ type: 'generate', model, prompt: `ms=1 ${'[{'.repeat(500)}`, steps: 1 });
    assert.equal(brackets.terminal.type, 'result', message(brackets));
    assert.equal((await c.request({ type: 'status' })).terminal.type, 'result');
    await c.close();
  });

  it('7: the depth pre-scan skips strings, escaped quotes included, and agrees with JSON.parse on the depth', () => {
    const depthOf = (v: unknown): number => (Array.isArray(v) ? 1 + Math.max(0, ...v.map(depthOf)) : v && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
    const cases = ['{"a":"[[[["}', '{"a":"x\\\\","b":[[[[1]]]]}', '{"a":"x\\"[[[[["}', '[[[[]]]]', '[{"k":[{}]}]', '{"p":"\\\\\\"]]]]{{{{"}'];
    for (const text of cases) {
      const depth = depthOf(JSON.parse(text));
      assert.equal(nestingDepthOver(text, depth), undefined, text);
      assert.equal(nestingDepthOver(text, depth - 1), depth, text);
    }
  });

  it('8: a folder flipped between a directory and a symlink never lets a fetch read outside the output folder', async () => {
    const root = join(dir, 'race');
    const out = join(root, 'out');
    const jobs = join(out, 'jobs');
    const outside = join(root, 'outside');
    mkdirSync(join(jobs, 'real'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(jobs, 'real', 'f.txt'), 'inside');
    writeFileSync(join(outside, 'f.txt'), 'SECRET');
    symlinkSync(outside, join(jobs, 'link'));
    const server = await serve({ outDir: out });
    const c = await HeedClient.connect(server.url, { token: server.token });
    // A local writer swaps jobs/flip between the real folder and the symlink, as fast as it can, in another thread.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const flipper = new Worker(
      `const { renameSync } = require('node:fs');
       const { jobs, stop } = require('node:worker_threads').workerData;
       const j = (n) => jobs + '/' + n;
       renameSync(j('real'), j('flip'));
       for (let i = 0; i < 5e6 && Atomics.load(stop, 0) === 0; i++) {
         try {
           renameSync(j('flip'), j('real')); renameSync(j('link'), j('flip'));
           renameSync(j('flip'), j('link')); renameSync(j('real'), j('flip'));
         } catch {}
       }`,
      { eval: true, workerData: { jobs, stop } },
    );
    let leaks = 0;
    let served = 0;
    try {
      for (let i = 0; i < 1500; i++) {
        const x = await c.request({ type: 'fetch', path: join(jobs, 'flip', 'f.txt') });
        if (x.binary) {
          served++;
          if (Buffer.from(x.binary.payload).toString() !== 'inside') leaks++;
        }
      }
    } finally {
      Atomics.store(stop, 0, 1);
      await flipper.terminate();
    }
    assert.equal(leaks, 0, `${leaks} of ${served} served fetches returned the file outside the output folder`);
    assert.ok(served > 0, 'some fetches found the real folder in place (the race was run, not refused outright)');
    await c.close();
  });

  it('9: server.json is written through an unpredictable, exclusively created temporary file', async () => {
    const root = join(dir, 'info');
    // A symlink planted where the old code put its temporary file, pointing at a file of the attacker's choice.
    const out1 = join(root, 'out1');
    mkdirSync(out1, { recursive: true });
    const victim = join(root, 'victim');
    writeFileSync(victim, 'untouched');
    symlinkSync(victim, join(out1, `server.json.${process.pid}.tmp`));
    const s1 = await serve({ outDir: out1 });
    assert.equal(readFileSync(victim, 'utf8'), 'untouched', 'the token was not written through the planted symlink');
    assert.ok(lstatSync(join(out1, 'server.json')).isFile(), 'server.json is a regular file');
    assert.equal(statSync(join(out1, 'server.json')).mode & 0o777, 0o600);
    assert.equal((JSON.parse(readFileSync(join(out1, 'server.json'), 'utf8')) as { token: string }).token, s1.token);
    // A pre-created world-readable file at that name must not be reused.
    const out2 = join(root, 'out2');
    mkdirSync(out2, { recursive: true });
    const planted = join(out2, `server.json.${process.pid}.tmp`);
    writeFileSync(planted, '');
    chmodSync(planted, 0o666);
    await serve({ outDir: out2 });
    assert.equal(statSync(join(out2, 'server.json')).mode & 0o777, 0o600, 'the token file is not world-readable');
  });

  it('11: uploads of failed jobs are removed, the out-folder quota refuses jobs, --keep-jobs prunes by count and age', async () => {
    const root = join(dir, 'retention');
    const model = makeModel(root, 'm');
    const out = join(root, 'out');
    // An old job folder (2 h) is pruned at start by an age policy of 1 h.
    const old = join(out, 'jobs', '20000101-000000-deadbeef');
    mkdirSync(old, { recursive: true });
    writeFileSync(join(old, 'image.png'), 'old');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(old, twoHoursAgo, twoHoursAgo);
    const server = await serve({ outDir: out, keepJobs: { count: 2, ageMs: 3600_000 } });
    assert.ok(!existsSync(old), 'the job folder older than the age limit was removed');
    const c = await HeedClient.connect(server.url, { token: server.token });
    // The fake runner only generates: an explain with uploaded bytes fails, and its upload must not stay on disk.
    const png = Buffer.alloc(64 * 1024, 7).toString('base64');
    const ex = await c.request({ type: 'explain', model, image: { data: png } });
    assert.equal(ex.terminal.type, 'error');
    const exDir = (ex.events.find((e) => e.type === 'accepted') as { outDir: string } | undefined)?.outDir;
    assert.ok(exDir, 'the explain was accepted');
    await until(() => !existsSync(join(exDir, 'input.png')), 'the failed job’s upload to be removed', 500);
    // Count: after four more jobs only the two newest job folders remain.
    const made: string[] = [];
    for (let i = 0; i < 4; i++) {
      const x = await c.request({ type: 'generate', model, prompt: `ms=1 job ${i}`, steps: 1 });
      assert.equal(x.terminal.type, 'result', message(x));
      made.push((x.events[0] as { outDir: string }).outDir);
    }
    await until(() => readdirSync(join(out, 'jobs')).length <= 2, 'retention by count', 500);
    assert.deepEqual(readdirSync(join(out, 'jobs')).sort(), made.slice(2).map((p) => p.split('/').pop()!).sort());
    await c.close();
    // Quota: a jobs folder already over the limit refuses new jobs with the reason and the fix.
    const out2 = join(root, 'out2');
    mkdirSync(join(out2, 'jobs', 'filler'), { recursive: true });
    writeFileSync(join(out2, 'jobs', 'filler', 'big.bin'), Buffer.alloc(1024 * 1024));
    const full = await serve({ outDir: out2, maxOutBytes: 512 * 1024 });
    const c2 = await HeedClient.connect(full.url, { token: full.token });
    const q = await c2.request({ type: 'generate', model, prompt: 'ms=1', steps: 1 });
    assert.equal(code(q), 'quota_exceeded', message(q));
    assert.match(message(q), /--keep-jobs|--max-out-mb/);
    await c2.close();
  });

  it('12: unauthenticated sockets are closed at the auth deadline, connections are capped, refusals are logged sparingly', async () => {
    const root = join(dir, 'conn');
    const lines: string[] = [];
    // A short deadline on its own server (a loaded machine may take longer than that to complete a real handshake).
    const quick = await serve({ outDir: join(root, 'out1'), authDeadlineMs: 300 });
    const { port } = new URL(quick.url.replace('ws:', 'http:'));
    // An idle socket that never sends a request, and one that stops halfway through its headers.
    const idle = connect(Number(port), '127.0.0.1');
    const partial = connect(Number(port), '127.0.0.1', () => partial.write('GET / HTTP/1.1\r\nHost: x\r\n'));
    const closed = (s: Socket): Promise<void> => new Promise((r) => s.once('close', () => r()));
    idle.on('error', () => undefined);
    partial.on('error', () => undefined);
    await Promise.all([closed(idle), closed(partial)]);
    const server = await serve({ outDir: join(root, 'out2'), maxConnections: 4, log: (m) => lines.push(m) });
    // Cap: four authenticated clients fit; a fifth connection is refused with 503 and the reason.
    const clients = [];
    for (let i = 0; i < 4; i++) clients.push(await HeedClient.connect(server.url, { token: server.token }));
    await assert.rejects(HeedClient.connect(server.url, { token: server.token }), (e: Error & { status?: number; body?: string }) => {
      assert.equal(e.status, 503);
      assert.match(e.body ?? '', /too many connections.*--max-connections/);
      return true;
    });
    for (const c of clients) await c.close();
    await until(() => (server as unknown as { connections: Set<unknown> }).connections.size === 0, 'the clients to go', 500);
    // Forty refused connections in a burst: a few log lines and a count of the rest, not forty lines.
    const before = lines.length;
    for (let i = 0; i < 40; i++) {
      await assert.rejects(HeedClient.connect(server.url, { token: 'not-the-token-not-the-token' }), /401/);
    }
    const refusedLines = lines.slice(before).filter((l) => /refused/.test(l));
    assert.ok(refusedLines.length <= 6, `${refusedLines.length} log lines for 40 refused connections`);
    // The server still serves.
    const ok = await HeedClient.connect(server.url, { token: server.token });
    assert.equal((await ok.request({ type: 'status' })).terminal.type, 'result');
    await ok.close();
  });

  it('10: scheduler names such as constructor/__proto__/toString are unknown names → invalid_input on field scheduler', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      let thrown: unknown;
      try {
        createScheduler(name, { _class_name: 'DDIMScheduler' });
      } catch (e) {
        thrown = e;
      }
      assert.ok(thrown instanceof Error && thrown.name === 'SchedulerConfigError', `${name}: ${String(thrown)}`);
      const mapped = classifyEngineError(thrown);
      assert.ok(mapped instanceof ProtocolError, name);
      assert.deepEqual([mapped.code, mapped.field], ['invalid_input', 'scheduler'], name);
      assert.match(mapped.message, /unknown scheduler.*valid names: pndm/);
    }
    assert.equal(createScheduler('ddim', {}).constructor.name.length > 0, true, 'real names still work');
  });

  it('10: file names derived from prompt words are bounded and stay distinct', () => {
    const long = 'a'.repeat(300);
    const stem = wordFileStem(long);
    assert.ok(Buffer.byteLength(stem) <= WORD_STEM_MAX_BYTES, `${Buffer.byteLength(stem)} bytes`);
    assert.notEqual(wordFileStem(long + 'b'), stem, 'two long words with one beginning get different names');
    const wide = 'ü'.repeat(200); // 2 bytes each: cut on a character boundary
    assert.ok(Buffer.byteLength(wordFileStem(wide)) <= WORD_STEM_MAX_BYTES);
    assert.ok(!wordFileStem(wide).includes('\uFFFD'));
    assert.equal(wordFileStem('Cat'), 'cat', 'short words are unchanged');
    assert.equal(wordFileStem('a/b..c'), 'a_b_c');
  });
});
