// The server's connection layer against real ws clients on 127.0.0.1: authentication, the healthz endpoint, the
// server.json handshake file, and every kind of bad input (each gets its documented error and the server keeps
// serving). Jobs here use the test runner (test/server-fake-runner.ts); the real engine is in server-engine.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeedClient } from '../engine/server/client.js';
import { startServer, type HeedServer } from '../engine/server/server.js';
import { describeIssues, GenerateRequest, PROTOCOL_VERSION, Request, encodeBinaryFrame, decodeBinaryFrame } from '../engine/protocol/index.js';
import { isLoopbackHost, tokenMatches } from '../engine/server/auth.js';
import { requireReference } from './helpers/reference.js';
import { latentPreview, latentsToRgb } from '../engine/server/preview.js';
import sharp from 'sharp';

const FAKE_RUNNER = new URL('./server-fake-runner.js', import.meta.url).href;

describe('server: protocol, auth and bad input', function () {
  let server: HeedServer;
  let dir: string;
  let modelsRoot: string;
  let outside: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heed-server-'));
    modelsRoot = join(dir, 'models');
    outside = join(dir, 'outside');
    mkdirSync(join(modelsRoot, 'fake-sd', 'unet'), { recursive: true });
    writeFileSync(join(modelsRoot, 'fake-sd', 'model_index.json'), '{}');
    mkdirSync(join(outside, 'secret-sd', 'unet'), { recursive: true });
    writeFileSync(join(outside, 'secret-sd', 'model_index.json'), '{}');
    // A symlink inside the root that points outside: realpath containment must refuse it.
    symlinkSync(join(outside, 'secret-sd'), join(modelsRoot, 'sneaky'));
    server = await startServer({ port: 0, modelRoots: [modelsRoot], outDir: join(dir, 'out'), runnerModule: FAKE_RUNNER, log: () => undefined });
    await server.pool.whenReady();
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** After any bad input, a fresh exchange on a fresh connection must still work. */
  async function assertStillServing(): Promise<void> {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const r = await c.request({ type: 'status' });
    assert.equal(r.terminal.type, 'result');
    await c.close();
  }

  it('writes server.json (mode 0600) with url, token and pid', () => {
    const file = join(dir, 'out', 'server.json');
    const info = JSON.parse(readFileSync(file, 'utf8')) as { url: string; token: string; pid: number };
    assert.equal(info.url, server.url);
    assert.equal(info.token, server.token);
    assert.equal(info.pid, process.pid);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(server.token.length >= 40, 'a generated token carries 256 bits');
  });

  it('answers GET /healthz without a token', async () => {
    const res = await fetch(server.url.replace('ws:', 'http:') + 'healthz');
    assert.equal(res.status, 200);
    const body = (await res.json()) as { ok: boolean; protocol: string };
    assert.deepEqual([body.ok, body.protocol], [true, PROTOCOL_VERSION]);
  });

  it('refuses a connection without a token: HTTP 401 with the reason', async () => {
    await assert.rejects(HeedClient.connect(server.url, {}), (e: Error & { status?: number; body?: string }) => {
      assert.equal(e.status, 401);
      assert.match(e.body ?? '', /no token: send "Authorization: Bearer <token>"/);
      return true;
    });
    await assertStillServing();
  });

  it('refuses a bad token (header or query), accepts the right one in the query', async () => {
    for (const tokenInQuery of [false, true]) {
      await assert.rejects(HeedClient.connect(server.url, { token: 'x'.repeat(43), tokenInQuery }), (e: Error & { status?: number; body?: string }) => {
        assert.equal(e.status, 401);
        assert.match(e.body ?? '', /invalid token/);
        return true;
      });
    }
    const c = await HeedClient.connect(server.url, { token: server.token, tokenInQuery: true });
    await c.close();
    await assertStillServing();
  });

  it('requires hello first and checks the protocol version', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token, noHello: true });
    const r1 = await c.request({ type: 'status' });
    assert.equal(r1.terminal.type, 'error');
    assert.equal(r1.terminal.type === 'error' && r1.terminal.code, 'hello_required');
    const r2 = await c.request({ type: 'hello', protocols: ['heed/0'] });
    assert.equal(r2.terminal.type === 'error' && r2.terminal.code, 'unsupported_protocol');
    const r3 = await c.request({ type: 'hello', protocols: ['heed/0', PROTOCOL_VERSION] });
    assert.equal(r3.terminal.type, 'result');
    assert.equal(r3.terminal.type === 'result' && r3.terminal.result.kind === 'hello' && r3.terminal.result.protocol, PROTOCOL_VERSION);
    await c.close();
  });

  it('malformed JSON → bad_json; the connection stays usable', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    c.sendRaw('{"type": "status", "id": ');
    const e = await c.nextStray();
    assert.equal(e.type, 'error');
    assert.equal(e.type === 'error' && e.code, 'bad_json');
    c.sendRaw('[1,2]');
    const e2 = await c.nextStray();
    assert.equal(e2.type === 'error' && e2.code, 'invalid_message');
    c.sendRaw(Buffer.from([1, 2, 3]), true);
    const e3 = await c.nextStray();
    assert.equal(e3.type === 'error' && e3.code, 'binary_not_supported');
    const r = await c.request({ type: 'status' });
    assert.equal(r.terminal.type, 'result');
    await c.close();
  });

  it('unknown message type → unknown_type naming the known ones', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const r = await c.request({ type: 'transmogrify' });
    assert.equal(r.terminal.type, 'error');
    if (r.terminal.type !== 'error') return;
    assert.equal(r.terminal.code, 'unknown_type');
    assert.equal(r.terminal.field, 'type');
    assert.match(r.terminal.message, /understands hello, tokenize, generate/);
    await c.close();
  });

  it('wrong field types, unknown fields and bad values → invalid_message naming the field', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const cases: Array<[{ type: string; [k: string]: unknown }, string, RegExp]> = [
      [{ type: 'generate', model: 'fake-sd', prompt: 42 }, 'prompt', /expected string/],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', steps: 'ten' }, 'steps', /expected number, received string/],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', steps: 2.5 }, 'steps', /expected int/],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', width: 100 }, 'width', /multiple of 8/],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', colour: 'red' }, 'colour', /unknown field "colour"/],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', excite: { subjects: [] } }, 'excite.subjects', /too small|>=1/i],
      [{ type: 'generate', prompt: 'a' }, 'model', /expected string/],
      [{ type: 'cancel' }, 'target', /expected string/],
    ];
    for (const [msg, field, re] of cases) {
      const r = await c.request(msg);
      assert.equal(r.terminal.type, 'error', JSON.stringify(msg));
      if (r.terminal.type !== 'error') continue;
      assert.equal(r.terminal.code, 'invalid_message', JSON.stringify(msg));
      assert.equal(r.terminal.field, field, JSON.stringify(msg));
      assert.match(r.terminal.message, re);
    }
    await c.close();
    await assertStillServing();
  });

  it('a 100 MB message: the connection is closed with 1009 (Message Too Big); others keep working', async () => {
    const other = await HeedClient.connect(server.url, { token: server.token });
    const c = await HeedClient.connect(server.url, { token: server.token });
    const big = JSON.stringify({ type: 'tokenize', id: 'big', model: 'fake-sd', text: 'a'.repeat(100 * 1024 * 1024) });
    c.sendRaw(big);
    const closed = await c.whenClosed();
    assert.equal(closed.code, 1009);
    const r = await other.request({ type: 'status' });
    assert.equal(r.terminal.type, 'result');
    await other.close();
    await assertStillServing();
  });

  it('a model outside --models (also via a symlink) → model_not_allowed; a missing one → model_not_found', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const cases: Array<[string, string]> = [
      [join(outside, 'secret-sd'), 'model_not_allowed'],
      [join(modelsRoot, '..', 'outside', 'secret-sd'), 'model_not_allowed'],
      ['sneaky', 'model_not_allowed'],
      ['no-such-model', 'model_not_found'],
      [join(modelsRoot, 'missing'), 'model_not_found'],
    ];
    for (const [model, code] of cases) {
      for (const type of ['generate', 'tokenize']) {
        const r = await c.request(type === 'generate' ? { type, model, prompt: 'a cat' } : { type, model, text: 'a cat' });
        assert.equal(r.terminal.type, 'error', model);
        if (r.terminal.type !== 'error') continue;
        assert.equal(r.terminal.code, code, `${type} ${model}: ${r.terminal.message}`);
        assert.equal(r.terminal.field, 'model');
        assert.ok(!r.events.some((e) => e.type === 'accepted'), 'refused before queueing');
      }
    }
    await c.close();
    await assertStillServing();
  });

  it('latents and image paths outside the allowed folders → file_not_allowed; missing → file_not_found', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const secret = join(outside, 'secret-sd', 'model_index.json');
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', latents: secret }, 'file_not_allowed', 'latents'],
      [{ type: 'generate', model: 'fake-sd', prompt: 'a', latents: join(modelsRoot, 'nope.npy') }, 'file_not_found', 'latents'],
      [{ type: 'explain', model: 'fake-sd', image: { path: secret } }, 'file_not_allowed', 'image.path'],
      [{ type: 'explain', model: 'fake-sd', image: { path: '/etc/passwd' } }, 'file_not_allowed', 'image.path'],
    ];
    for (const [msg, code, field] of cases) {
      const r = await c.request({ type: msg.type as string, ...msg });
      assert.equal(r.terminal.type === 'error' && r.terminal.code, code, JSON.stringify(msg));
      assert.equal(r.terminal.type === 'error' && r.terminal.field, field);
    }
    await c.close();
  });

  it('listModels lists the model folders inside --models only', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const r = await c.request({ type: 'listModels' });
    assert.equal(r.terminal.type, 'result');
    if (r.terminal.type !== 'result' || r.terminal.result.kind !== 'listModels') return;
    assert.deepEqual(
      r.terminal.result.models.map((m) => [m.name, m.kind]),
      [['fake-sd', 'stable-diffusion']],
    );
    await c.close();
  });

  it('fetch streams a job file as a binary frame, and refuses paths outside the output folder', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const gen = await c.request({ type: 'generate', model: 'fake-sd', prompt: 'fetch me', steps: 1 });
    assert.equal(gen.terminal.type, 'result');
    if (gen.terminal.type !== 'result' || gen.terminal.result.kind !== 'generate') return;
    const file = gen.terminal.result.image.file.path;
    const f = await c.request({ type: 'fetch', path: file });
    assert.equal(f.terminal.type, 'result');
    assert.ok(f.binary);
    assert.equal(Buffer.from(f.binary.payload).toString(), readFileSync(file, 'utf8'));
    assert.equal(f.binary.header.path, file);
    const bad = await c.request({ type: 'fetch', path: join(outside, 'secret-sd', 'model_index.json') });
    assert.equal(bad.terminal.type === 'error' && bad.terminal.code, 'file_not_allowed');
    await c.close();
  });

  it('refuses a non-loopback bind without a token the user chose', async () => {
    await assert.rejects(startServer({ host: '0.0.0.0', port: 0, infoFile: false, outDir: join(dir, 'o2'), runnerModule: FAKE_RUNNER }), /refusing to listen on 0\.0\.0\.0 without a token/);
  });
});

