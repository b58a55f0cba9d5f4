// SDXL benchmark (issue 19), ratios measured in one run of this process on an SDXL folder:
//  - UNet step time (batch 2, CFG, with text_embeds/time_ids) without hooks and with every cross-attention map exposed;
//  - the A&E pass at the latent/4 grid (forward pruned to those layers + backward to the latents) vs a batch-1 forward;
//  - the denoising loop without maps and with DAAM maps;
//  - peak RSS of this process (indicative only: VmRSS counts the shared weight file once per mapping). Proportional
//    memory (Pss) of an SDXL A&E generation comes from the memory section: HEED_BENCH_SD=<sdxl folder> --only memory.
// The model: `HEED_BENCH_SDXL=<folder>` (any SDXL export, e.g. `node dist/models/build.js --kind sdxl --size wide`, full
// SDXL widths with reduced depth), else the tiny SDXL built into a temporary folder. Size: HEED_BENCH_SIZE (default 256
// for the tiny model, else 512), steps HEED_BENCH_STEPS (4), repetitions HEED_BENCH_REPS (3).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { sdxlTimeIds } from '../engine/diffusion/sdxl-conditioning.js';
import { AttendExcite, AE_DEFAULTS } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { torchRandn } from '../engine/diffusion/random.js';
import { buildSdxlPipeline, sdxlTinyConfig } from '../models/sdxl.js';
import { timeIt } from './lib/timing.js';

const rssMb = (): number => process.resourceUsage().maxRSS / 1024;

export async function benchSdxl(): Promise<Record<string, number | string>> {
  let tmp: string | undefined;
  let dir = process.env.HEED_BENCH_SDXL;
  if (!dir) {
    tmp = mkdtempSync(join(tmpdir(), 'heed-bench-sdxl-'));
    dir = join(tmp, 'sdxl-tiny');
    buildSdxlPipeline(dir, sdxlTinyConfig(0));
  }
  const size = Number(process.env.HEED_BENCH_SIZE ?? (tmp ? 256 : 512));
  const steps = Number(process.env.HEED_BENCH_STEPS ?? 4);
  const reps = Number(process.env.HEED_BENCH_REPS ?? 3);
  const out: Record<string, number | string> = { model: tmp ? 'tiny SDXL (models/sdxl.ts)' : dir, size, steps };
  const pipe = await StableDiffusionPipeline.load(dir);
  try {
    const h = size / 8;
    const shape: [number, number, number, number] = [1, 4, h, h];
    const enc = await pipe.encodePrompts('a cat and a frog', undefined);
    if (!enc.pooled) throw new Error(`${dir} is not an SDXL folder`);
    const ids = sdxlTimeIds(pipe.unet.io, enc.pooled.dim, { height: size, width: size });
    const latents = torchRandn(shape, 1234);
    const cat = (a: Float32Array, b: Float32Array): Float32Array => {
      const o = new Float32Array(a.length + b.length);
      o.set(a, 0);
      o.set(b, a.length);
      return o;
    };
    const [, seq, hidden] = enc.dims;
    const input = {
      sample: cat(latents, latents), batch: 2, height: h, width: h, timestep: 751, encoderHiddenStates: cat(enc.uncond, enc.cond),
      sequence: seq, hidden, added: { textEmbeds: cat(enc.pooled.uncond, enc.pooled.cond), timeIds: cat(ids, ids) },
    };
    const cross = pipe.attentionSites(h, h).filter((s) => s.kind === 'cross');
    const plain = await timeIt(reps, () => pipe.unet.run(input));
    await pipe.unet.releaseSession();
    const withMaps = await timeIt(reps, () => pipe.unet.run(input, cross));
    await pipe.unet.releaseSession();
    out.cross_attention_layers = cross.length;
    out.unet_step_ms_no_hooks = plain;
    out.unet_step_ms_all_cross_maps = withMaps;
    out.ratio_step_cross_maps_vs_plain = withMaps / plain;
    const single = { ...input, sample: latents, batch: 1, encoderHiddenStates: enc.cond, added: { textEmbeds: enc.pooled.cond, timeIds: ids } };
    const forward1 = await timeIt(reps, () => pipe.unet.run(single));
    await pipe.unet.releaseSession();
    out.unet_forward_batch1_ms = forward1;

    const res = pipe.defaultAttentionGrid(size, size).res;
    const ae = await AttendExcite.create(pipe, shape, {
      tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: Math.ceil(steps / 2), resolution: res, loss: DEFAULT_AE_LOSS,
    });
    const aePass = await timeIt(reps, () => ae.lossAndGradient(latents, 751, enc.cond, enc.dims, single.added));
    await ae.dispose();
    out.ae_grid = res;
    out.ae_pass_ms = aePass;
    out.ratio_ae_pass_vs_full_forward_batch1 = aePass / forward1;

    const genOpts = { prompt: 'a cat and a frog', steps, width: size, height: size, seed: 1234 };
    const noMaps = (await pipe.generate({ ...genOpts, maps: false })).timings.denoiseMs;
    const daam = (await pipe.generate({ ...genOpts, maps: true })).timings.denoiseMs;
    out.denoise_ms_no_maps = noMaps;
    out.ratio_denoise_daam_maps_vs_no_maps = daam / noMaps;
    out.peak_rss_mb = rssMb();
  } finally {
    await pipe.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}
