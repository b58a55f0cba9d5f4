// `heed eval explain`: scores explanation methods over a folder of images as Chefer, Gur & Wolf (CVPR 2021) do —
// positive / negative perturbation curves with their areas, and segmentation against masks where the folder has them
// (the metrics are engine/explain/evaluation; this file runs them over the folder with one opened model).
// Per image: one plain forward for the prediction, one explain run for every method (gradients shared), then per
// method and direction one batched forward of the 10 perturbed inputs (0 … 90 % removed).
import type * as ortTypes from 'onnxruntime-node';
import { HeedError } from '../errors.js';
import { openSession, runSession, ort } from '../onnx/session.js';
import { Graph, valueInfoType } from '../onnx/graph.js';
import type { ModelLoadOptions, ExplainOptions } from '../explain/index.js';
import type { PreparedImage } from '../explain/preprocess.js';
import type { Image8 } from '../image/resample.js';
import {
  PERTURBATION_STEPS, PERTURBATION_DIRECTIONS, fillValues, fillName, removalOrder, patchOrderToPixels, perturbationHits, trapezoidArea,
  scoreSegmentation, summarizeSegmentation, explainOptionsFor, methodMap, randomMap, upsampleToImage,
  type EvalMethod, type PerturbationDirection, type PerturbationFill, type PerturbationGranularity, type ImageSegmentation,
  type SegmentationSummary, type Classifier,
} from '../explain/evaluation/index.js';
import type { GridMap } from '../explain/tensor.js';
import { openExplainModels, type ExplainModels } from './explain.js';
import { listEvalImages, resolveLabel, type EvalImageEntry } from './eval-explain-folder.js';

/** Whose class is explained and whose prediction must survive: the model's own top class, or the folder's label. */
export type EvalTarget = 'predicted' | 'label';
export const EVAL_TARGETS: readonly EvalTarget[] = ['predicted', 'label'];

export interface EvalExplainSpec {
  modelDir: string;
  imagesDir: string;
  methods: readonly EvalMethod[];
  target: EvalTarget;
  fill: PerturbationFill;
  granularity: PerturbationGranularity;
  /** Use only the first N images (name order). */
  limit?: number;
  /** Seed of the `random` baseline (per image: seed + image index). */
  seed?: number;
  /** Extra explain options (e.g. cheferStart) passed to every explain run. */
  explain?: ExplainOptions;
  load?: ModelLoadOptions;
}

export interface EvalExplainHooks {
  signal?: AbortSignal;
  /** After each image, 1-based. */
  onImage?(done: number, total: number, stem: string): void;
}

export interface DirectionScores {
  /** Mean accuracy over the images at each step of `steps`. */
  accuracy: number[];
  /** Trapezoid area of `accuracy` over the removed fractions 0 … 0.9 (at most 0.9). */
  auc: number;
}

export interface MethodScores {
  method: EvalMethod;
  positive: DirectionScores;
  negative: DirectionScores;
  /** Over the images that have a mask; absent when none has. */
  segmentation?: SegmentationSummary;
  /** Mean milliseconds of the method per image (its own step of the explain run; gradients shared are separate). */
  meanMs: number;
}

export interface ImageRecord {
  stem: string;
  predicted: number;
  label?: number;
  target: number;
  /** Per method: the hit (1) or miss (0) at each step, and the segmentation scores when the image has a mask. */
  methods: Record<string, { positive: number[]; negative: number[]; segmentation?: { pixelAccuracy: number; iou: [number, number]; ap: number } }>;
}

export interface EvalExplainReport {
  model: { dir: string; classes: number; grid: { height: number; width: number }; patch: { height: number; width: number }; imageSize: { height: number; width: number } };
  images: { dir: string; count: number; withMasks: number; withLabels: number };
  protocol: {
    target: EvalTarget;
    steps: readonly number[];
    granularity: PerturbationGranularity;
    /** 'black', 'zero' or 'R,G,B'. */
    fill: string;
    fillValues: number[];
    auc: string;
    segmentation: string;
  };
  /** Top-1 accuracy of the unperturbed model against the labels, when every image has one. */
  modelAccuracy?: number;
  methods: MethodScores[];
  perImage: ImageRecord[];
  /** Milliseconds of the gradient run shared by the gradient methods, mean per image. */
  meanGradientMs?: number;
  totalMs: number;
}

