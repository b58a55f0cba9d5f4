// Positive / negative perturbation (Chefer, Gur, Wolf, CVPR 2021, §4; hila-chefer/Transformer-Explainability
// baselines/ViT/pertubation_eval_from_hdf5.py): remove the input from the most relevant part to the least (positive)
// or the reverse (negative) in steps of 10 %, and record after each step whether the model still predicts the target
// class. A good explanation makes the accuracy fall fast under positive perturbation (small area under the curve) and
// stay high under negative perturbation (large area).
//
// What the repository does, and so what this module does by default:
// - the map is upsampled bilinearly to the image size (torch `interpolate(scale_factor=16, mode='bilinear')`) and the
//   ranking is over PIXELS (`torch.topk(vis, int(224·224 · step))`); `granularity: 'patch'` ranks whole patches instead;
// - removed pixels are set to 0 in the [0, 1] image (`_data.scatter_(-1, idx, 0)` on the un-normalised tensor, then
//   `normalize`), i.e. black, which is (0 − mean) / std in the model's normalised input ('black'); 'zero' sets them to
//   0 in the normalised input instead (the dataset-mean colour);
// - steps 0.1 … 0.9, count `floor(n · step)`; step 0 is the unperturbed image;
// - negative perturbation ranks the negated map (`vis = -vis`).
// Pure: the model is a callback, so that the protocol can be checked by hand on a fake model.

/** Fractions of the input removed: 0 (the unperturbed image), 0.1, …, 0.9, as in the repository. */
export const PERTURBATION_STEPS: readonly number[] = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

export type PerturbationDirection = 'positive' | 'negative';
export const PERTURBATION_DIRECTIONS: readonly PerturbationDirection[] = ['positive', 'negative'];

/**
 * What replaces a removed pixel: black in the [0, 1] image (the repository's choice), 0 in the normalised input, or
 * an 8-bit RGB colour (e.g. a synthetic world's background, so that removal paints background instead of a colour
 * the model never saw).
 */
export type PerturbationFill = 'black' | 'zero' | readonly [number, number, number];
export const PERTURBATION_FILL_NAMES = ['black', 'zero'] as const;

/** A fill as text: 'black', 'zero' or 'R,G,B'. */
export function fillName(fill: PerturbationFill): string {
  return typeof fill === 'string' ? fill : fill.join(',');
}

/** Rank single pixels of the upsampled map (the repository) or whole patches of the map itself. */
export type PerturbationGranularity = 'pixel' | 'patch';
export const PERTURBATION_GRANULARITIES: readonly PerturbationGranularity[] = ['pixel', 'patch'];

/**
 * Indices of `scores` from the first removed to the last: descending score for positive perturbation, ascending for
 * negative (the repository ranks −map). Ties keep index order (torch.topk leaves their order unspecified); non-finite
 * scores count as the least relevant in both directions, so a NaN is never "most relevant".
 */
export function removalOrder(scores: ArrayLike<number>, direction: PerturbationDirection): Int32Array {
  const n = scores.length;
  const key = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = scores[i]!;
    key[i] = Number.isFinite(v) ? (direction === 'positive' ? v : -v) : -Infinity;
  }
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (key[b]! - key[a]!) || a - b);
  return Int32Array.from(idx);
}

/** How many of `n` units a step removes: `int(n · step)` as the repository computes it. */
export function removedCount(n: number, step: number): number {
  // Same float64 product and truncation as Python's int(base_size * step), so the counts match the repository's.
  return Math.floor(n * step);
}

/** Per-channel value of a removed pixel in the model's input, from the processor's normalisation. */
export function fillValues(fill: PerturbationFill, p: { doRescale: boolean; rescaleFactor: number; doNormalize: boolean; mean: readonly number[]; std: readonly number[] }): number[] {
  if (fill === 'zero') return [0, 0, 0];
  const rgb = fill === 'black' ? [0, 0, 0] : fill;
  // The processor's own arithmetic (image-processor.ts): rescale in double, float32, then (x − mean) / std in float32.
  return [0, 1, 2].map((c) => {
    const x = Math.fround(p.doRescale ? rgb[c]! * p.rescaleFactor : rgb[c]!);
    return p.doNormalize ? Math.fround(Math.fround(x - Math.fround(p.mean[c]!)) / Math.fround(p.std[c]!)) : x;
  });
}

