// The server with the real engine on the tiny built models (models/cache.ts): what a client gets over WebSocket must
// be what the engine gives when called directly / through the CLI — same image for the same seed, same maps, same
// explanation files — plus progress for every step, cancel, two clients and a killed worker on real jobs.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { HeedClient, type Exchange } from '../engine/server/client.js';
import { startServer, type HeedServer } from '../engine/server/server.js';
import type { ServerEvent, GenerateResult, ExplainResult } from '../engine/protocol/index.js';
import { explainImage, type ExplainOptions } from '../engine/explain/index.js';
import { explainJson, writeExplainOutputs } from '../engine/jobs/explain-outputs.js';
import { readNpy, readNpyFloat32 } from '../engine/io/npy.js';

function progressSteps(x: Exchange): number[] {
  return x.events.flatMap((e) => (e.type === 'progress' && e.phase === 'denoising' ? [e.step] : []));
}

/** 1..total of the denoising events (PNDM runs steps + 1 UNet calls, so the total comes from the events). */
function expectedSteps(x: Exchange): number[] {
  const p = x.events.find((e) => e.type === 'progress' && e.phase === 'denoising');
  const total = p && p.type === 'progress' ? p.total : 0;
  return Array.from({ length: total }, (_, i) => i + 1);
}

function generateResult(x: Exchange): GenerateResult {
  if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'generate') throw new Error(`expected a generate result, got ${JSON.stringify(x.terminal).slice(0, 500)}`);
  return x.terminal.result;
}

async function pixels(path: string): Promise<Buffer> {
  return (await sharp(path).raw().toBuffer());
}

