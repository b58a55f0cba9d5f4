// Pillow's `Image.resize` for 8-bit images, reimplemented so that Heed's resized pixels equal the ones transformers'
// Python image processors get from PIL (they call `PIL.Image.resize(size, resample, reducing_gap=None)`).
// Written from Pillow 9.4's behaviour (src/libImaging/Resample.c, Geometry.c, _imaging.c `_resize`):
//  - convolution filters are separable: a horizontal pass into an intermediate uint8 image, then a vertical pass;
//    a pass is skipped when its axis keeps its size;
//  - when downscaling, the filter is stretched by the scale (support × scale), which is PIL's antialiasing;
//  - per output pixel the window is [trunc(center − support + 0.5), trunc(center + support + 0.5)) clipped to the
//    image, the weights are normalised to sum 1 in double, then turned into 22-bit fixed point (rounding half away
//    from zero), accumulated in integers from 2^21 (the rounding offset) and clipped to 0..255 after >> 22;
//  - NEAREST is not a filter but PIL's affine scale: the source x of output column i is the running double sum
//    x0 = scale/2, x_{i+1} = x_i + scale, truncated.
// Every step is done in IEEE double exactly like the C code (same operation order), so the results are bit-identical
// (checked against PIL on test/fixtures/preprocess).

/** PIL's resampling filters. */
export type ResampleFilter = 'nearest' | 'box' | 'bilinear' | 'hamming' | 'bicubic' | 'lanczos';

/** PIL's integer codes (`PIL.Image.Resampling`), the `resample` values of preprocessor_config.json. */
export const PIL_RESAMPLE_CODES: Readonly<Record<number, ResampleFilter>> = {
  0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming',
};

/** An interleaved 8-bit image, `height × width × channels`. */
export interface Image8 {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

interface ConvolutionFilter {
  weight(x: number): number;
  support: number;
}

// C's `0.54f` / `0.46f`: float constants, promoted to double in the expression.
const HAMMING_A = Math.fround(0.54);
const HAMMING_B = Math.fround(0.46);

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<Exclude<ResampleFilter, 'nearest'>, ConvolutionFilter> = {
  box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  hamming: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const px = a * Math.PI;
      return (Math.sin(px) / px) * (HAMMING_A + HAMMING_B * Math.cos(px));
    },
  },
  bicubic: {
    // Keys' cubic convolution with a = −0.5, in the C code's evaluation order.
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/** Per output position: the first source index, how many follow, and their fixed-point weights. */
interface Coefficients {
  start: Int32Array;
  count: Int32Array;
  /** `outSize × taps` 22-bit fixed-point weights. */
  weights: Int32Array;
  taps: number;
}

function coefficients(inSize: number, outSize: number, filter: ConvolutionFilter): Coefficients {
  const scale = inSize / outSize; // (double)(in1 − in0) / outSize with the whole image as the box
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const ss = 1 / filterScale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const k = new Float64Array(taps);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      k[x] = w;
      sum += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = sum !== 0 ? k[x] / sum : k[x];
      // (int)(±0.5 + w · 2^22): C's conversion truncates toward zero.
      weights[xx * taps + x] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
    start[xx] = xmin;
    count[xx] = Math.max(0, xmax);
  }
  return { start, count, weights, taps };
}

