// transformers' image processors (ViT, DeiT, CLIP, Bit — the last is DINOv2's), reimplemented from transformers
// 4.33 (image_processing_vit.py, image_processing_deit.py, image_processing_clip.py, image_processing_bit.py,
// image_transforms.py, image_processing_utils.py) so that `pixel_values` equal the Python ones:
//   RGB image → resize with PIL's resampling (engine/image/resample.ts) → centre crop (zero padding and all) →
//   rescale (`uint8 · factor` in double, then float32) → normalise (`(x − mean) / std` in float32, as numpy does)
// Defaults for keys missing from preprocessor_config.json are each class's constructor defaults. Keys a class does not
// read (say `crop_size` in a ViT config) are ignored as transformers ignores them.
import { PIL_RESAMPLE_CODES, resizeLikePil, type Image8, type ResampleFilter } from '../image/resample.js';
import { ExplainError } from './errors.js';

export type ProcessorClass = 'ViTImageProcessor' | 'DeiTImageProcessor' | 'CLIPImageProcessor' | 'BitImageProcessor';

/** A resize target: fixed `{height, width}`, or the shortest edge (aspect kept). */
export type ResizeTarget = { kind: 'fixed'; height: number; width: number } | { kind: 'shortestEdge'; shortestEdge: number };