/** Predicted classes of a batch of inputs through the plain (unedited) model: no attention outputs to fetch. */
async function plainClassifier(models: ExplainModels, dims: [number, number, number, number], load: ModelLoadOptions): Promise<{ classify: Classifier; release(): Promise<void> }> {
  const model = models.model;
  const session: ortTypes.InferenceSession = await openSession(model.onnx, { intraOpThreads: load.intraOpThreads ?? 1, device: load.device });
  const input = new Graph(model.onnx).realInputs().find((v) => v.name === 'pixel_values');
  const batchDim = input ? valueInfoType(input)?.dims?.[0] : undefined;
  const maxBatch = typeof batchDim === 'number' ? batchDim : 16;
  const output = model.scoreOutput;
  const [, c, h, w] = dims;
  const classify: Classifier = async (inputs) => {
    const predicted: number[] = [];
    for (let start = 0; start < inputs.length; start += maxBatch) {
      const chunk = inputs.slice(start, start + maxBatch);
      const data = new Float32Array(maxBatch === 1 || typeof batchDim !== 'number' ? chunk.length * c * h * w : batchDim * c * h * w);
      chunk.forEach((x, i) => data.set(x, i * c * h * w));
      const batch = typeof batchDim === 'number' ? batchDim : chunk.length;
      const out = await runSession(session, { pixel_values: new ort.Tensor('float32', data, [batch, c, h, w]) }, [output]);
      const logits = out[output]!.data as Float32Array;
      const classes = logits.length / batch;
      for (let b = 0; b < chunk.length; b++) {
        let best = 0;
        for (let k = 1; k < classes; k++) if (logits[b * classes + k]! > logits[b * classes + best]!) best = k;
        predicted.push(best);
      }
    }
    return predicted;
  };
  return { classify, release: () => session.release() };
}

/** A mask file as a 0/1 plane at the geometry the model saw: the processor's resize and crop, nearest-neighbour. */
async function readMask(models: ExplainModels, path: string, image: PreparedImage): Promise<Uint8Array> {
  const { decodeRgb } = await import('../explain/preprocess.js');
  const { runProcessor } = await import('../explain/image-processor.js');
  const { height, width } = image;
  const raw = await decodeRgb(path).catch((e: unknown) => {
    throw new HeedError('invalid_input', `mask ${path}: ${(e as Error).message}`, { field: 'images', cause: e });
  });
  const size = image.originalSize;
  if (raw.width !== size.width || raw.height !== size.height) {
    throw new HeedError('invalid_input', `mask ${path} is ${raw.width}×${raw.height} but its image is ${size.width}×${size.height}; a mask must have its image's size`, { field: 'images' });
  }
  const n = raw.width * raw.height;
  const binary: Image8 = { data: new Uint8Array(n * 3), width: raw.width, height: raw.height, channels: 3 };
  for (let i = 0; i < n; i++) {
    const grey = (raw.data[i * 3]! + raw.data[i * 3 + 1]! + raw.data[i * 3 + 2]!) / 3;
    binary.data.fill(grey >= 128 ? 255 : 0, i * 3, i * 3 + 3);
  }
  const geometry = runProcessor({ ...models.model.preprocessor.spec, resample: 'nearest' }, binary).rgb;
  if (geometry.height !== height || geometry.width !== width) {
    throw new HeedError('internal', `mask ${path} processed to ${geometry.height}×${geometry.width}, the image to ${height}×${width}`);
  }
  const mask = new Uint8Array(height * width);
  for (let i = 0; i < mask.length; i++) mask[i] = geometry.data[i * 3]! >= 128 ? 1 : 0;
  return mask;
}