/** PIL's clip8: the accumulator's integer part (arithmetic >> 22), clipped to 0..255. */
function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontalPass(src: Image8, outWidth: number, c: Coefficients): Image8 {
  const { width, height, channels } = src;
  const out = new Uint8Array(outWidth * height * channels);
  if (channels === 3) {
    // RGB, the case that matters: the three channels share each tap's weight (as PIL's loop does), ~2× faster.
    const data = src.data;
    const weights = c.weights;
    for (let y = 0; y < height; y++) {
      const row = y * width * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const n = c.count[xx];
        const kOff = xx * c.taps;
        let p = row + c.start[xx] * 3;
        let r = HALF;
        let g = HALF;
        let b = HALF;
        for (let x = 0; x < n; x++, p += 3) {
          const k = weights[kOff + x];
          r += data[p] * k;
          g += data[p + 1] * k;
          b += data[p + 2] * k;
        }
        const o = (y * outWidth + xx) * 3;
        out[o] = clip8(r);
        out[o + 1] = clip8(g);
        out[o + 2] = clip8(b);
      }
    }
    return { data: out, width: outWidth, height, channels };
  }
  for (let y = 0; y < height; y++) {
    const row = y * width * channels;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = c.start[xx];
      const n = c.count[xx];
      const kOff = xx * c.taps;
      for (let ch = 0; ch < channels; ch++) {
        let acc = HALF;
        for (let x = 0; x < n; x++) acc += src.data[row + (xmin + x) * channels + ch] * c.weights[kOff + x];
        out[(y * outWidth + xx) * channels + ch] = clip8(acc);
      }
    }
  }
  return { data: out, width: outWidth, height, channels };
}

function verticalPass(src: Image8, outHeight: number, c: Coefficients): Image8 {
  const { width, channels } = src;
  const stride = width * channels;
  const out = new Uint8Array(outHeight * stride);
  const acc = new Float64Array(stride);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = c.start[yy];
    const n = c.count[yy];
    const kOff = yy * c.taps;
    // Row by row over the taps (cache-friendly); each sum still adds the taps in PIL's order, exactly in doubles.
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const k = c.weights[kOff + y];
      const base = (ymin + y) * stride;
      for (let i = 0; i < stride; i++) acc[i] += src.data[base + i] * k;
    }
    for (let i = 0; i < stride; i++) out[yy * stride + i] = clip8(acc[i]);
  }
  return { data: out, width, height: outHeight, channels };
}

/**
 * Source indices PIL's nearest-neighbour scaling reads for each output index (ImagingScaleAffine), −1 where the
 * position falls outside the image (PIL leaves those pixels 0; with a whole-image box that cannot happen in practice).
 */
function nearestIndices(inSize: number, outSize: number): Int32Array {
  const step = inSize / outSize;
  const idx = new Int32Array(outSize);
  let pos = step * 0.5; // a[2] + a[0]·0.5 with a[2] = 0, then accumulated: the running sum's rounding matters
  for (let i = 0; i < outSize; i++) {
    const p = pos < 0 ? -1 : Math.trunc(pos); // COORD()
    idx[i] = p < inSize ? p : -1;
    pos += step;
  }
  return idx;
}

function resizeNearest(src: Image8, outWidth: number, outHeight: number): Image8 {
  const { width, channels } = src;
  const xs = nearestIndices(width, outWidth);
  const ys = nearestIndices(src.height, outHeight);
  const out = new Uint8Array(outWidth * outHeight * channels);
  for (let y = 0; y < outHeight; y++) {
    if (ys[y] < 0) continue;
    for (let x = 0; x < outWidth; x++) {
      if (xs[x] < 0) continue;
      const s = (ys[y] * width + xs[x]) * channels;
      const d = (y * outWidth + x) * channels;
      for (let ch = 0; ch < channels; ch++) out[d + ch] = src.data[s + ch];
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels };
}

/** `PIL.Image.resize((outWidth, outHeight), resample=filter)` (no box, reducing_gap=None) of an 8-bit image. */
export function resizeLikePil(src: Image8, outWidth: number, outHeight: number, filter: ResampleFilter): Image8 {
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1) {
    throw new RangeError(`resize target ${outWidth}×${outHeight} must be positive integers`);
  }
  if (src.data.length !== src.width * src.height * src.channels) {
    throw new RangeError(`image buffer has ${src.data.length} bytes, expected ${src.width}×${src.height}×${src.channels}`);
  }
  if (outWidth === src.width && outHeight === src.height) return { ...src, data: src.data.slice() }; // PIL copies
  if (filter === 'nearest') return resizeNearest(src, outWidth, outHeight);
  const f = FILTERS[filter];
  let img = src;
  if (outWidth !== src.width) img = horizontalPass(img, outWidth, coefficients(src.width, outWidth, f));
  if (outHeight !== src.height) img = verticalPass(img, outHeight, coefficients(src.height, outHeight, f));
  return img;
}
