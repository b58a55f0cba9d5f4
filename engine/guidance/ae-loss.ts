// The Attend-and-Excite loss on aggregated cross-attention maps, and its exact gradient with respect to those maps.
// It follows diffusers' StableDiffusionAttendAndExcitePipeline (v0.21.4) step by step, quirks included:
//  - the SOT column and the last column are dropped (`[:, :, 1:-1]`), the rest is ×100 and softmaxed over tokens;
//  - token indices shift by −1 after that slice;
//  - each subject's map is reflect-padded by 1 and smoothed by a depthwise 3×3 Gaussian whose 1-D weights are
//    exp(-((x-μ)/(2σ))²) normalised — with σ = 0.5 that is [0.2119, 0.5761, 0.2119], not a textbook σ = 0.5 kernel;
//  - score = max of the smoothed map; loss = max_i max(0, 1 − score_i), with Python's max semantics (see below).
// The gradient is written by hand (it is a handful of small ops on a 16×16×77 array); the VJP graph takes it from
// the maps back to the latents.

export interface AeLossOptions {
  /** Gaussian smoothing of each subject's map (default true). */
  smoothing: boolean;
  /** σ of the Gaussian (default 0.5). */
  sigma: number;
  /** Kernel size (odd, default 3). */
  kernelSize: number;
  /**
   * Softmax over tokens [1, end): `end = keyLength − 1` is diffusers' SD1.x `[1:-1]`; the original repo's SD 2.x variant
   * passes the EOT position so only the prompt's tokens compete.
   */
  sliceEnd?: number;
}

export const DEFAULT_AE_LOSS: AeLossOptions = { smoothing: true, sigma: 0.5, kernelSize: 3 };

export interface AeLossResult {
  loss: number;
  /** Max of each subject's smoothed, softmaxed map (diffusers' max_attention_per_index). */
  scores: number[];
  /** ∂loss/∂maps, same layout as the maps (h, w, k), zero when the loss is 0. */
  gradMaps: Float32Array;
}

/** diffusers' GaussianSmoothing kernel, 1-D factor (the 2-D kernel is its outer product). */
export function gaussianKernel1d(size: number, sigma: number): number[] {
  const mean = (size - 1) / 2;
  const w = Array.from({ length: size }, (_, x) => Math.exp(-(((x - mean) / (2 * sigma)) ** 2)));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / s);
}

function reflectIndex(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/**
 * Computes the loss and its gradient.
 * @param maps aggregated attention (h, w, k) row-major: maps[(y*w + x)*k + token]
 * @param subjects token positions in the full sequence (SOT = 0), e.g. [2, 5] for "a cat and a frog"
 */
export function aeLoss(maps: Float32Array, h: number, w: number, k: number, subjects: readonly number[], options: AeLossOptions = DEFAULT_AE_LOSS): AeLossResult {
  if (maps.length !== h * w * k) throw new Error(`aeLoss: maps hold ${maps.length} values, expected ${h}×${w}×${k}`);
  const end = options.sliceEnd ?? k - 1;
  const n = end - 1; // tokens competing in the softmax
  for (const s of subjects) {
    if (s < 1 || s >= end) throw new Error(`aeLoss: subject token index ${s} is outside the scored range [1, ${end - 1}]`);
  }
  const pixels = h * w;
  // Softmax over tokens [1, end) of 100·A, per pixel; float64 for the host maths.
  const soft = new Float64Array(pixels * n);
  for (let p = 0; p < pixels; p++) {
    let m = -Infinity;
    for (let j = 0; j < n; j++) m = Math.max(m, 100 * maps[p * k + 1 + j]);
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const e = Math.exp(100 * maps[p * k + 1 + j] - m);
      soft[p * n + j] = e;
      sum += e;
    }
    for (let j = 0; j < n; j++) soft[p * n + j] /= sum;
  }
  const kernel = options.smoothing ? gaussianKernel1d(options.kernelSize, options.sigma) : [1];
  const r = (kernel.length - 1) / 2;
  const scores: number[] = [];
  const argmax: number[] = [];
  for (const s of subjects) {
    const j = s - 1;
    let best = -Infinity;
    let bestP = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0;
        for (let dy = -r; dy <= r; dy++) {
          const yy = reflectIndex(y + dy, h);
          for (let dx = -r; dx <= r; dx++) {
            const xx = reflectIndex(x + dx, w);
            v += kernel[dy + r] * kernel[dx + r] * soft[(yy * w + xx) * n + j];
          }
        }
        // Strict '>' keeps the first maximum, as torch's max does when it picks one index; torch's max propagates NaN.
        if (v > best || (Number.isNaN(v) && !Number.isNaN(best))) {
          best = v;
          bestP = y * w + x;
        }
      }
    }
    scores.push(best);
    argmax.push(bestP);
  }
  // Python's max(0, 1 − s) and max(losses), whose semantics differ from Math.max: max(a, b) keeps a unless b > a, so a
  // NaN score (latents that blew up) gives loss 0 — no update — where Math.max would spread the NaN; and max() over
  // the list keeps the FIRST largest loss, the only subject the gradient then flows through.
  const losses = scores.map((v) => (1 - v > 0 ? 1 - v : 0));
  let which = 0;
  for (let s = 1; s < losses.length; s++) if (losses[s] > losses[which]) which = s;
  const loss = losses.length === 0 ? 0 : losses[which];
  const gradMaps = new Float32Array(maps.length);
  if (loss === 0) return { loss, scores, gradMaps };
  const j = subjects[which] - 1;
  const p = argmax[which];
  const py = Math.floor(p / w);
  const px = p % w;
  // ∂loss/∂soft[:, :, j]: −1 at the argmax of the smoothed map, spread back through the kernel and the reflect pad.
  const gSoft = new Float64Array(pixels);
  for (let dy = -r; dy <= r; dy++) {
    const yy = reflectIndex(py + dy, h);
    for (let dx = -r; dx <= r; dx++) {
      const xx = reflectIndex(px + dx, w);
      gSoft[yy * w + xx] -= kernel[dy + r] * kernel[dx + r];
    }
  }
  // Back through the per-pixel softmax: g_x = s ⊙ (g − Σ g⊙s), with g non-zero only in column j; then ×100.
  for (let q = 0; q < pixels; q++) {
    const g = gSoft[q];
    if (g === 0) continue;
    const sj = soft[q * n + j];
    for (let t = 0; t < n; t++) {
      const st = soft[q * n + t];
      const gx = (t === j ? g : 0) * st - st * g * sj;
      gradMaps[q * k + 1 + t] = 100 * gx;
    }
  }
  return { loss, scores, gradMaps };
}

/** diffusers' step-size schedule: scale_factor · sqrt(linspace(1.0, 0.5, T)). */
export function aeStepSizes(scaleFactor: number, timesteps: number): number[] {
  if (timesteps === 1) return [scaleFactor];
  // numpy's linspace: i·step + start, with the endpoint set exactly.
  const step = (0.5 - 1.0) / (timesteps - 1);
  return Array.from({ length: timesteps }, (_, i) => scaleFactor * Math.sqrt(i === timesteps - 1 ? 0.5 : i * step + 1.0));
}
