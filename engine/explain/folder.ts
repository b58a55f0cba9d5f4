// Reads a transformers.js / Optimum model folder for explanation: which family it is (ViT-like image classifier
// or CLIP), its patch size, labels and the ONNX file. Every fact comes from the folder's own files; where
// `save_pretrained` leaves a key out because it equals transformers' default (CLIP's vision_config has no patch_size
// or image_size when they are 32 / 224), the default of transformers' config class is used.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ExplainError, MODEL_INVALID } from './errors.js';
import type { PatchSize } from './distance.js';

export type ModelFamily = 'vit' | 'clip';

export interface ExplainModelInfo {
  dir: string;
  onnxPath: string;
  family: ModelFamily;
  /** config.json model_type ('vit', 'deit', 'dinov2', 'clip', ...). */
  modelType: string;
  /** Class names by index (config.json id2label), for image classifiers that have a head. */
  labels?: string[];
  patch: PatchSize;
  /** Image size the config declares (the processor decides the real input size). */
  imageSize: { height: number; width: number };
  /** The size preprocessor_config.json produces when it is fixed (crop_size, or size {height, width}), else undefined. */
  processorSize?: { height: number; width: number };
  /** Register tokens the config declares (DINOv2 with registers); the token count at run time is what counts. */
  registerTokens: number;
  /** CLIP text context length (max_position_embeddings, 77). */
  maxTextLength?: number;
}

type Json = Record<string, unknown>;

// transformers' CLIPVisionConfig / CLIPTextConfig defaults (configuration_clip.py).
const CLIP_VISION_DEFAULTS = { patch_size: 32, image_size: 224 };
const CLIP_TEXT_DEFAULTS = { max_position_embeddings: 77 };
// transformers' ViTConfig defaults (also DeiT / DINO v1, which are ViT checkpoints).
const VIT_DEFAULTS = { patch_size: 16, image_size: 224 };

function readJson(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ExplainError(`cannot read ${path}: ${(e as Error).message}`, MODEL_INVALID);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new ExplainError(`${path} is not valid JSON (${(e as Error).message}); restore the file from the model export`, MODEL_INVALID);
  }
}

function pair(v: unknown, fallback: number, what: string): { height: number; width: number } {
  if (v === undefined || v === null) return { height: fallback, width: fallback };
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return { height: v, width: v };
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0)) {
    return { height: v[0] as number, width: v[1] as number };
  }
  throw new ExplainError(`config.json ${what} must be a positive integer or [height, width] (got ${JSON.stringify(v)})`, MODEL_INVALID);
}

function labelsOf(config: Json): string[] | undefined {
  const id2label = config.id2label;
  if (typeof id2label !== 'object' || id2label === null) return undefined;
  const entries = Object.entries(id2label as Record<string, unknown>);
  if (entries.length === 0) return undefined;
  const labels: string[] = [];
  for (const [k, v] of entries) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0) continue;
    labels[i] = String(v);
  }
  for (let i = 0; i < labels.length; i++) if (labels[i] === undefined) labels[i] = `LABEL_${i}`;
  return labels;
}

/** The ONNX file of a model folder: onnx/model.onnx (transformers.js) or model.onnx (Optimum / plain export). */
export function findOnnxFile(dir: string): string {
  for (const rel of ['onnx/model.onnx', 'model.onnx']) {
    const p = join(dir, rel);
    if (existsSync(p)) return p;
  }
  throw new ExplainError(`no ONNX model in ${dir}: expected onnx/model.onnx (transformers.js layout) or model.onnx (Optimum layout). ` +
    'Export the model with `optimum-cli export onnx --model <id> <dir>` or copy the whole transformers.js folder.', MODEL_INVALID);
}

export function readModelFolder(dirIn: string): ExplainModelInfo {
  const dir = resolve(dirIn);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ExplainError(`model folder not found: ${dir} (pass the folder holding config.json and model.onnx)`, MODEL_INVALID);
  }
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new ExplainError(`${dir} has no config.json: pass a transformers.js / Optimum model folder`, MODEL_INVALID);
  if (!existsSync(join(dir, 'preprocessor_config.json'))) {
    throw new ExplainError(`${dir} has no preprocessor_config.json, so the image preprocessing is unknown: copy it from the original model repository`, MODEL_INVALID);
  }
  const config = readJson(configPath);
  const processorSize = fixedProcessorSize(readJson(join(dir, 'preprocessor_config.json')));
  const modelType = typeof config.model_type === 'string' ? config.model_type : '';
  const onnxPath = findOnnxFile(dir);
  if (modelType === 'clip' || typeof config.vision_config === 'object' && config.vision_config !== null && typeof config.text_config === 'object') {
    const vision = (config.vision_config ?? {}) as Json;
    const text = (config.text_config ?? {}) as Json;
    const maxLen = text.max_position_embeddings ?? CLIP_TEXT_DEFAULTS.max_position_embeddings;
    if (typeof maxLen !== 'number' || !Number.isInteger(maxLen) || maxLen < 2) {
      throw new ExplainError(`config.json text_config.max_position_embeddings must be an integer ≥ 2 (got ${JSON.stringify(maxLen)})`, MODEL_INVALID);
    }
    return {
      dir, onnxPath, family: 'clip', modelType: modelType || 'clip',
      patch: pair(vision.patch_size, CLIP_VISION_DEFAULTS.patch_size, 'vision_config.patch_size'),
      imageSize: pair(vision.image_size, CLIP_VISION_DEFAULTS.image_size, 'vision_config.image_size'),
      registerTokens: 0, maxTextLength: maxLen, processorSize,
    };
  }
  const registers = typeof config.num_register_tokens === 'number' ? config.num_register_tokens : 0;
  return {
    dir, onnxPath, family: 'vit', modelType: modelType || 'vit', labels: labelsOf(config),
    patch: pair(config.patch_size, VIT_DEFAULTS.patch_size, 'patch_size'),
    imageSize: pair(config.image_size, VIT_DEFAULTS.image_size, 'image_size'),
    registerTokens: registers, processorSize,
  };
}

/** The output size of a processor config when it does not depend on the input image. */
function fixedProcessorSize(p: Json): { height: number; width: number } | undefined {
  const hw = (v: unknown): { height: number; width: number } | undefined => {
    if (typeof v === 'number' && v > 0) return { height: v, width: v };
    if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (typeof o.height === 'number' && typeof o.width === 'number') return { height: o.height, width: o.width };
    }
    return undefined;
  };
  if (p.do_center_crop !== false && p.crop_size !== undefined) {
    const c = hw(p.crop_size);
    if (c) return c;
  }
  return p.do_resize === false ? undefined : hw(p.size);
}
