// Diffusion benchmark (issue 4/5/6 goals), all figures as ratios measured in ONE run of this process:
//  - UNet step time (batch 2, CFG) without hooks, with every attention map exposed, with the 16×16 maps only;
//  - end-to-end generation time, plain and with Attend-and-Excite (same steps/seed), and their ratio;
//  - the denoising loop without maps, with DAAM maps, with the map panel's per-step + per-layer maps;
//  - the A&E pass (forward pruned to the 16×16 layers + backward to the latents) vs a full batch-1 forward;
//  - one refinement iteration vs a batch-1 forward;
//  - few-step generation: 1 step without CFG (SD-Turbo's Euler "trailing" schedule) vs 50 steps with CFG (the folder's
//    scheduler), whole generate() wall time. On by default for the tiny model only (HEED_BENCH_FEWSTEP=1 forces it
//    for HEED_BENCH_SD, =0 skips it): 50 CFG steps of a full-width UNet take many minutes on a CPU.
// The model is the tiny SD folder from models/ (or `HEED_BENCH_SD=<folder>` for any SD 1.x export, e.g. a
// full-width random SD1.5 built with `node dist/models/build.js --kind sd --size sd15`).
import { ensureTinyModels } from '../models/cache.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { AttendExcite, AE_DEFAULTS } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { torchRandn } from '../engine/diffusion/random.js';
import { timeIt } from './lib/timing.js';

function rssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export async function benchDiffusion(): Promise<Record<string, number | string>> {
  const dir = process.env.HEED_BENCH_SD ?? (await ensureTinyModels()).sd;
  const size = Number(process.env.HEED_BENCH_SIZE ?? 512);
  const steps = Number(process.env.HEED_BENCH_STEPS ?? 6);
  const reps = Number(process.env.HEED_BENCH_REPS ?? 3);
  const out: Record<string, number | string> = { model: dir, size, steps };
  const pipe = await StableDiffusionPipeline.load(dir);
  try {
    const h = size / 8;
    const shape: [number, number, number, number] = [1, 4, h, h];
    const enc = await pipe.encodePrompts('a cat and a frog', '');
    const latents = torchRandn(shape, 1234);
    const batch2 = new Float32Array(latents.length * 2);
    batch2.set(latents, 0);
    batch2.set(latents, latents.length);
    const ehs = new Float32Array(enc.uncond.length * 2);
    ehs.set(enc.uncond, 0);
    ehs.set(enc.cond, enc.uncond.length);
    const [, seq, hidden] = enc.dims;
    const input = { sample: batch2, batch: 2, height: h, width: h, timestep: 901, encoderHiddenStates: ehs, sequence: seq, hidden };
    const all = pipe.attentionSites(h, h);
    const res16 = all.filter((s) => s.kind === 'cross' && s.queryLength === (size / 32) ** 2);

    const plain = await timeIt(reps, () => pipe.unet.run(input));
    const with16 = await timeIt(reps, () => pipe.unet.run(input, res16));
    await pipe.unet.releaseSession();
    out.unet_step_ms_no_hooks = plain;
    out.unet_step_ms_maps_16x16 = with16;
    out.ratio_step_16x16_maps_vs_plain = with16 / plain;
    // Every map includes the 64×64 self-attention (8 × 4096² floats per head group and layer): skip it where that
    // would not fit (HEED_BENCH_ALL_MAPS=0), e.g. for a full-width SD 1.5.
    if (process.env.HEED_BENCH_ALL_MAPS !== '0') {
      const withAll = await timeIt(reps, () => pipe.unet.run(input, all));
      await pipe.unet.releaseSession();
      out.unet_step_ms_all_maps = withAll;
      out.ratio_step_all_maps_vs_plain = withAll / plain;
    }

    await pipe.unet.releaseSession();
    const single = { ...input, sample: latents, batch: 1, encoderHiddenStates: enc.cond };
    const forward1 = await timeIt(reps, () => pipe.unet.run(single));
    out.unet_forward_batch1_ms = forward1;
    await pipe.unet.releaseSession();

    const aeOpts = { tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: Math.ceil(steps / 2), resolution: size / 32, loss: DEFAULT_AE_LOSS };
    const ae = await AttendExcite.create(pipe, shape, aeOpts);
    const aePass = await timeIt(reps, () => ae.lossAndGradient(latents, 901, enc.cond, enc.dims));
    out.ae_pass_ms = aePass;
    out.ratio_ae_pass_vs_full_forward_batch1 = aePass / forward1;
    const t = ae.timings;
    out.ae_forward_ms = t.forwardMs / t.forwards;
    out.ae_backward_ms = t.backwardMs / t.backwards;
    await ae.dispose();
    out.peak_rss_mb_after_steps = rssMb();

    const genOpts = { prompt: 'a cat and a frog', steps, guidance: 7.5, width: size, height: size, seed: 1234 };
    // The denoising loop alone (denoiseMs excludes opening a session with other exposed maps): no maps, the DAAM
    // maps, and the DAAM maps plus what the VS Code map panel asks for (per-step maps, every layer's map).
    const noMaps = (await pipe.generate({ ...genOpts, maps: false })).timings.denoiseMs;
    const t0 = performance.now();
    const daamRun = await pipe.generate({ ...genOpts, maps: true });
    const plainGen = performance.now() - t0;
    const panelRun = await pipe.generate({ ...genOpts, maps: { daam: true, perLayerResolutions: 'all' } });
    out.denoise_ms_no_maps = noMaps;
    out.ratio_denoise_daam_maps_vs_no_maps = daamRun.timings.denoiseMs / noMaps;
    out.ratio_denoise_panel_maps_vs_no_maps = panelRun.timings.denoiseMs / noMaps;
    const run = await AttendExcite.create(pipe, shape, aeOpts);
    const t1 = performance.now();
    await pipe.generate({ ...genOpts, maps: true, beforeStep: run.hook });
    const aeGen = performance.now() - t1;
    const refine = run.events.filter((e) => e.phase === 'refine' && e.kind === 'update').length;
    const rt = run.timings;
    await run.dispose();
    out.generate_ms_plain = plainGen;
    out.generate_ms_attend_excite = aeGen;
    out.ratio_generate_ae_vs_plain = aeGen / plainGen;
    out.ae_refinement_updates = refine;
    out.ratio_refinement_iteration_vs_forward_batch1 = (rt.forwardMs / rt.forwards + rt.backwardMs / Math.max(1, rt.backwards)) / forward1;
    const fewStep = process.env.HEED_BENCH_FEWSTEP ?? (process.env.HEED_BENCH_SD ? '0' : '1');
    if (fewStep !== '0') Object.assign(out, await benchFewStep(pipe, size, reps));
    out.peak_rss_mb = rssMb();
  } finally {
    await pipe.dispose();
  }
  return out;
}