/** What a processor does, fully resolved (defaults filled in). */
export interface ProcessorSpec {
  className: ProcessorClass;
  doResize: boolean;
  /** Unused (and 0×0) when doResize is false and the config's size does not fit the class. */
  size: ResizeTarget;
  resample: ResampleFilter;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ProcessedImage {
  /** [3, H, W] float32, channel-first, as `pixel_values[0]`. */
  pixelValues: Float32Array;
  /** The resized and cropped 8-bit RGB image (H×W×3) the pixel values were computed from. */
  rgb: Image8;
}

const IMAGENET_STANDARD: [number, number, number] = [0.5, 0.5, 0.5];
const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

interface ClassDefaults {
  /** How an int `size` is read: a square (`default_to_square=True`) or the shortest edge. */
  sizeIsSquare: boolean;
  size: unknown;
  resample: number;
  /** false: the class has no centre crop at all (ViT), whatever the config says. */
  hasCenterCrop: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

const CLASSES: Record<ProcessorClass, ClassDefaults> = {
  ViTImageProcessor: { sizeIsSquare: true, size: { height: 224, width: 224 }, resample: 2, hasCenterCrop: false, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD },
  DeiTImageProcessor: { sizeIsSquare: true, size: { height: 256, width: 256 }, resample: 3, hasCenterCrop: true, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD },
  CLIPImageProcessor: { sizeIsSquare: false, size: { shortest_edge: 224 }, resample: 3, hasCenterCrop: true, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
  BitImageProcessor: { sizeIsSquare: false, size: { shortest_edge: 224 }, resample: 3, hasCenterCrop: true, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
};

/** config.json `model_type` → processor class, as transformers' AutoImageProcessor maps it when the config names none. */
const BY_MODEL_TYPE: Record<string, ProcessorClass> = {
  vit: 'ViTImageProcessor', vit_mae: 'ViTImageProcessor', vit_msn: 'ViTImageProcessor',
  deit: 'DeiTImageProcessor', clip: 'CLIPImageProcessor', dinov2: 'BitImageProcessor',
};

const VALID_SIZE_KEYS = [['height', 'width'], ['shortest_edge'], ['longest_edge', 'shortest_edge'], ['longest_edge']];

type Json = Record<string, unknown>;

/** Reads a preprocessor_config.json object the way `AutoImageProcessor.from_pretrained` + the class constructor do. */
export function parseProcessorConfig(config: unknown, source: string, modelType?: string): ProcessorSpec {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new ExplainError(`${source}: expected a JSON object`);
  const c = config as Json;
  const className = processorClass(c, source, modelType);
  const d = CLASSES[className];
  const bad = (key: string, why: string): ExplainError => new ExplainError(`${source}: \`${key}\` ${why}`);

  const flag = (key: string, fallback: boolean): boolean => {
    const v = c[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw bad(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };

  const doResize = flag('do_resize', true);
  const sizeDict = toSizeDict(c.size ?? d.size, d.sizeIsSquare, 'size', source);
  // Like transformers, a size the class cannot use only fails when resizing is on.
  let size: ResizeTarget | undefined;
  if (d.sizeIsSquare && sizeDict.height !== undefined && sizeDict.width !== undefined) {
    size = { kind: 'fixed', height: sizeDict.height, width: sizeDict.width };
  } else if (!d.sizeIsSquare && sizeDict.shortest_edge !== undefined) {
    // CLIP/Bit resize only reads shortest_edge (a longest_edge next to it is ignored, as in transformers 4.33).
    size = { kind: 'shortestEdge', shortestEdge: sizeDict.shortest_edge };
  } else if (doResize) {
    const need = d.sizeIsSquare ? 'height and width' : 'shortest_edge';
    throw bad('size', `must give ${need} for ${className} (got keys ${Object.keys(sizeDict).join(', ')})`);
  }

  const resampleCode = c.resample ?? d.resample;
  const resample = typeof resampleCode === 'number' ? PIL_RESAMPLE_CODES[resampleCode] : undefined;
  if (resample === undefined) {
    throw bad('resample', `${JSON.stringify(resampleCode)} is not a PIL filter code (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)`);
  }

  // ViTImageProcessor has no centre crop: it neither reads nor checks do_center_crop / crop_size.
  const cropDict = d.hasCenterCrop ? toSizeDict(c.crop_size ?? { height: 224, width: 224 }, true, 'crop_size', source) : {};
  const doCenterCrop = d.hasCenterCrop && flag('do_center_crop', true);
  if (doCenterCrop && (cropDict.height === undefined || cropDict.width === undefined)) {
    throw bad('crop_size', `must give height and width (got keys ${Object.keys(cropDict).join(', ')})`);
  }

  const doRescale = flag('do_rescale', true);
  const rescaleFactor = c.rescale_factor ?? 1 / 255;
  if (typeof rescaleFactor !== 'number' || !Number.isFinite(rescaleFactor)) throw bad('rescale_factor', `must be a number, got ${JSON.stringify(rescaleFactor)}`);
  const doNormalize = flag('do_normalize', true);
  if (doNormalize && !doRescale) {
    // transformers would cast image_mean/image_std to the image's uint8 dtype here (mean 0.5 → 0): not reproduced.
    throw bad('do_rescale', 'false together with do_normalize true is not supported (transformers then normalises uint8 pixels with uint8-cast mean/std); set do_rescale true or do_normalize false');
  }
  return {
    className, doResize, size: size ?? { kind: 'fixed', height: 0, width: 0 }, resample, doCenterCrop,
    cropSize: { height: cropDict.height ?? 224, width: cropDict.width ?? 224 },
    doRescale, rescaleFactor, doNormalize,
    mean: channelTriple(c.image_mean, d.mean, 'image_mean', source),
    std: channelTriple(c.image_std, d.std, 'image_std', source),
  };
}

function processorClass(c: Json, source: string, modelType?: string): ProcessorClass {
  const declared = typeof c.image_processor_type === 'string'
    ? c.image_processor_type
    : typeof c.feature_extractor_type === 'string' ? c.feature_extractor_type.replace('FeatureExtractor', 'ImageProcessor') : undefined;
  if (declared === undefined) {
    const byType = modelType ? BY_MODEL_TYPE[modelType] : undefined;
    if (byType) return byType;
    throw new ExplainError(`${source}: no \`image_processor_type\` (or feature_extractor_type), and config.json model_type ${JSON.stringify(modelType ?? null)} does not name a supported processor; add "image_processor_type": "ViTImageProcessor" (or DeiT/CLIP/Bit) as in the original model repository`);
  }
  if (declared in CLASSES) return declared as ProcessorClass;
  throw new ExplainError(`${source}: \`image_processor_type\` ${declared} is not supported; Heed reproduces ${Object.keys(CLASSES).join(', ')} (and their *FeatureExtractor names)`);
}

/** transformers' get_size_dict: int → square or shortest edge, [h, w] → {height, width}, dicts checked for key sets. */
function toSizeDict(v: unknown, square: boolean, key: string, source: string): Partial<Record<'height' | 'width' | 'shortest_edge' | 'longest_edge', number>> {
  const positiveInt = (x: unknown): number => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) throw new ExplainError(`${source}: \`${key}\` values must be positive integers, got ${JSON.stringify(x)}`);
    return x;
  };
  if (typeof v === 'number') {
    const n = positiveInt(v);
    return square ? { height: n, width: n } : { shortest_edge: n };
  }
  if (Array.isArray(v)) {
    if (v.length !== 2) throw new ExplainError(`${source}: \`${key}\` as a list must be [height, width], got ${JSON.stringify(v)}`);
    return { height: positiveInt(v[0]), width: positiveInt(v[1]) };
  }
  if (typeof v === 'object' && v !== null) {
    const keys = Object.keys(v).sort();
    if (!VALID_SIZE_KEYS.some((k) => k.length === keys.length && k.every((x, i) => x === keys[i]))) {
      throw new ExplainError(`${source}: \`${key}\` must have the keys {height, width}, {shortest_edge}, {shortest_edge, longest_edge} or {longest_edge}, got {${keys.join(', ')}}`);
    }
    const out: Record<string, number> = {};
    for (const k of keys) out[k] = positiveInt((v as Json)[k]);
    return out;
  }
  throw new ExplainError(`${source}: \`${key}\` must be an integer, [height, width] or a dict, got ${JSON.stringify(v)}`);
}

function channelTriple(v: unknown, fallback: [number, number, number], key: string, source: string): [number, number, number] {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'number') return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number')) return [v[0], v[1], v[2]];
  throw new ExplainError(`${source}: \`${key}\` must be a number or 3 numbers (one per RGB channel), got ${JSON.stringify(v)}`);
}

/** transformers' get_resize_output_image_size for `shortest_edge` (default_to_square=False, no max_size): (h, w). */
export function shortestEdgeSize(height: number, width: number, shortestEdge: number): { height: number; width: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((shortestEdge * long) / short); // int(size * long / short): Python true division, truncated
  return width <= height ? { height: newLong, width: shortestEdge } : { height: shortestEdge, width: newLong };
}

/**
 * transformers' center_crop: offsets floor((in − crop) / 2); when the image is smaller it is zero-padded first (by
 * floor((max − in) / 2) before), and the slice is clipped to the padded image — so with padding the output can be one
 * pixel smaller than crop_size (e.g. 24 → crop 31 gives 30), exactly as in Python.
 */
export function centerCrop(img: Image8, cropHeight: number, cropWidth: number): Image8 {
  const axis = (size: number, crop: number): { from: number; to: number; pad: number } => {
    const start = Math.floor((size - crop) / 2);
    const padded = Math.max(crop, size);
    const pad = Math.floor((padded - size) / 2);
    return { from: Math.max(0, start + pad), to: Math.min(padded, start + crop + pad), pad };
  };
  const ys = axis(img.height, cropHeight);
  const xs = axis(img.width, cropWidth);
  const h = ys.to - ys.from;
  const w = xs.to - xs.from;
  const ch = img.channels;
  const out = new Uint8Array(h * w * ch); // zeros where the padding shows
  for (let y = 0; y < h; y++) {
    const sy = y + ys.from - ys.pad;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < w; x++) {
      const sx = x + xs.from - xs.pad;
      if (sx < 0 || sx >= img.width) continue;
      for (let c = 0; c < ch; c++) out[(y * w + x) * ch + c] = img.data[(sy * img.width + sx) * ch + c];
    }
  }
  return { data: out, width: w, height: h, channels: ch };
}

/** Output extent of center_crop along one axis (one less than the crop when odd padding clips it, as in Python). */
function cropExtent(size: number, crop: number): number {
  const start = Math.floor((size - crop) / 2);
  const padded = Math.max(crop, size);
  const pad = Math.floor((padded - size) / 2);
  return Math.min(padded, start + crop + pad) - Math.max(0, start + pad);
}

/**
 * The (height, width) the processor produces whatever the input image, or undefined when it depends on the input (no
 * resize, or a shortest-edge resize without a crop, or one smaller than the crop so that padding shows).
 */
export function fixedOutputSize(spec: ProcessorSpec): { height: number; width: number } | undefined {
  const resized = spec.doResize && spec.size.kind === 'fixed' ? { height: spec.size.height, width: spec.size.width } : undefined;
  if (!spec.doCenterCrop) return resized;
  const { height: ch, width: cw } = spec.cropSize;
  if (resized) return { height: cropExtent(resized.height, ch), width: cropExtent(resized.width, cw) };
  // Shortest edge ≥ both crop sides: both resized sides are at least the crop, so no padding and exactly crop_size.
  if (spec.doResize && spec.size.kind === 'shortestEdge' && spec.size.shortestEdge >= Math.max(ch, cw)) return { height: ch, width: cw };
  return undefined;
}

/** Runs the processor on an 8-bit RGB image. */
export function runProcessor(spec: ProcessorSpec, image: Image8): ProcessedImage {
  if (image.channels !== 3) throw new ExplainError(`the image processor expects an RGB image, got ${image.channels} channels`);
  let img = image;
  if (spec.doResize) {
    const target = spec.size.kind === 'fixed' ? spec.size : shortestEdgeSize(img.height, img.width, spec.size.shortestEdge);
    img = resizeLikePil(img, target.width, target.height, spec.resample);
  }
  if (spec.doCenterCrop) img = centerCrop(img, spec.cropSize.height, spec.cropSize.width);
  const { height: h, width: w } = img;
  const pixelValues = new Float32Array(3 * h * w);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(spec.mean[c]);
    const s = f(spec.std[c]);
    for (let i = 0; i < h * w; i++) {
      const x = img.data[i * 3 + c];
      // rescale: uint8 · python float is float64 in numpy, then .astype(float32); normalise: float32 − float32, / float32.
      const v = spec.doRescale ? f(x * spec.rescaleFactor) : x;
      pixelValues[c * h * w + i] = spec.doNormalize ? f(f(v - m) / s) : v;
    }
  }
  return { pixelValues, rgb: img };
}