function checkSpec(spec: EvalExplainSpec, entries: EvalImageEntry[]): EvalImageEntry[] {
  if (spec.methods.length === 0) throw new HeedError('invalid_input', 'no method to evaluate: name at least one', { field: 'methods' });
  if (spec.limit !== undefined && (!Number.isInteger(spec.limit) || spec.limit < 1)) {
    throw new HeedError('invalid_input', `limit must be a positive integer (got ${spec.limit})`, { field: 'limit' });
  }
  const chosen = spec.limit !== undefined ? entries.slice(0, spec.limit) : entries;
  if (chosen.length === 0) {
    throw new HeedError('invalid_input', `${spec.imagesDir} has no images (.png, .jpg, .jpeg, .webp; <stem>.mask.png files are masks, not images)`, { field: 'images' });
  }
  if (spec.target === 'label') {
    const missing = chosen.filter((e) => e.label === undefined);
    if (missing.length) {
      throw new HeedError('invalid_input', `target 'label' needs a <stem>.label.txt beside every image; ${missing.length} have none (first: ${missing[0]!.stem}). ` +
        "Write the labels or use target 'predicted'", { field: 'target' });
    }
  }
  return chosen;
}

export async function runEvalExplain(spec: EvalExplainSpec, hooks: EvalExplainHooks = {}): Promise<EvalExplainReport> {
  const t0 = performance.now();
  const entries = checkSpec(spec, listEvalImages(spec.imagesDir));
  const load = spec.load ?? {};
  const { validateExplainOptions } = await import('../explain/index.js');
  validateExplainOptions(explainOptionsFor(spec.methods, 0, spec.explain));
  const models = await openExplainModels(spec.modelDir, load);
  if (models.model.family !== 'vit' || !models.model.hasScores) {
    await models.release();
    throw new HeedError('invalid_input', `${spec.modelDir} is not an image classifier (${models.model.family === 'vit' ? "no 'logits' output" : `a ${models.model.family} model`}): ` +
      'the evaluation scores whether the predicted class survives perturbation, so it needs a ViT-like classifier with class logits', { field: 'model' });
  }
  let classifier: Awaited<ReturnType<typeof plainClassifier>> | undefined;
  try {
    const { explainWithModel } = await import('../explain/index.js');
    const info = models.model.info;
    const processor = models.model.preprocessor.spec;
    const fill = fillValues(spec.fill, processor);
    const hits = new Map<EvalMethod, Record<PerturbationDirection, number[][]>>(spec.methods.map((m) => [m, { positive: [], negative: [] }]));
    const segmentations = new Map<EvalMethod, ImageSegmentation[]>(spec.methods.map((m) => [m, []]));
    const methodMs = new Map<EvalMethod, number>(spec.methods.map((m) => [m, 0]));
    let gradientMs = 0;
    const perImage: ImageRecord[] = [];
    let grid: { height: number; width: number } | undefined;
    let imageSize: { height: number; width: number } | undefined;
    let classCount = 0;
    let correct = 0;
    const engineMethods = spec.methods.filter((m) => m !== 'random');

    for (const [index, entry] of entries.entries()) {
      if (hooks.signal?.aborted) throw new HeedError('cancelled', `evaluation cancelled before image ${index + 1} of ${entries.length}`);
      const image = await models.model.prepareImage(entry.image).catch((e: unknown) => {
        throw e instanceof HeedError && e.kind === 'invalid_input' ? new HeedError('invalid_input', `${entry.image}: ${e.message}`, { field: 'images', cause: e }) : e;
      });
      if (imageSize && (image.height !== imageSize.height || image.width !== imageSize.width)) {
        throw new HeedError('invalid_input', `${entry.image} is processed to ${image.height}×${image.width} but the first image to ${imageSize.height}×${imageSize.width}; the processor keeps the aspect ratio, so give images of one size`, { field: 'images' });
      }
      imageSize = { height: image.height, width: image.width };
      classifier ??= await plainClassifier(models, image.dims, load);
      const [predicted] = await classifier.classify([image.pixelValues]);
      classCount = models.model.staticClassCount ?? classCount;
      const label = entry.label !== undefined ? resolveLabel(entry.label, info.labels, models.model.staticClassCount ?? Number.MAX_SAFE_INTEGER, `${entry.stem}.label.txt`) : undefined;
      if (label !== undefined && label === predicted) correct++;
      const target = spec.target === 'label' ? label! : predicted!;

      const maps = new Map<EvalMethod, GridMap>();
      if (engineMethods.length) {
        const result = await explainWithModel(models.model, models.gradients, image, explainOptionsFor(engineMethods, target, spec.explain));
        grid = result.model.grid;
        classCount = classCount || (result.classes?.length ?? 0);
        for (const m of engineMethods) {
          maps.set(m, methodMap(result, m));
          methodMs.set(m, methodMs.get(m)! + (result.timings[m] ?? 0));
        }
        gradientMs += result.timings.gradients ?? 0;
      }
      grid ??= { height: Math.floor(image.height / info.patch.height), width: Math.floor(image.width / info.patch.width) };
      if (spec.methods.includes('random')) maps.set('random', randomMap(grid, (spec.seed ?? 0) + index));

      const mask = entry.mask ? await readMask(models, entry.mask, image) : undefined;
      const record: ImageRecord = { stem: entry.stem, predicted: predicted!, ...(label !== undefined ? { label } : {}), target, methods: {} };
      for (const m of spec.methods) {
        const map = maps.get(m)!;
        const pixelMap = upsampleToImage(map, info.patch, image);
        const scores: Record<PerturbationDirection, number[]> = { positive: [], negative: [] };
        for (const direction of PERTURBATION_DIRECTIONS) {
          const order = spec.granularity === 'pixel'
            ? removalOrder(pixelMap, direction)
            : patchOrderToPixels(removalOrder(map.data, direction), grid, info.patch, image);
          const units = spec.granularity === 'pixel'
            ? { count: image.height * image.width, pixelsEach: 1 }
            : { count: grid.height * grid.width, pixelsEach: info.patch.height * info.patch.width };
          scores[direction] = await perturbationHits(classifier.classify, { pixels: image.pixelValues, height: image.height, width: image.width, order, units, fill, target });
          hits.get(m)![direction].push(scores[direction]);
        }
        let seg: ImageRecord['methods'][string]['segmentation'];
        if (mask) {
          const s = scoreSegmentation(pixelMap, mask);
          segmentations.get(m)!.push(s);
          seg = { pixelAccuracy: s.correct / s.labeled, iou: [s.intersection[0] / Math.max(1, s.union[0]), s.intersection[1] / Math.max(1, s.union[1])], ap: s.ap };
        }
        record.methods[m] = { ...scores, ...(seg ? { segmentation: seg } : {}) };
      }
      perImage.push(record);
      hooks.onImage?.(index + 1, entries.length, entry.stem);
    }

    const n = entries.length;
    const direction = (rows: number[][]): DirectionScores => {
      const accuracy = PERTURBATION_STEPS.map((_, s) => rows.reduce((a, r) => a + r[s]!, 0) / rows.length);
      return { accuracy, auc: trapezoidArea([...PERTURBATION_STEPS], accuracy) };
    };
    const methods: MethodScores[] = spec.methods.map((m) => {
      const seg = segmentations.get(m)!;
      return {
        method: m,
        positive: direction(hits.get(m)!.positive),
        negative: direction(hits.get(m)!.negative),
        ...(seg.length ? { segmentation: summarizeSegmentation(seg) } : {}),
        meanMs: methodMs.get(m)! / n,
      };
    });
    const withLabels = entries.filter((e) => e.label !== undefined).length;
    return {
      model: { dir: info.dir, classes: classCount, grid: grid!, patch: info.patch, imageSize: imageSize! },
      images: { dir: spec.imagesDir, count: n, withMasks: entries.filter((e) => e.mask).length, withLabels },
      protocol: {
        target: spec.target, steps: PERTURBATION_STEPS, granularity: spec.granularity, fill: fillName(spec.fill), fillValues: fill,
        auc: 'trapezoid rule over the removed fractions 0, 0.1, …, 0.9 of the mean accuracy (step 0 = unperturbed image); at most 0.9',
        segmentation: 'map upsampled bilinearly to the image, min–max normalised, foreground where above its mean; pixel accuracy and per-class IoU summed over the images; mAP = mean per-image AP of [1 − map, map] vs [background, foreground]',
      },
      ...(withLabels === n ? { modelAccuracy: correct / n } : {}),
      methods, perImage,
      ...(spec.methods.some((m) => m !== 'random' && m !== 'rollout') ? { meanGradientMs: gradientMs / n } : {}),
      totalMs: performance.now() - t0,
    };
  } finally {
    await classifier?.release();
    await models.release();
  }
}
