// The extension's protocol client (extension/src/core/client.ts) against a real `heed serve` server on 127.0.0.1
// running the real engine on the tiny models. Checks what the extension relies on: hello, tokenize matching the
// engine's own tokenizer (and the editor findings computed from it), a generate with progress and readable maps,
// cancel, errors carried with their protocol code, a refused token, and the close notification.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { EngineError, HeedClient, withToken, type WebSocketLike } from '../extension/src/core/client.js';
import { parseNpyFloat } from '../extension/src/core/npy.js';
import { parsePromptFile } from '../extension/src/core/promptFile.js';
import { hoverMarkdown, overflowFinding, wordAtOffset, wordAttentions } from '../extension/src/core/tokens.js';
import { ClipTokenizer } from '../engine/text/tokenizer.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { startServer, type HeedServer } from '../engine/server/server.js';
import type { ProgressEvent } from '../engine/protocol/index.js';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';

const factory = (url: string): WebSocketLike => new WebSocket(url) as unknown as WebSocketLike;

describe('extension: protocol client against a real engine server', function () {
  let server: HeedServer;
  let models: TinyModels;
  let dir: string;
  let client: HeedClient;

  before(async () => {
    models = await ensureTinyModels();
    dir = mkdtempSync(join(tmpdir(), 'heed-ext-client-'));
    server = await startServer({ port: 0, workers: 1, outDir: join(dir, 'out'), log: () => undefined });
    client = new HeedClient(factory);
    await client.connect(server.url, server.token, 'extension-test');
  });

  after(async () => {
    client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says hello and reports the server and its output folder', () => {
    assert.ok(client.connected);
    assert.equal(client.hello?.protocol, 'heed/1');
    assert.equal(client.hello?.outDir, server.info.outDir);
  });

  it('tokenizes exactly like the engine tokenizer, and the editor finds words, tokens and the cut-off from it', async () => {
    const text = 'a cat and a frog on a bench';
    const tok = await client.tokenize(models.sd, text);
    const direct = (await ClipTokenizer.fromFolder(join(models.sd, 'tokenizer'))).encode(text);
    assert.deepEqual(tok.ids, direct.ids);
    assert.deepEqual(tok.tokens, direct.tokens);
    const frog = wordAtOffset(tok, text.indexOf('frog') + 1)!;
    assert.equal(frog.word, 'frog');
    const md = hoverMarkdown(tok, frog);
    for (const i of frog.tokenIndices) assert.ok(md.includes(`| ${i} |`) && md.includes(String(tok.ids[i])), md);

    // A prompt longer than the window: the finding starts at the first word the engine dropped.
    const long = Array.from({ length: 90 }, (_, i) => `word${i % 7}`).join(' ');
    const block = parsePromptFile(long).prompts[0]!;
    const ltok = await client.tokenize(models.sd, block.text);
    assert.equal(ltok.truncated, true);
    const o = overflowFinding(block, ltok)!;
    const firstDropped = ltok.words.find((w) => w.tokenIndices.length === 0)!;
    assert.ok(o.textStart <= firstDropped.start, 'the dimmed part includes every dropped word');
    const kept = ltok.words.filter((w) => w.start < o.textStart);
    assert.ok(kept.every((w) => w.tokenIndices.every((i) => i <= ltok.maxLength - 2)), 'nothing before the cut is past the window');
  });

  it('generates with progress per step and maps that place on the prompt words', async () => {
    const progress: ProgressEvent[] = [];
    const text = 'a cat and a frog';
    const job = client.generate({ model: models.sd, prompt: text, steps: 3, seed: 7, width: 128, height: 128, maps: true, preview: { every: 1 } }, { onProgress: (p) => progress.push(p) });
    const r = await job.result;
    const steps = progress.filter((p) => p.phase === 'denoising').map((p) => p.step);
    for (const s of [1, 2, 3]) assert.ok(steps.includes(s), `progress for step ${s}: ${steps.join(',')}`);
    assert.ok(progress.some((p) => p.preview), 'live previews arrive');
    assert.deepEqual(r.maps.map((m) => m.word), ['a', 'cat', 'and', 'frog']);
    // The .npy the panel reads parses to the same values the engine's own reader sees.
    const m = r.maps[1]!;
    const mine = parseNpyFloat(new Uint8Array(readFileSync(m.npy!.path)));
    const ref = readNpyFloat32(m.npy!.path);
    assert.deepEqual(mine.shape, ref.shape);
    assert.deepEqual(Array.from(mine.data), Array.from(ref.data));
    const block = parsePromptFile(text).prompts[0]!;
    const att = wordAttentions(block, r.maps, await client.tokenize(models.sd, text));
    assert.deepEqual(att.map((a) => [a.word, a.textStart]), [['a', 0], ['cat', 2], ['and', 6], ['frog', 12]]);
    assert.ok(att.every((a) => a.relative > 0 && a.relative <= 1));
    // fetch (what a remote client uses) returns the same bytes as the file.
    const bytes = await client.fetchFile(r.image.file.path);
    assert.deepEqual(Buffer.from(bytes), readFileSync(r.image.file.path));
  });

  it('cancels a running job and carries engine errors with their protocol code', async () => {
    let cancelled = false;
    const job = client.generate({ model: models.sd, prompt: 'a frog', steps: 40, seed: 1, width: 128, height: 128 }, {
      onProgress: (p) => {
        if (!cancelled && p.phase === 'denoising' && p.step >= 1) {
          cancelled = true;
          void client.cancel(job.id);
        }
      },
    });
    await assert.rejects(job.result, (e: EngineError) => e instanceof EngineError && e.code === 'cancelled');
    await assert.rejects(client.tokenize(join(dir, 'no-such-model'), 'a cat'), (e: EngineError) => e.code === 'model_not_found' && /no-such-model/.test(e.message));
    const next = await client.generate({ model: models.sd, prompt: 'a frog', steps: 1, seed: 1, width: 128, height: 128 }).result;
    assert.equal(next.kind, 'generate', 'the engine serves the next job after a cancel');
  });

  it('is refused with a reason for a wrong token, and tells when the server goes away', async () => {
    const bad = new HeedClient(factory);
    await assert.rejects(bad.connect(server.url, 'wrong-token', 'x', 5000), (e: EngineError) => e.code === 'connect_failed');
    assert.match(withToken('ws://127.0.0.1:1/', 'a b'), /token=a\+b|token=a%20b/);

    const other = await startServer({ port: 0, workers: 1, outDir: join(dir, 'out2'), log: () => undefined });
    const c = new HeedClient(factory);
    await c.connect(other.url, other.token);
    const closed = new Promise<string>((resolve) => c.onClose(resolve));
    await other.close();
    assert.match(await closed, /shutting down|closed/);
    assert.equal(c.connected, false);
    await assert.rejects(c.status(), (e: EngineError) => e.code === 'connection_lost');
  });
});