describe('server: protocol module', () => {
  it('parses a full generate request and rejects unknown fields at every level', () => {
    const ok = GenerateRequest.safeParse({
      type: 'generate', id: 'a', model: 'm', prompt: 'a cat and a frog', steps: 2, seed: 1234, width: 64, height: 64,
      maps: { perStep: true }, excite: { subjects: ['cat', 4], thresholds: { '0': 0.05, '10': 0.5 } }, preview: { every: 1 },
    });
    assert.ok(ok.success);
    const bad = Request.safeParse({ type: 'generate', id: 'a', model: 'm', prompt: 'p', excite: { subjects: ['cat'], extra: 1 } });
    assert.ok(!bad.success);
    assert.deepEqual(describeIssues(bad.error.issues).field, 'excite.extra');
  });

  it('binary frames round-trip', () => {
    const payload = new Uint8Array([0, 1, 2, 250, 255]);
    const frame = encodeBinaryFrame({ id: 'x', path: '/p/a.npy', bytes: 5, mime: 'application/octet-stream' }, payload);
    const back = decodeBinaryFrame(frame);
    assert.deepEqual([...back.payload], [...payload]);
    assert.equal(back.header.path, '/p/a.npy');
  });

  it('auth helpers', () => {
    assert.ok(tokenMatches('abc', 'abc'));
    assert.ok(!tokenMatches('abc', 'abd'));
    assert.ok(isLoopbackHost('127.0.0.1') && isLoopbackHost('::1') && isLoopbackHost('localhost') && isLoopbackHost('127.5.0.1'));
    assert.ok(!isLoopbackHost('0.0.0.0') && !isLoopbackHost('192.168.1.2') && !isLoopbackHost('::'));
  });
});

