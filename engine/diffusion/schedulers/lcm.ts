// Latent Consistency Model multistep sampling (Luo et al. 2023), as diffusers' LCMScheduler first shipped it in
// v0.22.0 (v0.21.4 has no LCM scheduler). Each step maps x_t to the consistency function's output
//   denoised = c_out(t)·x0(x_t, ε) + c_skip(t)·x_t,   c_skip = σd² / ((t·s)² + σd²),  c_out = t·s / sqrt((t·s)² + σd²)
// (σd = 0.5, s = timestep_scaling = 10), then re-noises it to the next timestep with fresh noise:
//   x_next = sqrt(ᾱ_next)·denoised + sqrt(1 − ᾱ_next)·z.
// Timesteps: the distillation schedule [c−1, 2c−1, …, 999] (c = 1000 // original_inference_steps) taken from the end
// every len // n entries; timestep_spacing and steps_offset do not apply (v0.22.0: "only linear spacing").
//
// The last step returns `denoised` (what LCM decodes), as diffusers v0.23.0 onwards does. v0.22.0's step re-noised
// the last output too and its pipeline decoded `denoised` instead; the image is the same, but this way Heed's
// pipeline, which decodes the final step's output, needs no LCM special case. Float32 arithmetic in torch's order.
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { BaseScheduler } from './base.js';
import { checkStepCount } from './tables.js';
import type { NoiseSource } from './types.js';

const SIGMA_DATA = 0.5;

/** diffusers v0.22.0 LCMScheduler.set_timesteps (strength 1): the LCM inference timesteps, high → low. */
export function lcmTimesteps(c: SchedulerConfig, n: number): number[] {
  const original = c.originalInferenceSteps;
  if (n > original) {
    throw new RangeError(
      `LCM: ${n} inference steps exceed original_inference_steps (${original}); LCM picks its steps from that ` +
        `${original}-step distillation schedule, so use at most ${original} steps (LCM models are meant for 1-8)`,
    );
  }
  const k = Math.floor(c.numTrainTimesteps / original);
  const origin = Array.from({ length: original }, (_, i) => (i + 1) * k - 1);
  const skip = Math.floor(origin.length / n);
  // origin[::-skip][:n]
  const out: number[] = [];
  for (let i = origin.length - 1; i >= 0 && out.length < n; i -= skip) out.push(origin[i]);
  return out;
}

export class LcmScheduler extends BaseScheduler {
  readonly finalAlphaCumprod: number;

  constructor(config: SchedulerConfig) {
    super('lcm', config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.config, 'LCM');
    this.timesteps = lcmTimesteps(this.config, n);
    this.numInferenceSteps = n;
    this.stepsTaken = 0;
    this.predOriginalSample = null;
  }

  /** c_skip and c_out at integer timestep t, as torch computes them on the int64 timestep tensor (float32). */
  boundaryScalings(t: number): { cSkip: number; cOut: number } {
    // v0.22.0 writes t / 0.1; the torch op is float32 division by fl(0.1), i.e. by fl(1 / timestep_scaling).
    const scaled = fr(fr(t) / fr(1 / this.config.timestepScaling));
    const denom = fr(fr(scaled * scaled) + SIGMA_DATA * SIGMA_DATA);
    // `σd² / tensor` is Tensor.__rtruediv__ = reciprocal() * σd² in torch.
    const cSkip = fr(fr(1 / denom) * (SIGMA_DATA * SIGMA_DATA));
    const cOut = fr(scaled / fr(Math.sqrt(denom)));
    return { cSkip, cOut };
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise?: NoiseSource): Float32Array {
    this.checkIndex(stepIndex);
    this.checkInputs(modelOutput, sample);
    const c = this.config;
    const ts = this.timesteps;
    const isLast = stepIndex === ts.length - 1;
    if (!isLast && !noise) throw new Error('LCM needs a noise source for every step but the last (pass the TorchGenerator that drew the latents)');
    const t = ts[stepIndex];
    const prevT = isLast ? t : ts[stepIndex + 1];
    const at = this.alphasCumprod[t];
    const ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const sa = fr(Math.sqrt(at));
    const sb = fr(Math.sqrt(fr(1 - at)));
    const { cSkip, cOut } = this.boundaryScalings(t);
    const n = sample.length;
    const denoised = new Float32Array(n);
    const r = fr(c.clipSampleRange);
    for (let i = 0; i < n; i++) {
      const s = sample[i];
      const m = modelOutput[i];
      let x0: number;
      switch (c.predictionType) {
        case 'epsilon':
          x0 = fr(fr(s - fr(sb * m)) / sa);
          break;
        case 'sample':
          x0 = m;
          break;
        case 'v_prediction':
          x0 = fr(fr(sa * s) - fr(sb * m));
          break;
      }
      if (c.clipSample) x0 = Math.min(Math.max(x0, -r), r);
      denoised[i] = fr(fr(cOut * x0) + fr(cSkip * s));
    }
    this.predOriginalSample = denoised;
    this.stepsTaken++;
    if (isLast || !noise) return Float32Array.from(denoised);
    const z = noise.randn([n]);
    const sap = fr(Math.sqrt(ap));
    const sbp = fr(Math.sqrt(fr(1 - ap)));
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = fr(fr(sap * denoised[i]) + fr(sbp * z[i]));
    return out;
  }
}
