// Conformance with ../shared/reference/sd-tiny-v1: the outputs diffusers v0.21.4, DAAM and A&E's AttentionStore
// computed in torch float32 on the same exported models. One generation (PNDM, 10 steps = 11 UNet calls, batch 2,
// maps on) runs once in before() and every output is compared from it; DDIM runs once more without maps.
// Tolerances (max |Δ| / max |ref|): 1e-5 for text embeddings, 2e-5 for single UNet calls and the maps, 1e-4 for
// what accumulates over all 11 calls (final latents, image); measured values are ~1e-6 (the test prints them).
// Heavy (each 64×64 UNet call is ~20 s here, ~8 min in all, 4 GB peak): run it under `flock /tmp/heed-heavy.lock`.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpy, readNpyFloat32 } from '../engine/io/npy.js';
import { StableDiffusionPipeline, type GenerateResult } from '../engine/diffusion/pipeline.js';
import { seededLatents } from '../engine/diffusion/latents.js';
import { writeTrace, type TraceManifest } from '../engine/jobs/trace.js';
import { aeAggregate } from '../engine/attention/aggregate.js';
import { writeGenerateOutputs } from '../engine/jobs/outputs.js';
import { requireReference } from './helpers/reference.js';
import { assertClose } from './pipeline-helpers.js';

const PROMPT = 'a cat and a frog';