/** SD-Turbo's scheduler_config.json (diffusers 0.24.0.dev0): Euler with trailing spacing, so 1 step starts at t = 999. */
const SD_TURBO_SCHEDULER = {
  _class_name: 'EulerDiscreteScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, clip_sample: false,
  interpolation_type: 'linear', num_train_timesteps: 1000, prediction_type: 'epsilon', set_alpha_to_one: false, skip_prk_steps: true,
  steps_offset: 1, timestep_spacing: 'trailing', timestep_type: 'discrete', trained_betas: null, use_karras_sigmas: false,
};

/** Whole-generation wall time: 1 step without CFG (one batch-1 UNet call) vs 50 steps with CFG (50+ batch-2 calls). */
export async function benchFewStep(pipe: StableDiffusionPipeline, size: number, reps: number): Promise<Record<string, number>> {
  const base = { prompt: 'a cat and a frog', width: size, height: size, seed: 1234, maps: false } as const;
  let calls1 = 0;
  const one = await timeIt(reps, async () => {
    calls1 = (await pipe.generate({ ...base, steps: 1, guidance: 0, schedulerConfig: SD_TURBO_SCHEDULER })).timesteps.length;
  });
  // One timed run (no warm-up: the 1-step runs already opened the plain UNet session, and 50 steps are long).
  const t0 = performance.now();
  const calls50 = (await pipe.generate({ ...base, steps: 50, guidance: 7.5 })).timesteps.length;
  const fifty = performance.now() - t0;
  return {
    generate_ms_1_step_no_cfg: one, generate_ms_50_steps_cfg: fifty, ratio_generate_50_steps_vs_1_step: fifty / one,
    unet_calls_1_step: calls1, unet_calls_50_steps: calls50,
  };
}