describe('server: real engine on the tiny models', function () {
  let models: TinyModels;
  let server: HeedServer;
  let dir: string;
  let image: string;

  before(async function () {
    models = await ensureTinyModels();
    dir = mkdtempSync(join(tmpdir(), 'heed-server-engine-'));
    // A small deterministic test image (no fixture file needed): a gradient with a bright square.
    image = join(dir, 'input.png');
    const w = 48, h = 40;
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const sq = x > 10 && x < 24 && y > 8 && y < 20;
      px[i] = sq ? 250 : (x * 5) % 256; px[i + 1] = sq ? 240 : (y * 6) % 256; px[i + 2] = 90;
    }
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(image);
    server = await startServer({ port: 0, workers: 2, outDir: join(dir, 'out'), modelRoots: [join(models.sd, '..'), dir], log: () => undefined });
    await server.pool.whenReady();
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('generate streams progress for every step and returns the image the pipeline gives for the same seed', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 4, seed: 1234, width: 128, height: 128, maps: true, preview: { every: 2 } });
    const r = generateResult(x);
    assert.ok(expectedSteps(x).length >= 4);
    assert.deepEqual(progressSteps(x), expectedSteps(x), 'one progress event per UNet step, in order');
    const total = expectedSteps(x).length;
    const previews = x.events.filter((e) => e.type === 'progress' && e.preview);
    assert.equal(previews.length, Math.floor(total / 2) + (total % 2), 'a preview every 2 steps and at the last');
    for (const e of x.events) if (e.type === 'progress' && e.phase === 'denoising') assert.ok(e.etaMs !== undefined && e.etaMs >= 0);

    const { StableDiffusionPipeline } = await import('../engine/diffusion/pipeline.js');
    const direct = await StableDiffusionPipeline.load(models.sd, { threads: 2 });
    try {
      const g = await direct.generate({ prompt: 'a cat and a frog', steps: 4, seed: 1234, width: 128, height: 128, maps: true });
      assert.equal(r.image.width, g.image.width);
      const px = await pixels(r.image.file.path);
      let maxDiff = 0;
      for (let i = 0; i < px.length; i++) maxDiff = Math.max(maxDiff, Math.abs(px[i]! - Math.round(Math.min(1, Math.max(0, g.image.data[i]!)) * 255)));
      assert.ok(maxDiff <= 1, `image pixels differ by up to ${maxDiff} from the direct pipeline run`);
      // One map per distinct word, each the word's DAAM map.
      assert.deepEqual(r.maps.map((m) => m.word), ['a', 'cat', 'and', 'frog']);
      const global = g.attention!.daamGlobal();
      for (const m of r.maps) {
        const served = readNpyFloat32(m.npy!.path);
        const expected = g.attention!.wordMap(m.tokenIndices, global);
        assert.equal(served.data.length, expected.length);
        for (let i = 0; i < expected.length; i++) assert.equal(served.data[i], expected[i]);
      }
    } finally {
      await direct.dispose();
    }
    const files = readdirSync(r.outDir);
    for (const f of ['image.png', 'report.json', 'maps.png', 'request.json', 'result.json', 'maps']) assert.ok(files.includes(f), `${f} in the job folder`);
    await c.close();
  });

  it('generate gives the same files as `heed generate` for the same seed (image, maps, grid, report)', async () => {
    const cliOut = join(dir, 'cli-out');
    const main = fileURLToPath(new URL('../engine/cli/main.js', import.meta.url));
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, [main, 'generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '4', '--seed', '1234', '--size', '128x128', '--maps', '--quiet', '--out', cliOut],
        (err, _stdout, stderr) => (err ? reject(new Error(`heed generate failed: ${stderr}`)) : resolve()));
    });
    const c = await HeedClient.connect(server.url, { token: server.token });
    const r = generateResult(await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 4, seed: 1234, width: 128, height: 128, maps: true }));
    await c.close();
    const cliFiles = readdirSync(cliOut, { recursive: true }).map(String).filter((f) => f.includes('.')).sort();
    const served = r.files.map((f) => f.path.slice(r.outDir.length + 1)).sort();
    assert.deepEqual(served, cliFiles, 'the same set of files');
    for (const f of cliFiles) {
      if (f === 'report.json') continue;
      assert.ok(readFileSync(join(cliOut, f)).equals(readFileSync(join(r.outDir, f))), `${f} is byte-identical to the CLI's`);
    }
    const strip = (rep: Record<string, unknown>): Record<string, unknown> => {
      const { timingsMs: _t, model: _m, ...rest } = rep;
      return rest;
    };
    const cliReport = JSON.parse(readFileSync(join(cliOut, 'report.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(strip(r.report as Record<string, unknown>), strip(cliReport), 'report.json equal but for timings');
    assert.deepEqual(strip(JSON.parse(readFileSync(join(r.outDir, 'report.json'), 'utf8')) as Record<string, unknown>), strip(cliReport));
  });

  it('maps {perStep, perLayer}: each map lists its stacks, the result says what they hold, files as `heed generate --maps-per-*`', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const r = generateResult(await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 2, seed: 7, width: 128, height: 128, maps: { perStep: true, perLayer: true } }));
    await c.close();
    // 128² → latents 16x16, A&E grid 16 (diffusers' attn_res=(16, 16)); per layer: every cross-attention grid (16, 8, 4
    // and the mid block's 2).
    assert.deepEqual(r.stepMaps?.map((g) => [g.height, g.width, g.calls]), [[16, 16, 3]]);
    assert.deepEqual(r.layerMaps?.map((g) => [g.height, g.layers.length]), [[16, 5], [8, 5], [4, 5], [2, 1]]);
    const frog = r.maps.find((m) => m.word === 'frog');
    assert.ok(frog?.perStep && frog.perLayer);
    assert.deepEqual(readNpy(frog.perStep[0]!.npy.path).shape, [3, 16, 16]);
    assert.deepEqual(frog.perLayer.map((s) => readNpy(s.npy.path).shape), [[5, 16, 16], [5, 8, 8], [5, 4, 4], [1, 2, 2]]);
    for (const s of [...frog.perStep, ...frog.perLayer]) assert.ok(r.files.some((f) => f.path === s.npy.path), `${s.npy.path} is listed in files`);
    const rep = r.report as { stepMaps: unknown; layerMaps: unknown };
    assert.deepEqual([rep.stepMaps, rep.layerMaps], [r.stepMaps, r.layerMaps]);
    // The CLI's flags give the same per-step stack for the same seed.
    const cliOut = join(dir, 'cli-stacks');
    const main = fileURLToPath(new URL('../engine/cli/main.js', import.meta.url));
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, [main, 'generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '2', '--seed', '7', '--size', '128x128', '--maps-per-step', '--maps-per-layer', '--quiet', '--out', cliOut],
        (err, _stdout, stderr) => (err ? reject(new Error(`heed generate failed: ${stderr}`)) : resolve()));
    });
    assert.ok(readFileSync(join(cliOut, 'maps/steps/16x16/5-frog.npy')).equals(readFileSync(frog.perStep[0]!.npy.path)));
    assert.ok(readFileSync(join(cliOut, 'maps/layers/16x16/5-frog.npy')).equals(readFileSync(frog.perLayer[0]!.npy.path)));
  });

  it('Attend-and-Excite: progress carries the loss and subject scores; files equal `heed generate --excite` for the same seed', async () => {
    const cliOut = join(dir, 'cli-ae');
    const main = fileURLToPath(new URL('../engine/cli/main.js', import.meta.url));
    const args = ['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '3', '--seed', '7', '--size', '128x128', '--maps', '--excite', 'frog', '--quiet', '--out', cliOut];
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, [main, ...args], (err, _o, stderr) => (err ? reject(new Error(`heed generate --excite failed: ${stderr}`)) : resolve()));
    });
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 3, seed: 7, width: 128, height: 128, maps: true, excite: { subjects: ['frog'] } });
    const r = generateResult(x);
    const withLoss = x.events.filter((e) => e.type === 'progress' && e.phase === 'denoising' && e.loss !== undefined);
    assert.equal(withLoss.length, expectedSteps(x).length, 'every denoising step reports the A&E loss');
    for (const e of withLoss) if (e.type === 'progress') assert.ok(e.scores && typeof e.scores.frog === 'number' && Math.abs(e.loss! - Math.max(0, 1 - e.scores.frog)) < 1e-6);
    const exciteJson = JSON.parse(readFileSync(join(cliOut, 'excite.json'), 'utf8')) as Record<string, unknown>;
    const served = r.excite as Record<string, unknown>;
    for (const key of ['subjects', 'options', 'layers', 'timesteps', 'perStep', 'events', 'finalScores']) assert.deepEqual(served[key], exciteJson[key], `excite.json ${key}`);
    for (const f of ['image.png', 'excite_loss.png', 'maps.png']) {
      assert.ok(readFileSync(join(cliOut, f)).equals(readFileSync(join(r.outDir, f))), `${f} is byte-identical to the CLI's`);
    }
    const bad = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 2, width: 128, height: 128, excite: { subjects: ['dog'] } });
    assert.equal(bad.terminal.type === 'error' && bad.terminal.code, 'invalid_input');
    assert.equal(bad.terminal.type === 'error' && bad.terminal.field, 'excite.subjects');
    assert.match(bad.terminal.type === 'error' ? bad.terminal.message : '', /'dog' is not a word of the prompt/);
    await c.close();
  });

  it('cancel mid-generation → cancelled, the next job on the same model runs normally', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    let sent = false;
    const job = c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 30, seed: 1, width: 128, height: 128 }, (e) => {
      if (!sent && e.type === 'progress' && e.phase === 'denoising' && e.step === 2) {
        sent = true;
        void c.request({ type: 'cancel', target: job.id });
      }
    });
    const x = await job;
    assert.equal(x.terminal.type === 'error' && x.terminal.code, 'cancelled');
    assert.ok(progressSteps(x).length < 30);
    const next = await c.request({ type: 'generate', model: models.sd, prompt: 'a frog', steps: 2, seed: 2, width: 128, height: 128 });
    assert.deepEqual(progressSteps(next), expectedSteps(next));
    generateResult(next);
    await c.close();
  });

  it('two clients at once on different models: both complete, events only to the asker', async () => {
    const c1 = await HeedClient.connect(server.url, { token: server.token });
    const c2 = await HeedClient.connect(server.url, { token: server.token });
    const [x1, x2] = await Promise.all([
      c1.request({ type: 'generate', model: models.sd, prompt: 'a red cat', steps: 3, seed: 5, width: 128, height: 128 }),
      c2.request({ type: 'explain', model: models.vit, image: { path: image }, methods: ['rollout'] }),
    ]);
    generateResult(x1);
    assert.equal(x2.terminal.type === 'result' && x2.terminal.result.kind, 'explain');
    const j1 = (x1.events[0] as Extract<ServerEvent, { type: 'accepted' }>).jobId;
    const j2 = (x2.events[0] as Extract<ServerEvent, { type: 'accepted' }>).jobId;
    assert.ok(c1.all.every((e) => !('jobId' in e) || e.jobId === j1));
    assert.ok(c2.all.every((e) => !('jobId' in e) || e.jobId === j2));
    assert.ok(!c1.all.some((e) => e.id === x2.terminal.id && 'jobId' in e && e.jobId === j2));
    await c1.close();
    await c2.close();
  });

  it('a worker killed during a real job → worker_crashed; the server recovers and the next job succeeds', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    let killed = false;
    const x = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 20, seed: 3, width: 128, height: 128 }, (e) => {
      if (!killed && e.type === 'progress' && e.phase === 'denoising') {
        killed = true;
        void server.pool.terminateJobWorker(e.jobId);
      }
    });
    assert.equal(x.terminal.type === 'error' && x.terminal.code, 'worker_crashed');
    const next = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 2, seed: 3, width: 128, height: 128 });
    generateResult(next);
    await c.close();
  });

  it('Attend-and-Excite subjects stay the list the client sent: a comma inside a subject never splits it', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const base = { type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 2, seed: 3, width: 128, height: 128 } as const;
    // "cat, frog" is ONE subject; joined into "cat, frog" and split on commas it became two words of the prompt and
    // the job excited both. As one subject it is not a word of the prompt: the request's fault, said as such.
    const joined = await c.request({ ...base, excite: { subjects: ['cat, frog'] } });
    assert.equal(joined.terminal.type, 'error', `a subject with a comma must not run as two subjects: ${JSON.stringify(joined.terminal).slice(0, 300)}`);
    assert.equal(joined.terminal.type === 'error' && joined.terminal.code, 'invalid_input');
    assert.equal(joined.terminal.type === 'error' && joined.terminal.field, 'excite.subjects');
    assert.match(joined.terminal.type === 'error' ? joined.terminal.message : '', /'cat, frog' is not a word of the prompt/);
    // The same for a string of token positions: "2,4" is not the two positions 2 and 4.
    const positions = await c.request({ ...base, excite: { subjects: ['2,4'] } });
    assert.equal(positions.terminal.type === 'error' && positions.terminal.field, 'excite.subjects');
    // A list of words and positions runs as given, in order.
    const ok = generateResult(await c.request({ ...base, excite: { subjects: ['frog', 2] } }));
    const subjects = (ok.excite as { subjects: { word: string; tokenIndex: number }[] }).subjects;
    assert.deepEqual(subjects.map((s) => s.word), ['frog', '#2']);
    await c.close();
  });

  it('engine errors come back with their code and field', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const bad = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 2, width: 128, height: 128, scheduler: 'no-such-scheduler' });
    assert.equal(bad.terminal.type === 'error' && bad.terminal.code, 'invalid_input');
    assert.equal(bad.terminal.type === 'error' && bad.terminal.field, 'scheduler');
    const empty = await c.request({ type: 'generate', model: models.sd, prompt: '   ', steps: 2 });
    assert.equal(empty.terminal.type === 'error' && empty.terminal.code, 'invalid_input');
    const notModel = await c.request({ type: 'generate', model: dir, prompt: 'a cat', steps: 2 });
    assert.equal(notModel.terminal.type === 'error' && notModel.terminal.code, 'model_invalid');
    assert.equal(notModel.terminal.type === 'error' && notModel.terminal.field, 'model');
    // A latents file that is not a .npy: the request's `latents` (the CLI exits 2 for the same file: cli-generate).
    const badLatents = join(dir, 'not-latents.npy');
    writeFileSync(badLatents, 'this is not a numpy file');
    const latents = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 2, width: 128, height: 128, latents: badLatents });
    assert.deepEqual(latents.terminal.type === 'error' ? [latents.terminal.code, latents.terminal.field] : latents.terminal, ['invalid_input', 'latents']);
    await c.close();
  });

  it('tokenize answers with the model tokenizer and its word alignment', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'tokenize', model: models.sd, text: 'a cat and a frog' });
    assert.equal(x.terminal.type, 'result');
    if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'tokenize') return;
    const t = x.terminal.result;
    assert.deepEqual(t.words.map((w) => w.word), ['a', 'cat', 'and', 'a', 'frog']);
    assert.equal(t.ids.length, t.maxLength);
    assert.equal(t.length, 7);
    await c.close();
  });

  for (const which of ['vit', 'clip'] as const) {
    it(`explain (${which}) returns the same explanation and files as the engine called directly`, async () => {
      const c = await HeedClient.connect(server.url, { token: server.token });
      const texts = which === 'clip' ? ['a bright square', 'a dark room'] : undefined;
      const x = await c.request({ type: 'explain', model: models[which], image: { path: image }, ...(texts ? { texts } : {}) });
      assert.equal(x.terminal.type, 'result', JSON.stringify(x.terminal).slice(0, 300));
      if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'explain') return;
      const served: ExplainResult = x.terminal.result;
      const direct = await explainImage(models[which], image, texts ? { texts } : {});
      const expected = explainJson(direct) as Record<string, unknown>;
      const got = served.explain as Record<string, unknown>;
      for (const key of ['model', 'image', 'classes', 'similarities', 'methods', 'skipped', 'notes']) {
        assert.deepEqual(got[key], JSON.parse(JSON.stringify(expected[key] ?? null)) ?? undefined, key);
      }
      const ref = join(dir, `direct-${which}`);
      const written = await writeExplainOutputs(direct, ref);
      const servedNames = served.files.map((f) => basename(f.path)).sort();
      assert.deepEqual(servedNames, [...written.files].sort());
      for (const f of written.files) {
        if (f === 'explain.json') continue; // holds timings
        assert.ok(readFileSync(join(ref, f)).equals(readFileSync(join(served.outDir, f))), `${f} is byte-identical`);
      }
      await c.close();
    });
  }

  it('explain with an inline image (remote clients)', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const data = readFileSync(image).toString('base64');
    const x = await c.request({ type: 'explain', model: models.vit, image: { data }, methods: ['rollout'] });
    assert.equal(x.terminal.type, 'result');
    await c.close();
  });

  it('explain with compare: the map methods side by side, each map the engine\'s single-method map, wall times; top is refused', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'explain', model: models.vit, image: { path: image }, compare: true, methods: ['gradcam', 'rollout'], classIndex: 1 });
    assert.equal(x.terminal.type, 'result', JSON.stringify(x.terminal).slice(0, 300));
    if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'explain') return;
    assert.equal(x.terminal.result.compare, true);
    const served = x.terminal.result.explain as { classIndex: number; methods: { method: string; wallMs: number; map: number[][] }[] };
    assert.equal(served.classIndex, 1);
    assert.deepEqual(served.methods.map((m) => m.method), ['gradcam', 'rollout']);
    assert.ok(served.methods.every((m) => m.wallMs > 0));
    assert.ok(x.terminal.result.files.some((f) => basename(f.path) === 'compare.png'));
    const gradcam = await explainImage(models.vit, image, { methods: ['gradcam'], classIndex: 1 });
    assert.deepEqual(served.methods[0]!.map, JSON.parse(JSON.stringify(explainJson(gradcam))).methods.lrp[0].map);
    const rollout = await explainImage(models.vit, image, { methods: ['rollout'] });
    assert.deepEqual(served.methods[1]!.map, JSON.parse(JSON.stringify(explainJson(rollout))).methods.rollout[0].map);
    const top = await c.request({ type: 'explain', model: models.vit, image: { path: image }, compare: true, top: 3 });
    assert.deepEqual(top.terminal.type === 'error' ? [top.terminal.code, top.terminal.field] : top.terminal, ['invalid_input', 'top']);
    const heads = await c.request({ type: 'explain', model: models.vit, image: { path: image }, compare: true, methods: ['heads'] });
    assert.deepEqual(heads.terminal.type === 'error' ? [heads.terminal.code, heads.terminal.field] : heads.terminal, ['invalid_input', 'methods']);
    await c.close();
  });

  // rolloutNormalization, gradRollout, cheferStart, headsLayer: passed through to the engine unchanged.
  const explainOptionCases: Array<[string, 'vit' | 'clip', ExplainOptions]> = [
    ['ViT: rows normalisation, corrected gradient rollout, Chefer from block 1, heads of layer -2', 'vit',
      { rolloutNormalization: 'rows', gradRollout: 'corrected', cheferStart: 1, headsLayer: -2 }],
    ['CLIP: Chefer over all blocks', 'clip', { texts: ['a bright square'], methods: ['chefer'], cheferStart: 'all' }],
  ];
  for (const [what, which, options] of explainOptionCases) {
    it(`explain options (${what}) give the engine's explanation for the same options`, async () => {
      const c = await HeedClient.connect(server.url, { token: server.token });
      const { texts, methods, ...rest } = options;
      const x = await c.request({ type: 'explain', model: models[which], image: { path: image }, ...(texts ? { texts: [...texts] } : {}), ...(methods ? { methods: [...methods] } : {}), ...rest });
      await c.close();
      assert.equal(x.terminal.type, 'result', JSON.stringify(x.terminal).slice(0, 300));
      if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'explain') return;
      const got = (x.terminal.result.explain as { methods: Record<string, unknown> }).methods;
      const viaJson = async (o: ExplainOptions): Promise<Record<string, unknown>> =>
        JSON.parse(JSON.stringify((explainJson(await explainImage(models[which], image, o)) as { methods: unknown }).methods)) as Record<string, unknown>;
      assert.deepEqual(got, await viaJson(options), 'served methods equal the API with the same options');
      // ... and differ from the defaults wherever an option applies (the request did reach the engine).
      const defaults = await viaJson({ ...(texts ? { texts } : {}), ...(methods ? { methods } : {}) });
      for (const key of which === 'vit' ? ['heads', 'rollout', 'gradRollout', 'chefer'] : ['chefer']) {
        assert.notDeepEqual(got[key], defaults[key], `${key} changed by the option`);
      }
      if (which === 'vit') assert.deepEqual(got.distance, defaults.distance, 'distance has none of these options');
    });
  }

  it('explain attn-lrp with attnLrpAttention gives the engine\'s map for that rule, and the rule is recorded', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const x = await c.request({ type: 'explain', model: models.vit, image: { path: image }, methods: ['attn-lrp'], attnLrpAttention: 'attnlrp' });
    await c.close();
    assert.equal(x.terminal.type, 'result', JSON.stringify(x.terminal).slice(0, 300));
    if (x.terminal.type !== 'result' || x.terminal.result.kind !== 'explain') return;
    const got = (x.terminal.result.explain as { methods: { lrp: { method: string; attention: string; map: number[][] }[] } }).methods.lrp;
    const viaJson = async (o: ExplainOptions): Promise<unknown> =>
      JSON.parse(JSON.stringify((explainJson(await explainImage(models.vit, image, o)) as { methods: { lrp: unknown } }).methods.lrp));
    assert.deepEqual(got, await viaJson({ methods: ['attn-lrp'], attnLrpAttention: 'attnlrp' }));
    assert.equal(got[0]!.method, 'attn-lrp');
    assert.equal(got[0]!.attention, 'attnlrp');
    const cp = (await viaJson({ methods: ['attn-lrp'] })) as typeof got;
    assert.equal(cp[0]!.attention, 'cp');
    assert.notDeepEqual(got[0]!.map, cp[0]!.map, 'the attention rule changes the map');
  });

  it('explain options: bad values → invalid_message naming the field; layers the model lacks → invalid_input', async () => {
    const c = await HeedClient.connect(server.url, { token: server.token });
    const req = { type: 'explain', model: models.vit, image: { path: image } };
    const invalid: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ rolloutNormalization: 'cols' }, 'rolloutNormalization', /expected one of "vit-explain"\|"rows"/],
      [{ gradRollout: 'fixed' }, 'gradRollout', /expected one of "vit-explain"\|"corrected"/],
      [{ cheferStart: 'first' }, 'cheferStart', /must be 'last', 'all' or a layer index from 0/],
      [{ cheferStart: -1 }, 'cheferStart', /must be 'last', 'all' or a layer index from 0/],
      [{ cheferStart: 1.5 }, 'cheferStart', /must be 'last', 'all' or a layer index from 0/],
      [{ headsLayer: 1.5 }, 'headsLayer', /expected int/],
      [{ headsLayer: 'last' }, 'headsLayer', /expected number, received string/],
      [{ attnLrpAttention: 'softmax' }, 'attnLrpAttention', /expected one of "cp"\|"attnlrp"/],
    ];
    for (const [extra, field, re] of invalid) {
      const r = await c.request({ ...req, ...extra });
      assert.equal(r.terminal.type === 'error' && r.terminal.code, 'invalid_message', JSON.stringify(extra));
      assert.equal(r.terminal.type === 'error' && r.terminal.field, field, JSON.stringify(extra));
      assert.match(r.terminal.type === 'error' ? r.terminal.message : '', re);
    }
    const outOfRange: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ methods: ['heads'], headsLayer: 9 }, 'headsLayer', /heads layer 9 is out of range: the model has \d+ layers/],
      [{ methods: ['chefer'], cheferStart: 9 }, 'cheferStart', /cheferStart 9 is out of range: the model has \d+ layers/],
      [{ classIndex: 99999 }, 'classIndex', /class 99999 is out of range/],
    ];
    for (const [extra, field, re] of outOfRange) {
      const r = await c.request({ ...req, ...extra });
      assert.equal(r.terminal.type === 'error' && r.terminal.code, 'invalid_input', JSON.stringify(r.terminal));
      assert.equal(r.terminal.type === 'error' && r.terminal.field, field, JSON.stringify(r.terminal));
      assert.match(r.terminal.type === 'error' ? r.terminal.message : '', re);
    }
    await c.close();
  });
});
