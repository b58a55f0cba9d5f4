// The measurements of `heed eval`, as pure functions on plain arrays (tested against hand-computed cases):
//   colour masks of a Shapes image, the pointing game, IoU of a thresholded word map (DAAM's protocol),
//   cosine similarity and the A&E paper's min-object similarity, and the precision/recall sweep of a predictor.

/** A mask: 1 where the subject is, row-major [height × width]. */
export interface Mask {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Interleaved 8-bit RGB (the render layer's RgbImage). */
export interface RgbPixels {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * Each pixel goes to the nearest of `colours` (Euclidean distance in RGB) when that distance is at most `tolerance`,
 * else to none; the result is one mask per colour, in order. The VAE decodes flat colours only approximately (soft
 * edges, slight tints), hence the tolerance; the palette colours are ≥ 150 apart, so a tolerance under 75 never lets
 * a pixel qualify for two colours.
 */
export function nearestColourMasks(img: RgbPixels, colours: readonly (readonly [number, number, number])[], tolerance: number): Mask[] {
  const n = img.width * img.height;
  const masks = colours.map(() => new Uint8Array(n));
  const tol2 = tolerance * tolerance;
  for (let p = 0; p < n; p++) {
    const r = img.data[p * 3]!;
    const g = img.data[p * 3 + 1]!;
    const b = img.data[p * 3 + 2]!;
    let best = -1;
    let bestD = Infinity;
    for (let k = 0; k < colours.length; k++) {
      const c = colours[k]!;
      const d = (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2;
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    if (best >= 0 && bestD <= tol2) masks[best]![p] = 1;
  }
  return masks.map((data) => ({ width: img.width, height: img.height, data }));
}

export function maskArea(m: Mask): number {
  let a = 0;
  for (const v of m.data) a += v;
  return a;
}

/** Index of the largest value (the first one on ties); -1 when every value is NaN or the map is empty. */
export function argmax(map: ArrayLike<number>): number {
  let best = -1;
  let bestV = -Infinity;
  for (let i = 0; i < map.length; i++) {
    const v = map[i]!;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/** The pointing game: is the map's maximum inside the mask? (map and mask on the same grid) */
export function pointingHit(map: ArrayLike<number>, mask: Mask): boolean {
  if (map.length !== mask.data.length) throw new RangeError(`pointingHit: map has ${map.length} values, mask ${mask.data.length}`);
  const i = argmax(map);
  return i >= 0 && mask.data[i] === 1;
}

/** Min–max normalised to [0, 1] (a constant map becomes all 0), as DAAM's expand_image does before thresholding. */
export function normalizeMinMax(map: ArrayLike<number>): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < map.length; i++) {
    const v = map[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = new Float32Array(map.length);
  const span = hi - lo;
  if (!(span > 0)) return out;
  for (let i = 0; i < map.length; i++) out[i] = (map[i]! - lo) / span;
  return out;
}

/** Intersection over union of two masks; two empty masks give 0 (nothing was found, nothing matched). */
export function iou(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`iou: ${a.length} vs ${b.length} values`);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && b[i]) inter++;
    if (a[i] || b[i]) union++;
  }
  return union === 0 ? 0 : inter / union;
}

/** DAAM's segmentation of a word map: normalised to [0, 1], then > tau. */
export function thresholdMap(map: ArrayLike<number>, tau: number): Uint8Array {
  const norm = normalizeMinMax(map);
  const out = new Uint8Array(norm.length);
  for (let i = 0; i < norm.length; i++) out[i] = norm[i]! > tau ? 1 : 0;
  return out;
}

/** IoU of the thresholded word map against the subject's mask. */
export function mapIou(map: ArrayLike<number>, mask: Mask, tau: number): number {
  return iou(thresholdMap(map, tau), mask.data);
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`cosine: ${a.length} vs ${b.length} values`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** The A&E paper's min-object similarity: the smallest of the image's similarities to each subject's own text. */
export function minObjectSimilarity(subjectSimilarities: readonly number[]): number | null {
  return subjectSimilarities.length === 0 ? null : Math.min(...subjectSimilarities);
}

export function mean(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/** A scored case for a predictor that flags `score < threshold` (e.g. relative attention under the threshold). */
export interface ScoredCase {
  score: number;
  /** The event the predictor should flag (e.g. the subject is absent from the image). */
  positive: boolean;
}

export interface PrPoint {
  threshold: number;
  tp: number;
  fp: number;
  fn: number;
  /** tp / (tp + fp); null when nothing is flagged. */
  precision: number | null;
  /** tp / (tp + fn); null when there is no positive case. */
  recall: number | null;
}

/** Precision and recall of "flag when score < threshold" at each threshold. */
export function prSweep(cases: readonly ScoredCase[], thresholds: readonly number[]): PrPoint[] {
  return thresholds.map((t) => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (const c of cases) {
      const flagged = c.score < t;
      if (flagged && c.positive) tp++;
      else if (flagged) fp++;
      else if (c.positive) fn++;
    }
    return { threshold: t, tp, fp, fn, precision: tp + fp > 0 ? tp / (tp + fp) : null, recall: tp + fn > 0 ? tp / (tp + fn) : null };
  });
}

/** 0, 0.01, …, 1: the thresholds `heed eval` sweeps. */
export function thresholdGrid(steps = 100): number[] {
  return Array.from({ length: steps + 1 }, (_, i) => Math.round((i / steps) * 1e6) / 1e6);
}

/**
 * The threshold that reaches `minRecall` with the best precision; among equals, the higher recall, then the lower
 * threshold (fewer warnings). Undefined when no threshold reaches the recall (or there is no positive case).
 */
export function chooseThreshold(points: readonly PrPoint[], minRecall: number): PrPoint | undefined {
  let best: PrPoint | undefined;
  for (const p of points) {
    if (p.recall === null || p.precision === null || p.recall < minRecall) continue;
    if (!best || p.precision > best.precision! || (p.precision === best.precision && (p.recall > best.recall! || (p.recall === best.recall && p.threshold < best.threshold)))) best = p;
  }
  return best;
}

/** F1 of a point (0 when precision or recall is undefined or both are 0). */
export function f1(p: PrPoint): number {
  if (p.precision === null || p.recall === null || p.precision + p.recall === 0) return 0;
  return (2 * p.precision * p.recall) / (p.precision + p.recall);
}

/** The threshold with the best F1 (the lowest among equals); undefined when no point has a positive F1. */
export function bestF1(points: readonly PrPoint[]): PrPoint | undefined {
  let best: PrPoint | undefined;
  for (const p of points) if (f1(p) > 0 && (!best || f1(p) > f1(best))) best = p;
  return best;
}
