// Bad input and control flow on the reference model at a small size (64×64 pixels = 8×8 latents: fast): long prompts,
// empty prompts, unknown schedulers, odd sizes, bad latents files, cancellation, progress and the beforeStep hook.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeNpy } from '../engine/io/npy.js';
import {
  CancelledError, GenerationOptionsError, SchedulerConfigError, StableDiffusionPipeline, type StepInfo,
} from '../engine/diffusion/pipeline.js';
import { LatentsError } from '../engine/diffusion/latents.js';
import { requireReference } from './helpers/reference.js';

const SMALL = { width: 64, height: 64, steps: 2 } as const;

describe('SD pipeline inputs and control flow (small latents)', function () {
  let pipe: StableDiffusionPipeline;
  let dir = '';

  before(async function () {
    const ref = requireReference(this);
    pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1', 'onnx'), { threads: 1 });
    dir = mkdtempSync(join(tmpdir(), 'heed-inputs-'));
  });

  after(async () => {
    await pipe?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('truncates a prompt over 77 tokens with a warning that names the dropped words', async () => {
    const words = Array.from({ length: 80 }, (_, i) => (i === 79 ? 'zebra' : 'cat'));
    const res = await pipe.generate({ prompt: words.join(' '), seed: 1, ...SMALL, maps: true });
    assert.equal(res.prompt.truncated, true);
    assert.equal(res.prompt.length, 77);
    assert.ok(res.prompt.droppedWords.includes('zebra'));
    assert.ok(res.warnings.some((w) => /dropped the last 5 token\(s\).*zebra/.test(w)), res.warnings.join('\n'));
    // The DAAM map keeps SOT + 75 tokens + EOT rows.
    assert.equal(res.attention?.daamGlobal().tokens, 77);
  });

  it('refuses an empty prompt, an unknown scheduler, a size that is not a multiple of 8 and bad numbers', async () => {
    await assert.rejects(pipe.generate({ prompt: '   ', ...SMALL }), (e: unknown) => e instanceof GenerationOptionsError && /prompt is empty/.test(e.message));
    await assert.rejects(pipe.generate({ prompt: 'a cat', scheduler: 'heun', ...SMALL }),
      (e: unknown) => e instanceof SchedulerConfigError && /unknown scheduler "heun".*pndm, ddim, euler/.test(e.message));
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, width: 100 }),
      (e: unknown) => e instanceof GenerationOptionsError && /width 100 is not a multiple of 8.*96 or 104/.test(e.message));
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, steps: 0 }), /steps must be a positive integer/);
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, guidance: NaN }), /guidance must be a finite number/);
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, seed: -1 }), /seed must be a non-negative integer/);
  });

  it('refuses latents files with non-finite values or the wrong shape', async () => {
    const nan = new Float32Array(4 * 8 * 8);
    nan[3] = NaN;
    writeFileSync(join(dir, 'nan.npy'), encodeNpy(nan, [1, 4, 8, 8]));
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, latents: join(dir, 'nan.npy') }),
      (e: unknown) => e instanceof LatentsError && /1 non-finite value/.test(e.message));
    writeFileSync(join(dir, 'big.npy'), encodeNpy(new Float32Array(4 * 16 * 16), [1, 4, 16, 16]));
    await assert.rejects(pipe.generate({ prompt: 'a cat', ...SMALL, latents: join(dir, 'big.npy') }),
      (e: unknown) => e instanceof LatentsError && /\[1, 4, 16, 16\] but this generation needs \[1, 4, 8, 8\].*--size 128x128/.test(e.message));
  });

  it('reports progress per step, and a given latents file equals the same seed', async () => {
    const steps: StepInfo[] = [];
    const a = await pipe.generate({ prompt: 'a cat', seed: 42, ...SMALL, onStep: (s) => void steps.push({ ...s, latents: s.latents.slice() }) });
    // PNDM with 2 steps: 3 UNet calls (the PLMS warm-up repeats a timestep).
    assert.deepEqual(steps.map((s) => [s.step, s.total]), [[0, 3], [1, 3], [2, 3]]);
    assert.deepEqual(steps[2].latents, a.latents);
    assert.ok(steps.every((s) => s.stepMs > 0 && s.elapsedMs >= s.stepMs));
    // Previews: decoding the last step's latents is the result image.
    assert.deepEqual((await pipe.decodeLatents(steps[2].latents, steps[2].latentShape)).data, a.image.data);
    writeFileSync(join(dir, 'seed42.npy'), encodeNpy(a.initLatents, [1, 4, 8, 8]));
    const b = await pipe.generate({ prompt: 'a cat', ...SMALL, latents: join(dir, 'seed42.npy') });
    assert.deepEqual(b.latents, a.latents);
    assert.deepEqual(b.image.data, a.image.data);
    assert.deepEqual([a.image.width, a.image.height, a.image.data.length], [64, 64, 64 * 64 * 3]);
  });

  it('cancels between steps with a CancelledError', async () => {
    const ac = new AbortController();
    let calls = 0;
    await assert.rejects(
      pipe.generate({ prompt: 'a cat', seed: 3, ...SMALL, signal: ac.signal, onStep: () => { calls++; ac.abort(); } }),
      (e: unknown) => e instanceof CancelledError && e.step === 1 && e.total === 3,
    );
    assert.equal(calls, 1);
    ac.abort();
    await assert.rejects(pipe.generate({ prompt: 'a cat', seed: 3, ...SMALL, signal: ac.signal }), CancelledError);
  });

  it('beforeStep may replace the latents (checked), and can run the conditional UNet pass with attention', async () => {
    const base = await pipe.generate({ prompt: 'a cat', seed: 5, ...SMALL, steps: 1 });
    const sites = pipe.attentionSites(8, 8).filter((s) => s.kind === 'cross' && s.queryLength === 4);
    assert.equal(sites.length, 5); // 2x2 grid at 8x8 latents: down_blocks.2 x2 + up_blocks.1 x3
    let seen = 0;
    const res = await pipe.generate({
      prompt: 'a cat', seed: 5, ...SMALL, steps: 1,
      beforeStep: async (ctx) => {
        const out = await ctx.pipeline.unetWithAttention(ctx.latents, ctx.latentShape, ctx.timestep, ctx.cond, ctx.embeddingDims, sites);
        seen = out.attention.size;
        assert.deepEqual(out.attention.get(sites[0].probs)?.dims, [8, 4, 77]);
        return ctx.latents.map((v) => v * 0.5);
      },
    });
    assert.equal(seen, 5);
    assert.notDeepEqual(res.latents, base.latents);
    await assert.rejects(pipe.generate({ prompt: 'a cat', seed: 5, ...SMALL, beforeStep: () => new Float32Array(3) }),
      (e: unknown) => e instanceof LatentsError && /beforeStep at step 0 hold 3 values/.test(e.message));
  });

  it('non-square sizes: maps follow the latent grid (64x128 pixels → 8x16 latents)', async () => {
    const res = await pipe.generate({ prompt: 'a cat', seed: 4, steps: 1, width: 128, height: 64, maps: true });
    assert.deepEqual(res.latentShape, [1, 4, 8, 16]);
    assert.deepEqual([res.image.height, res.image.width], [64, 128]);
    const g = res.attention?.daamGlobal();
    assert.deepEqual([g?.tokens, g?.height, g?.width], [4, 8, 16]);
    // The per-step grid defaults to A&E's: 16 rows as diffusers, or the nearest the UNet has (8, 4, 2 here) → 8.
    assert.equal(res.aeResolution, 8);
    const m = res.attention?.stepMap(0, 8);
    assert.deepEqual([m?.height, m?.width, m?.keys], [8, 16, 77]);
  });

  it('guidance <= 1 runs without CFG (batch 1, conditional only)', async () => {
    const res = await pipe.generate({ prompt: 'a cat', seed: 9, ...SMALL, guidance: 1, maps: true });
    assert.equal(res.settings.cfg, false);
    assert.equal(res.noisePredictions[0].uncond, null);
    assert.ok(res.attention && res.attention.daamGlobal().data.every(Number.isFinite));
  });
});
