// Noise-schedule tables (betas, cumulative alphas, sigmas) and the numpy-style timestep helpers the schedulers use.
//
// Precision follows diffusers v0.21.4 on torch 1.13 CPU: betas and alphas_cumprod are float32 tensors, sigmas are
// computed from them in float32 and then processed by numpy in float64. torch.linspace(float32) on an AVX2 CPU
// evaluates 8-lane chunks as base + j*step with fused multiply-adds, and cumprod accumulates in double: replaying
// those exact operations reproduces the reference PNDM step bit for bit (see test/schedulers.test.ts).
import { fmaf, fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';

/** torch.linspace(start, end, n, dtype=float32) as torch 1.13's vectorised CPU kernel computes it. */
export function torchLinspaceF32(startIn: number, endIn: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) {
    out[0] = fr(startIn);
    return out;
  }
  const start = fr(startIn);
  const end = fr(endIn);
  const step = fr(fr(end - start) / (n - 1));
  const halfway = Math.floor(n / 2);
  // cpu_serial_kernel_vec: pairs of 8-lane vectors (16 values) while they fit, then a scalar loop for the rest.
  // A vector is Vectorized<float>::arange(base, step) = base + j*step, where base is computed like a scalar; the
  // first half counts up from start and the second half down from end. GCC fuses the multiply-adds.
  const scalar = (i: number) => (i < halfway ? fmaf(step, i, start) : fmaf(-step, n - i - 1, end));
  let idx = 0;
  for (; idx + 16 <= n; idx += 16) {
    for (const v of [idx, idx + 8]) {
      const base = scalar(v);
      out[v] = base;
      for (let j = 1; j < 8; j++) out[v + j] = fmaf(j, step, base);
    }
  }
  for (; idx < n; idx++) out[idx] = scalar(idx);
  return out;
}

/** betas for the diffusion process (float32, as the diffusers schedulers build them). */
export function makeBetas(c: SchedulerConfig): Float32Array {
  const n = c.numTrainTimesteps;
  if (c.trainedBetas) return Float32Array.from(c.trainedBetas);
  switch (c.betaSchedule) {
    case 'linear':
      return torchLinspaceF32(c.betaStart, c.betaEnd, n);
    case 'scaled_linear':
      return torchLinspaceF32(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), n).map((b) => fr(b * b));
    case 'squaredcos_cap_v2':
      return betasForAlphaBar(n);
  }
}

/** Glide's cosine schedule (betas_for_alpha_bar, max_beta 0.999), computed in double then stored as float32. */
export function betasForAlphaBar(n: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta);
  return out;
}

/** torch.cumprod(1 - betas) on float32: the CPU kernel accumulates in double and rounds each output. */
export function alphasCumprod(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= fr(1 - betas[i]);
    out[i] = acc;
  }
  return out;
}

/** DDIM's rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1) in float32 tensor arithmetic. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const ac = alphasCumprod(betas);
  const sqrtAc = ac.map((a) => fr(Math.sqrt(a)));
  const first = sqrtAc[0];
  const last = sqrtAc[sqrtAc.length - 1];
  const scale = fr(first / fr(first - last));
  const bar = sqrtAc.map((s) => {
    const shifted = fr(fr(s - last) * scale);
    return fr(shifted * shifted);
  });
  const out = new Float32Array(betas.length);
  out[0] = fr(1 - bar[0]);
  for (let i = 1; i < bar.length; i++) out[i] = fr(1 - fr(bar[i] / bar[i - 1]));
  return out;
}

/** Training sigmas sqrt((1 - ᾱ)/ᾱ) in float32 (index = training timestep, ascending). */
export function trainingSigmas(ac: Float32Array): Float32Array {
  return ac.map((a) => fr(Math.sqrt(fr(fr(1 - a) / a))));
}

// -------------------------------------------------------------------------------------------- numpy helpers

/** np.round: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.linspace(start, stop, num) in float64 (i*step + start, the last value exactly stop). */
export function npLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(i * step + start);
  out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for floats: length ceil((stop-start)/step), values start + i*delta. */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : start + i * delta);
  return out;
}

/** np.interp(x, arange(len(fp)), fp) in float64. */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0];
  if (x >= n - 1) return fp[n - 1];
  const j = Math.floor(x);
  if (x === j) return fp[j];
  const slope = (fp[j + 1] - fp[j]) / 1;
  return slope * (x - j) + fp[j];
}

/** Karras et al. (2022) sigmas: rho = 7 interpolation between in[0] and in[last], as diffusers' _convert_to_karras. */
export function karrasSigmas(inSigmas: ArrayLike<number>, n: number): number[] {
  const sigmaMin = inSigmas[inSigmas.length - 1];
  const sigmaMax = inSigmas[0];
  const rho = 7.0;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/**
 * diffusers' _sigma_to_t: the fractional training timestep whose log-sigma matches, by linear interpolation in
 * log-sigma. `logSigmas` ascends with the timestep (np.log of the float32 training sigmas).
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(sigma);
  const n = logSigmas.length;
  // Last index whose log-sigma is <= logSigma (argmax of the cumulative count), clipped so that idx+1 exists.
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, n - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** Validates an inference step count against the training schedule. */
export function checkStepCount(n: number, c: SchedulerConfig, name: string): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name}: the number of inference steps must be a positive integer (got ${n})`);
  if (n > c.numTrainTimesteps) {
    throw new RangeError(`${name}: ${n} inference steps exceed the ${c.numTrainTimesteps} training timesteps of this scheduler`);
  }
}