describe('server: heartbeat', () => {
  it('drops a connection that stops answering pings, and keeps serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-server-hb-'));
    const server = await startServer({ port: 0, outDir: dir, heartbeatMs: 100, runnerModule: FAKE_RUNNER, log: () => undefined });
    try {
      const silent = await HeedClient.connect(server.url, { token: server.token });
      // ws answers pings automatically; pausing the socket makes the client go silent like a dead peer.
      (silent.ws as unknown as { _socket: { pause(): void } })._socket.pause();
      const healthy = await HeedClient.connect(server.url, { token: server.token });
      await new Promise((r) => setTimeout(r, 500));
      const s = await healthy.request({ type: 'status' });
      assert.ok(s.terminal.type === 'result' && s.terminal.result.kind === 'status');
      assert.equal(s.terminal.result.kind === 'status' && s.terminal.result.connections, 1, 'only the answering connection is left');
      await healthy.close();
      silent.ws.terminate();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('server: tokenizer thread', () => {
  it('a real CLIP tokenizer loads off the main thread: other requests are answered meanwhile; same ids as the library', async function () {
    const ref = requireReference(this);
    const tokDir = join(ref, 'sd-tiny-v1', 'onnx');
    const dir = mkdtempSync(join(tmpdir(), 'heed-server-tok-'));
    const server = await startServer({ port: 0, outDir: dir, runnerModule: FAKE_RUNNER, log: () => undefined });
    try {
      const a = await HeedClient.connect(server.url, { token: server.token });
      const b = await HeedClient.connect(server.url, { token: server.token });
      const order: string[] = [];
      const tok = a.request({ type: 'tokenize', model: tokDir, text: 'a cat and a frog' }).then((r) => (order.push('tokenize'), r));
      const status = await b.request({ type: 'status' }).then((r) => (order.push('status'), r));
      const x = await tok;
      assert.equal(status.terminal.type, 'result');
      assert.deepEqual(order, ['status', 'tokenize'], 'status is answered while the tokenizer is still loading');
      assert.ok(x.terminal.type === 'result' && x.terminal.result.kind === 'tokenize');
      if (x.terminal.type === 'result' && x.terminal.result.kind === 'tokenize') {
        // The reference README's tokenization of this prompt (HF CLIPTokenizer = openai SimpleTokenizer).
        assert.deepEqual(x.terminal.result.ids.slice(0, 8), [49406, 320, 2368, 537, 320, 11438, 49407, 49407]);
      }
      const bad = await a.request({ type: 'tokenize', model: dir, text: 'a cat' });
      assert.equal(bad.terminal.type === 'error' && bad.terminal.code, 'model_invalid');
      await a.close();
      await b.close();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('server: latent previews', () => {
  it('maps SD latents to RGB with the fixed projection (hand-computed pixels) and encodes a nearest-upscaled PNG', async () => {
    // 1×4×1×2 latents: pixel 0 = channel 0 only (1.0), pixel 1 = channel 3 only (−1.0).
    const lat = new Float32Array([1, 0, 0, 0, 0, 0, 0, -1]);
    const rgb = latentsToRgb(lat, 4, 1, 2)!;
    // (v + 1) · 127.5 for v = (0.3512, 0.2297, 0.3227) and v = −(−0.212, −0.2616, −0.7177) = (0.212, 0.2616, 0.7177).
    assert.deepEqual([...rgb], [172, 157, 169, 155, 161, 219]);
    assert.equal(latentsToRgb(new Float32Array(6), 3, 1, 2), undefined, 'no preview for other channel counts');
    const p = await latentPreview(lat, [1, 4, 1, 2], 64);
    assert.ok(p);
    assert.deepEqual([p.width, p.height], [64, 32]);
    const { data, info } = await sharp(Buffer.from(p.png, 'base64')).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [64, 32]);
    assert.deepEqual([...data.subarray(0, 3)], [172, 157, 169]);
    assert.deepEqual([...data.subarray(63 * 3, 64 * 3)], [155, 161, 219]);
  });
});