/**
 * The pixel order of a patch order: every pixel of the first patch (row-major within it), then the next patch. Pixels
 * outside the patch grid (an image not a multiple of the patch size) come last.
 */
export function patchOrderToPixels(patchOrder: ArrayLike<number>, grid: { height: number; width: number }, patch: { height: number; width: number }, image: { height: number; width: number }): Int32Array {
  const out = new Int32Array(image.height * image.width);
  const seen = new Uint8Array(out.length);
  let k = 0;
  for (let i = 0; i < patchOrder.length; i++) {
    const p = patchOrder[i]!;
    const py = Math.floor(p / grid.width);
    const px = p % grid.width;
    for (let y = py * patch.height; y < (py + 1) * patch.height && y < image.height; y++) {
      for (let x = px * patch.width; x < (px + 1) * patch.width && x < image.width; x++) {
        out[k++] = y * image.width + x;
        seen[y * image.width + x] = 1;
      }
    }
  }
  for (let i = 0; i < out.length; i++) if (!seen[i]) out[k++] = i;
  return out;
}

/**
 * A copy of `pixels` ([3, H, W] channel-first, one image) with the first `count` pixels of `order` (indices into
 * H·W) set to `fill` in every channel.
 */
export function removePixels(pixels: Float32Array, height: number, width: number, order: ArrayLike<number>, count: number, fill: readonly number[]): Float32Array {
  const plane = height * width;
  if (pixels.length !== 3 * plane) throw new RangeError(`expected 3×${height}×${width} pixel values, got ${pixels.length}`);
  const out = pixels.slice();
  for (let k = 0; k < count; k++) {
    const i = order[k]!;
    for (let c = 0; c < 3; c++) out[c * plane + i] = fill[c]!;
  }
  return out;
}

/** Area under a curve by the trapezoid rule (numpy.trapz(y, x)). */
export function trapezoidArea(xs: readonly number[], ys: readonly number[]): number {
  if (xs.length !== ys.length) throw new RangeError(`trapezoid: ${xs.length} x values but ${ys.length} y values`);
  let area = 0;
  for (let i = 1; i < xs.length; i++) area += ((xs[i]! - xs[i - 1]!) * (ys[i]! + ys[i - 1]!)) / 2;
  return area;
}

/** The model, as the protocol sees it: predicted class of each perturbed input (batched when it can be). */
export type Classifier = (inputs: readonly Float32Array[]) => Promise<number[]>;

export interface PerturbationInput {
  /** Normalised pixel values [3, H, W] of the unperturbed image. */
  pixels: Float32Array;
  height: number;
  width: number;
  /** Removal order over the H·W pixels (see removalOrder / patchOrderToPixels). */
  order: ArrayLike<number>;
  /** Ranked units a step counts (H·W pixels, or the patches) and how many pixels of `order` each covers (1, or the patch area). */
  units: { count: number; pixelsEach: number };
  fill: readonly number[];
  target: number;
  steps?: readonly number[];
}

/**
 * Whether the prediction equals the target after each step (1 or 0), for one image and one order. `units` says how
 * many of the ranked items a step removes: with pixel granularity `floor(H·W · step)` pixels; with patch granularity
 * `floor(patches · step)` whole patches, converted to their pixel count.
 */
export async function perturbationHits(classify: Classifier, p: PerturbationInput): Promise<number[]> {
  const steps = p.steps ?? PERTURBATION_STEPS;
  const inputs = steps.map((s) => {
    const pixels = removedCount(p.units.count, s) * p.units.pixelsEach;
    return removePixels(p.pixels, p.height, p.width, p.order, pixels, p.fill);
  });
  const predicted = await classify(inputs);
  return predicted.map((c) => (c === p.target ? 1 : 0));
}