describe('SD pipeline conformance with sd-tiny-v1 (heavy)', function () {
  let ref = '';
  let pipe: StableDiffusionPipeline;
  let result: GenerateResult;
  const afterSteps: Float32Array[] = [];
  const r = (name: string): Float32Array => readNpyFloat32(join(ref, 'sd-tiny-v1', 'ref', name)).data;

  before(async function () {
    ref = requireReference(this);
    pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1', 'onnx'), { threads: 2 });
    result = await pipe.generate({
      prompt: PROMPT, negativePrompt: '', guidance: 7.5, steps: 10, width: 512, height: 512,
      latents: join(ref, 'sd-tiny-v1', 'ref', 'latents_init.npy'),
      maps: { daam: true, perStepResolutions: [16], perLayerResolutions: [16] },
      onStep: (s) => {
        if (s.step < 2) afterSteps.push(s.latents.slice());
      },
    });
  });

  after(async () => {
    await pipe?.dispose();
  });

  it('--seed 1234 draws ref/latents_init.npy exactly', () => {
    const { latents } = seededLatents(1234, [1, 4, 64, 64]);
    assert.deepEqual(latents, r('latents_init.npy'));
  });

  it('runs PNDM timesteps [901, 801, 801, ..., 1] (11 UNet calls)', () => {
    assert.deepEqual(result.timesteps, [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assert.equal(result.timings.stepMs.length, 11);
    assert.deepEqual(result.prompt.ids.slice(0, 8), [49406, 320, 2368, 537, 320, 11438, 49407, 49407]);
  });

  it('text embeddings (cond and uncond) match', () => {
    assertClose('text_embeddings_cond', result.textEmbeddings.cond, r('text_embeddings_cond.npy'), 1e-5);
    assertClose('text_embeddings_uncond', result.textEmbeddings.uncond, r('text_embeddings_uncond.npy'), 1e-5);
  });

  it('noise predictions of steps 0 and 1 match (cond, uncond, guided)', () => {
    for (const s of [0, 1]) {
      const p = result.noisePredictions[s];
      assert.ok(p.uncond);
      assertClose(`noise_pred_cond_step${s}`, p.cond, r(`noise_pred_cond_step${s}.npy`), 2e-5);
      assertClose(`noise_pred_uncond_step${s}`, p.uncond, r(`noise_pred_uncond_step${s}.npy`), 2e-5);
      assertClose(`noise_pred_guided_step${s}`, p.guided, r(`noise_pred_guided_step${s}.npy`), 2e-5);
    }
  });

  it('latents after steps 0 and 1 and the final latents match', () => {
    assertClose('latents_after_step0', afterSteps[0], r('latents_after_step0.npy'), 2e-5);
    assertClose('latents_after_step1', afterSteps[1], r('latents_after_step1.npy'), 2e-5);
    assertClose('final_latents', result.latents, r('final_latents.npy'), 1e-4);
  });

  it('the decoded image matches image.npy', () => {
    assert.deepEqual([result.image.height, result.image.width], [512, 512]);
    assertClose('image', result.image.data, r('image.npy'), 1e-4);
  });

  it("step-0 16x16 map (conditional half of the CFG call) matches A&E's attn_maps_step0_16x16", () => {
    assert.ok(result.attention);
    const m = result.attention.stepMap(0, 16);
    assert.deepEqual([m.height, m.width, m.keys], [16, 16, 77]);
    assertClose('attn16_step0', m.data, r('attn_maps_step0_16x16.npy'), 2e-5);
  });

  it('DAAM global heat map and word maps (cat, frog) match', () => {
    assert.ok(result.attention);
    const g = result.attention.daamGlobal();
    assert.deepEqual([g.tokens, g.height, g.width], [7, 64, 64]);
    assertClose('daam_global_heat_map', g.data, r('daam_global_heat_map.npy'), 2e-5);
    const cat = result.prompt.words.find((w) => w.normalized === 'cat');
    const frog = result.prompt.words.find((w) => w.normalized === 'frog');
    assert.deepEqual([cat?.tokenIndices, frog?.tokenIndices], [[2], [5]]);
    assertClose('daam_word_cat', result.attention.wordMap([2], g), r('daam_word_cat.npy'), 2e-5);
    assertClose('daam_word_frog', result.attention.wordMap([5], g), r('daam_word_frog.npy'), 2e-5);
    // DAAM's 15 layers: up blocks first, mid skipped.
    const layers = result.attention.daamLayers();
    assert.equal(layers.length, 15);
    assert.equal(layers[0], 'up_blocks.1.attentions.0.transformer_blocks.0.attn2');
    assert.ok(!layers.some((l) => l.startsWith('mid_block')));
  });

  it('per-step and per-layer word maps (heed generate --maps-per-step --maps-per-layer) agree with the reference and each other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-stepmaps-'));
    try {
      const w = await writeGenerateOutputs(result, dir, { maps: true, perStep: true, perLayer: true });
      assert.deepEqual(w.stepMaps, [{ height: 16, width: 16, calls: 11, timesteps: result.timesteps }]);
      assert.deepEqual(w.layerMaps?.map((g) => [g.height, g.width, g.layers]), [[16, 16, [
        'down_blocks.2.attentions.0.transformer_blocks.0.attn2', 'down_blocks.2.attentions.1.transformer_blocks.0.attn2',
        'up_blocks.1.attentions.0.transformer_blocks.0.attn2', 'up_blocks.1.attentions.1.transformer_blocks.0.attn2',
        'up_blocks.1.attentions.2.transformer_blocks.0.attn2',
      ]]]);
      const frog = w.maps.find((m) => m.word === 'frog');
      assert.ok(frog?.perStep?.[0] && frog.perLayer?.[0]);
      const steps = readNpyFloat32(frog.perStep[0].npy);
      assert.deepEqual(steps.shape, [11, 16, 16]);
      // Call 0's plane is column 5 ("frog") of A&E's step-0 16x16 aggregate.
      const ref16 = r('attn_maps_step0_16x16.npy');
      assertClose('per-step frog map, call 0', steps.data.subarray(0, 256), Float32Array.from({ length: 256 }, (_, q) => ref16[q * 77 + 5]!), 2e-5);
      // The per-layer maps are summed over calls; their layer mean is the per-step maps' sum over calls.
      const layers = readNpyFloat32(frog.perLayer[0].npy);
      assert.deepEqual(layers.shape, [5, 16, 16]);
      const layerMean = Float32Array.from({ length: 256 }, (_, i) => [0, 1, 2, 3, 4].reduce((a, l) => a + layers.data[l * 256 + i]!, 0) / 5);
      const callSum = Float32Array.from({ length: 256 }, (_, i) => Array.from({ length: 11 }, (__, c) => steps.data[c * 256 + i]!).reduce((a, b) => a + b, 0));
      assertClose('per-layer mean = per-step sum', layerMean, callSum, 1e-5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes the trace (npy files + manifest) with the same numbers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-trace-'));
    try {
      const manifest = writeTrace(dir, result);
      const files = manifest.files.map((f) => f.file).sort();
      assert.deepEqual(files, [
        'attn16_step0.npy', 'daam_global_heat_map.npy', 'daam_word_a.npy', 'daam_word_and.npy', 'daam_word_cat.npy', 'daam_word_frog.npy',
        'image.npy', 'latents_final.npy', 'latents_init.npy', 'noise_pred_step0.npy', 'noise_pred_step1.npy', 'text_embeddings.npy',
      ]);
      const onDisk = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as TraceManifest;
      assert.equal(onDisk.prompt, PROMPT);
      const emb = readNpy(join(dir, 'text_embeddings.npy'));
      assert.deepEqual(emb.shape, [2, 77, 32]);
      assertClose('trace text_embeddings[1]', (emb.data as Float32Array).subarray(77 * 32), r('text_embeddings_cond.npy'), 1e-5);
      assertClose('trace noise_pred_step1', readNpyFloat32(join(dir, 'noise_pred_step1.npy')).data, r('noise_pred_cond_step1.npy'), 2e-5);
      assertClose('trace daam_word_frog', readNpyFloat32(join(dir, 'daam_word_frog.npy')).data, r('daam_word_frog.npy'), 2e-5);
      // "a" occurs twice: DAAM merges both occurrences (rows 1 and 4).
      const a = readNpyFloat32(join(dir, 'daam_word_a.npy')).data;
      const g = readNpyFloat32(join(dir, 'daam_global_heat_map.npy')).data;
      for (let i = 0; i < 4096; i += 97) assert.ok(Math.abs(a[i] - (g[4096 + i] + g[4 * 4096 + i]) / 2) < 1e-6);
      assert.deepEqual(readNpy(join(dir, 'attn16_step0.npy')).shape, [16, 16, 77]);
      assert.deepEqual(readNpy(join(dir, 'image.npy')).shape, [512, 512, 3]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("batch-1 conditional pass with the 16x16 sites exposed reproduces A&E's capture (maps and per-layer maps)", async () => {
    const sites = pipe.attentionSites(64, 64).filter((s) => s.kind === 'cross' && s.queryLength === 256);
    assert.deepEqual(sites.map((s) => s.modulePath), [
      'down_blocks.2.attentions.0.transformer_blocks.0.attn2', 'down_blocks.2.attentions.1.transformer_blocks.0.attn2',
      'up_blocks.1.attentions.0.transformer_blocks.0.attn2', 'up_blocks.1.attentions.1.transformer_blocks.0.attn2',
      'up_blocks.1.attentions.2.transformer_blocks.0.attn2',
    ]);
    const out = await pipe.unetWithAttention(r('latents_init.npy'), [1, 4, 64, 64], 901, result.textEmbeddings.cond, result.textEmbeddings.dims, sites);
    assertClose('cond-only UNet out = noise_pred_cond_step0', out.noise, r('noise_pred_cond_step0.npy'), 2e-5);
    const probs = sites.map((s) => out.attention.get(s.probs)).filter((p) => p !== undefined);
    assertClose('A&E 16x16 map', aeAggregate(probs, 16, 16, 1, 0).data, r('attn_maps_step0_16x16.npy'), 2e-5);
    const perLayer = new Float32Array(5 * 8 * 256 * 77);
    probs.forEach((p, i) => perLayer.set(p.data, i * 8 * 256 * 77));
    assertClose('A&E per-layer maps', perLayer, r('attn_maps_step0_16x16_per_layer.npy'), 2e-5);
  });
});

describe('SD pipeline conformance: DDIM (heavy)', function () {
  it('DDIM (scheduler_ddim config, 10 steps, eta 0) final latents match ddim_final_latents.npy', async function () {
    const ref = requireReference(this);
    const pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1', 'onnx'), { threads: 2 });
    try {
      const config = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1', 'scheduler_ddim', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
      const res = await pipe.generate({
        prompt: PROMPT, steps: 10, guidance: 7.5, width: 512, height: 512, schedulerConfig: config,
        latents: join(ref, 'sd-tiny-v1', 'ref', 'latents_init.npy'), keepNoisePredictions: 0,
      });
      assert.deepEqual(res.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
      assert.equal(res.settings.scheduler, 'ddim');
      assertClose('ddim_final_latents', res.latents, readNpyFloat32(join(ref, 'sd-tiny-v1', 'ref', 'ddim_final_latents.npy')).data, 1e-4);
    } finally {
      await pipe.dispose();
    }
  });
});
