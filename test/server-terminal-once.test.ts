// Issue 16 item 6: an outgoing event that fails the schema (NaN from a degenerate setting) is answered with an
// `error`; that error must be the request's only terminal event — the job is stopped, its later result dropped.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { startServer, type HeedServer } from '../engine/server/server.js';
import { PROTOCOL_VERSION } from '../engine/protocol/index.js';

const FAKE_RUNNER = new URL('./server-fake-runner.js', import.meta.url).href;

async function until(pred: () => boolean, what: string, tries = 2000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('server: exactly one terminal event per request (issue 16 item 6)', function () {
  this.timeout(60_000);
  let dir: string;
  let server: HeedServer | undefined;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'heed-terminal-')); });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a progress event with NaN ends the request with one error, and the job result is never sent', async () => {
    const model = join(dir, 'm');
    mkdirSync(join(model, 'unet'), { recursive: true });
    writeFileSync(join(model, 'model_index.json'), '{}');
    server = await startServer({ port: 0, runnerModule: FAKE_RUNNER, log: () => undefined, outDir: join(dir, 'out') });
    const ws = new WebSocket(server.url, { headers: { authorization: `Bearer ${server.token}` } });
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const events: { type: string; id?: string; jobId?: string; code?: string }[] = [];
    ws.on('message', (data, isBinary) => { if (!isBinary) events.push(JSON.parse(String(data))); });
    ws.send(JSON.stringify({ type: 'hello', id: 'h', protocols: [PROTOCOL_VERSION] }));
    ws.send(JSON.stringify({ type: 'generate', id: 'g', model, prompt: 'ms=1 nan-at=2', steps: 6 }));
    const terminals = () => events.filter((e) => e.id === 'g' && (e.type === 'result' || e.type === 'error'));
    await until(() => terminals().length > 0, 'the first terminal event');
    const jobId = events.find((e) => e.id === 'g' && e.type === 'accepted')?.jobId;
    assert.ok(jobId, 'the job was accepted');
    await until(() => server!.pool.jobState(jobId) === undefined, 'the job to end');
    // A round trip after the job ended: anything the job still sent has arrived before this answer.
    ws.send(JSON.stringify({ type: 'status', id: 's' }));
    await until(() => events.some((e) => e.id === 's'), 'the status answer');
    assert.deepEqual(terminals().map((e) => e.type), ['error'], JSON.stringify(events));
    assert.equal(terminals()[0]!.code, 'internal');
    ws.close();
  });
});
