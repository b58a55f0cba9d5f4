// 2-D maps (attention, relevance) as plain row-major Float32 grids, their normalisation and resampling.
//
// Resampling follows torch.nn.functional.interpolate with align_corners=False, because DAAM and the ViT tools upsample
// with it: users comparing Heed's pictures with theirs should see the same geometry (a map cell's centre lands on the
// same pixel), and bicubic uses torch's A = −0.75 kernel with border-clamped taps.

/** A single-channel grid, row-major (`data[y * width + x]`). */
export interface Map2D {
  width: number;
  height: number;
  data: Float32Array;
}

export type ResampleMethod = 'nearest' | 'bilinear' | 'bicubic';

/**
 * How values become [0,1] for display.
 * - `minmax`: (v − min) / (max − min) over the finite values (DAAM's display normalisation);
 * - `max`: v / max, negatives clamped to 0 (vit-explain's rollout mask);
 * - `none`: values are already in [0,1] and are only clamped;
 * - `{min, max}`: a fixed range, e.g. to compare several maps on one scale.
 */
export type Normalization = 'minmax' | 'max' | 'none' | { min: number; max: number };

export class MapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MapError';
  }
}

export function makeMap(width: number, height: number, data?: ArrayLike<number>): Map2D {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new MapError(`map size must be positive integers, got ${width}×${height}`);
  }
  const d = new Float32Array(width * height);
  if (data) {
    if (data.length !== width * height) throw new MapError(`map data has ${data.length} values, expected ${width}×${height} = ${width * height}`);
    d.set(data);
  }
  return { width, height, data: d };
}

/** Statistics over finite values only; `nonFinite` counts NaN/±Inf so callers can warn about them. */
export function mapStats(values: ArrayLike<number>): { min: number; max: number; nonFinite: number } {
  let min = Infinity;
  let max = -Infinity;
  let nonFinite = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) {
      nonFinite++;
      continue;
    }
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === Infinity) return { min: 0, max: 0, nonFinite };
  return { min, max, nonFinite };
}

/**
 * Normalises to [0,1]. Non-finite inputs never produce NaN outputs: NaN and −∞ map to 0, +∞ to 1.
 * A constant map (zero range) becomes all zeros rather than a division by zero.
 */
export function normalizeValues(values: ArrayLike<number>, mode: Normalization = 'minmax'): Float32Array {
  const out = new Float32Array(values.length);
  const { min, max } = mapStats(values);
  let lo: number;
  let hi: number;
  if (mode === 'minmax') {
    lo = min;
    hi = max;
  } else if (mode === 'max') {
    lo = 0;
    hi = max;
  } else if (mode === 'none') {
    lo = 0;
    hi = 1;
  } else {
    if (!Number.isFinite(mode.min) || !Number.isFinite(mode.max) || !(mode.max > mode.min)) {
      throw new MapError(`normalisation range must be finite with max > min, got [${mode.min}, ${mode.max}]`);
    }
    lo = mode.min;
    hi = mode.max;
  }
  const range = hi - lo;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v) || v === -Infinity) out[i] = 0;
    else if (v === Infinity) out[i] = 1;
    else if (!(range > 0)) out[i] = 0;
    else out[i] = Math.min(1, Math.max(0, (v - lo) / range));
  }
  return out;
}

export function normalizeMap(map: Map2D, mode: Normalization = 'minmax'): Map2D {
  return { width: map.width, height: map.height, data: normalizeValues(map.data, mode) };
}

/** Replaces non-finite values with `fill` (copy). Resampling would otherwise smear one NaN over 4×4 neighbours. */
export function sanitizeMap(map: Map2D, fill = 0): Map2D {
  const data = new Float32Array(map.data.length);
  for (let i = 0; i < data.length; i++) {
    const v = map.data[i]!;
    data[i] = Number.isFinite(v) ? v : fill;
  }
  return { width: map.width, height: map.height, data };
}

// torch's cubic convolution kernel, A = -0.75 (upsample_bicubic2d).
const CUBIC_A = -0.75;
function cubicWeights(t: number): [number, number, number, number] {
  const a = CUBIC_A;
  const w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a;
  const w1 = ((a + 2) * t - (a + 3)) * t * t + 1;
  const u = 1 - t;
  const w2 = ((a + 2) * u - (a + 3)) * u * u + 1;
  const w3 = ((a * (u + 1) - 5 * a) * (u + 1) + 8 * a) * (u + 1) - 4 * a;
  return [w0, w1, w2, w3];
}

interface AxisTaps {
  idx: Int32Array; // taps per output (2 or 4 or 1), clamped to [0, n-1]
  w: Float64Array;
  taps: number;
}

function axisTaps(inSize: number, outSize: number, method: ResampleMethod): AxisTaps {
  const scale = inSize / outSize;
  const taps = method === 'bicubic' ? 4 : method === 'bilinear' ? 2 : 1;
  const idx = new Int32Array(outSize * taps);
  const w = new Float64Array(outSize * taps);
  const clamp = (i: number): number => Math.min(inSize - 1, Math.max(0, i));
  for (let o = 0; o < outSize; o++) {
    if (method === 'nearest') {
      // torch 'nearest' (legacy): floor(o * scale)
      idx[o] = clamp(Math.floor(o * scale));
      w[o] = 1;
      continue;
    }
    let src = (o + 0.5) * scale - 0.5;
    if (method === 'bilinear') {
      if (src < 0) src = 0; // torch clamps the linear source index at 0, not the cubic one
      const i0 = Math.floor(src);
      const t = src - i0;
      idx[o * 2] = clamp(i0);
      idx[o * 2 + 1] = clamp(i0 + 1);
      w[o * 2] = 1 - t;
      w[o * 2 + 1] = t;
    } else {
      const i0 = Math.floor(src);
      const t = src - i0;
      const cw = cubicWeights(t);
      for (let k = 0; k < 4; k++) {
        idx[o * 4 + k] = clamp(i0 - 1 + k);
        w[o * 4 + k] = cw[k]!;
      }
    }
  }
  return { idx, w, taps };
}

/**
 * Resizes a map to `outWidth × outHeight` (separable: rows, then columns), torch align_corners=False semantics.
 * Non-finite inputs are replaced by 0 first so they cannot spread. Bicubic can overshoot the input range slightly
 * (as in torch); callers that need ≥ 0 clamp afterwards (DAAM does).
 */
export function resizeMap(map: Map2D, outWidth: number, outHeight: number, method: ResampleMethod = 'bilinear'): Map2D {
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1) {
    throw new MapError(`target size must be positive integers, got ${outWidth}×${outHeight}`);
  }
  const src = sanitizeMap(map).data;
  const { width: w, height: h } = map;
  const ax = axisTaps(w, outWidth, method);
  const ay = axisTaps(h, outHeight, method);
  // Horizontal pass: h × outWidth
  const tmp = new Float64Array(h * outWidth);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < outWidth; x++) {
      let s = 0;
      for (let k = 0; k < ax.taps; k++) s += ax.w[x * ax.taps + k]! * src[row + ax.idx[x * ax.taps + k]!]!;
      tmp[y * outWidth + x] = s;
    }
  }
  const out = new Float32Array(outHeight * outWidth);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let s = 0;
      for (let k = 0; k < ay.taps; k++) s += ay.w[y * ay.taps + k]! * tmp[ay.idx[y * ay.taps + k]! * outWidth + x]!;
      out[y * outWidth + x] = s;
    }
  }
  return { width: outWidth, height: outHeight, data: out };
}
