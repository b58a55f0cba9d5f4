// Segmentation test of an explanation (Chefer, Gur, Wolf, CVPR 2021, §4; hila-chefer/Transformer-Explainability
// baselines/ViT/imagenet_seg_eval.py with utils/metrices.py): the map, upsampled to the image and min–max normalised,
// is read as a foreground/background segmentation and scored against the ground-truth mask.
// - prediction: foreground where the normalised map is ABOVE its mean (`Res.gt(Res.mean())`); a constant map (0/0 in
//   the normalisation, NaN in torch, zeroed there) predicts background everywhere;
// - pixel accuracy: correct pixels / all pixels, summed over the data set before dividing (total_correct / total_label);
// - mIoU: intersection and union of each class (background, foreground) summed over the data set, IoU per class,
//   mean of the two;
// - mAP: per image, average precision (sklearn's average_precision_score) of the two-channel soft prediction
//   [1 − map, map] against the one-hot mask [background, foreground] flattened together, then the mean over images.
// Pure arrays in, numbers out.

/** Min–max normalisation to [0, 1] as the repository does it; a constant (or all non-finite) map becomes all 0. */
export function minMaxNormalize(values: ArrayLike<number>): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const out = new Float32Array(values.length);
  const range = max - min;
  if (!(range > 0)) return out; // torch: (x − min) / 0 = NaN, then `Res[Res != Res] = 0`
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out[i] = Number.isFinite(v) ? (v - min) / range : 0;
  }
  return out;
}

/**
 * Average precision as sklearn's average_precision_score: Σₙ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds from the
 * highest down (tied scores enter together). 0 when there is no positive (sklearn: NaN, `np.nan_to_num` → 0).
 */
export function averagePrecision(scores: ArrayLike<number>, positives: ArrayLike<number | boolean>): number {
  const n = scores.length;
  if (positives.length !== n) throw new RangeError(`averagePrecision: ${n} scores but ${positives.length} labels`);
  let totalPositive = 0;
  for (let i = 0; i < n; i++) if (positives[i]) totalPositive++;
  if (totalPositive === 0) return 0;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let tp = 0;
  let fp = 0;
  let prevRecall = 0;
  let ap = 0;
  for (let k = 0; k < n; ) {
    const s = scores[idx[k]!]!;
    while (k < n && scores[idx[k]!]! === s) {
      if (positives[idx[k]!]) tp++;
      else fp++;
      k++;
    }
    const recall = tp / totalPositive;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/** The scores of one image against its mask. */
export interface ImageSegmentation {
  /** Pixels where the thresholded map equals the mask, and all pixels. */
  correct: number;
  labeled: number;
  /** [background, foreground] intersection and union in pixels. */
  intersection: [number, number];
  union: [number, number];
  /** Average precision of [1 − map, map] against [background, foreground]. */
  ap: number;
}

/**
 * Scores a map already at the mask's resolution (upsampled) against a binary mask (non-zero = foreground).
 * `map` is min–max normalised here, as the repository does after upsampling.
 */
export function scoreSegmentation(map: ArrayLike<number>, mask: ArrayLike<number>): ImageSegmentation {
  const n = map.length;
  if (mask.length !== n) throw new RangeError(`the map has ${n} pixels but the mask has ${mask.length}: upsample the map to the mask's size first`);
  const r = minMaxNormalize(map);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += r[i]!;
  mean /= n;
  let correct = 0;
  const inter: [number, number] = [0, 0];
  const predCount: [number, number] = [0, 0];
  const labelCount: [number, number] = [0, 0];
  const apScores = new Float32Array(2 * n);
  const apLabels = new Uint8Array(2 * n);
  for (let i = 0; i < n; i++) {
    const pred = r[i]! > mean ? 1 : 0;
    const truth = mask[i] ? 1 : 0;
    predCount[pred]++;
    labelCount[truth]++;
    if (pred === truth) {
      correct++;
      inter[pred]++;
    }
    // Channel 0 (background) then channel 1 (foreground), as the flattened [2, H, W] output and one-hot target.
    apScores[i] = 1 - r[i]!;
    apLabels[i] = truth === 0 ? 1 : 0;
    apScores[n + i] = r[i]!;
    apLabels[n + i] = truth;
  }
  return {
    correct, labeled: n, intersection: inter,
    union: [predCount[0] + labelCount[0] - inter[0], predCount[1] + labelCount[1] - inter[1]],
    ap: averagePrecision(apScores, apLabels),
  };
}

export interface SegmentationSummary {
  images: number;
  pixelAccuracy: number;
  /** Mean of the background and foreground IoU. */
  mIoU: number;
  iou: { background: number; foreground: number };
  mAP: number;
}

/** Data-set scores from per-image ones, summed and averaged as the repository does (np.spacing(1) guards 0/0). */
export function summarizeSegmentation(images: readonly ImageSegmentation[]): SegmentationSummary {
  const eps = Number.EPSILON; // np.spacing(1, dtype=float64)
  let correct = 0;
  let labeled = 0;
  const inter = [0, 0];
  const union = [0, 0];
  let ap = 0;
  for (const s of images) {
    correct += s.correct;
    labeled += s.labeled;
    for (const c of [0, 1]) {
      inter[c] += s.intersection[c as 0 | 1];
      union[c] += s.union[c as 0 | 1];
    }
    ap += s.ap;
  }
  const iou = [inter[0]! / (eps + union[0]!), inter[1]! / (eps + union[1]!)];
  return {
    images: images.length,
    pixelAccuracy: correct / (eps + labeled),
    mIoU: (iou[0]! + iou[1]!) / 2,
    iou: { background: iou[0]!, foreground: iou[1]! },
    mAP: images.length ? ap / images.length : NaN,
  };
}
