// Resolves a Stable Diffusion ONNX model folder (the diffusers `OnnxStableDiffusionPipeline` / Optimum layout) into
// the files the pipeline needs, and reads the few configuration facts that are not in the graphs themselves
// (scheduler config, VAE scaling factor, default sample size). Everything the graphs declare (input names, element
// types, fixed dims) is read later from the models, not here.
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** The SD model folder is missing a part or holds one Heed cannot read: the model is at fault. */
export class ModelFolderError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'ModelFolderError';
  }
}

export type JsonObject = Record<string, unknown>;

/** 'sd': SD 1.x/2.x (one CLIP text encoder); 'sdxl': Stable Diffusion XL base (two text encoders, size conditioning). */
export type PipelineArchitecture = 'sd' | 'sdxl';

export interface ModelFolder {
  /** The folder that holds the components (the given one, or its `onnx/` sub-folder). */
  root: string;
  architecture: PipelineArchitecture;
  /** model_index.json, when present. */
  modelIndex: JsonObject | null;
  textEncoder: string;
  unet: string;
  vaeDecoder: string;
  tokenizer: string;
  /** SDXL's second text encoder (CLIPTextModelWithProjection) and its tokenizer; null for SD 1.x/2.x. */
  textEncoder2: string | null;
  tokenizer2: string | null;
  /** SDXL's model_index `force_zeros_for_empty_prompt`: without a negative prompt, CFG's negative embeddings are zeros. */
  forceZerosForEmptyPrompt: boolean;
  /** VAE config `force_upcast` (SDXL: true; its VAE overflows in float16). */
  vaeForceUpcast: boolean;
  schedulerConfigPath: string;
  schedulerConfig: JsonObject;
  /** Latents are divided by this before the VAE decoder (vae config `scaling_factor`, SD 1.x/2.x: 0.18215). */
  vaeScalingFactor: number;
  /** Default image size (UNet `sample_size` × 8 when the folder says so, else 512). */
  defaultImageSize: number;
  /** Things that are unusual but usable (e.g. no model_index.json). */
  warnings: string[];
}

const LAYOUT_HELP =
  'Expected the diffusers/Optimum ONNX layout: model_index.json, text_encoder/model.onnx, unet/model.onnx ' +
  '(+ its external weights file), vae_decoder/model.onnx, tokenizer/ (vocab.json + merges.txt or tokenizer.json), ' +
  'scheduler/scheduler_config.json.';

const DEFAULT_SCALING_FACTOR = 0.18215;
const VAE_SCALE = 8;

function readJson(path: string, what: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelFolderError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ModelFolderError(`${what} ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelFolderError(`${what} ${path} must hold a JSON object`);
  }
  return value as JsonObject;
}

function readJsonIfPresent(path: string, what: string): JsonObject | null {
  return existsSync(path) ? readJson(path, what) : null;
}

/** The component's model.onnx, or an error naming what is there instead. */
function componentModel(root: string, component: string): string {
  const dir = join(root, component);
  const file = join(dir, 'model.onnx');
  if (existsSync(file)) return file;
  if (!existsSync(dir)) {
    throw new ModelFolderError(`${root} has no ${component}/ folder (missing ${component}/model.onnx). ${LAYOUT_HELP}`);
  }
  const present = readdirSync(dir);
  const onnx = present.filter((f) => f.endsWith('.onnx'));
  const hint = onnx.length > 0
    ? ` It holds ${onnx.join(', ')}: rename the exported graph to model.onnx (keep its weights file beside it).`
    : ` It holds: ${present.slice(0, 8).join(', ') || '(nothing)'}.`;
  throw new ModelFolderError(`missing ${component}/model.onnx in ${root}.${hint} ${LAYOUT_HELP}`);
}

function positiveNumber(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}

/**
 * Checks a model folder and returns the paths and configs the pipeline needs. Accepts the pipeline folder itself
 * or a folder with the pipeline in `onnx/` (as the reference and some hub repos ship it).
 */
export function resolveModelFolder(dir: string): ModelFolder {
  const given = resolve(dir);
  if (!existsSync(given)) throw new ModelFolderError(`model folder not found: ${given}`);
  if (!statSync(given).isDirectory()) throw new ModelFolderError(`--model must be a folder, got the file ${given}. ${LAYOUT_HELP}`);
  let root = given;
  if (!existsSync(join(root, 'model_index.json')) && !existsSync(join(root, 'unet')) && existsSync(join(root, 'onnx', 'unet'))) {
    root = join(root, 'onnx');
  }
  const warnings: string[] = [];
  const modelIndex = readJsonIfPresent(join(root, 'model_index.json'), 'model_index.json');
  const architecture = pipelineArchitecture(root, modelIndex, warnings);
  if (architecture === 'sdxl' && !existsSync(join(root, 'text_encoder'))) {
    // Refusing here (not at a missing file) names the real reason: the refiner is an image-to-image model.
    throw new ModelFolderError(`${root} has text_encoder_2/ but no text_encoder/: that is an SDXL refiner ` +
      '(StableDiffusionXLImg2ImgPipeline, conditioned on an aesthetic score), an image-to-image model that refines a ' +
      'base model\'s output. Heed generates from text: use the SDXL base folder (stable-diffusion-xl-base-1.0).');
  }
  const textEncoder = componentModel(root, 'text_encoder');
  const textEncoder2 = architecture === 'sdxl' ? componentModel(root, 'text_encoder_2') : null;
  const unet = componentModel(root, 'unet');
  const vaeDecoder = componentModel(root, 'vae_decoder');

  const tokenizer = tokenizerFolder(root, 'tokenizer');
  const tokenizer2 = architecture === 'sdxl' ? tokenizerFolder(root, 'tokenizer_2') : null;

  const schedulerConfigPath = join(root, 'scheduler', 'scheduler_config.json');
  if (!existsSync(schedulerConfigPath)) {
    throw new ModelFolderError(`missing scheduler/scheduler_config.json in ${root} (it carries the beta schedule and ` +
      `prediction_type, epsilon or v_prediction, that the UNet was trained with). ${LAYOUT_HELP}`);
  }
  const schedulerConfig = readJson(schedulerConfigPath, 'scheduler config');

  // Optimum copies each component's config.json beside its model; diffusers' ONNX export does not.
  const vaeConfig = readJsonIfPresent(join(root, 'vae_decoder', 'config.json'), 'VAE decoder config')
    ?? readJsonIfPresent(join(root, 'vae', 'config.json'), 'VAE config');
  const vaeScalingFactor = positiveNumber(vaeConfig?.scaling_factor) ?? DEFAULT_SCALING_FACTOR;
  if (architecture === 'sdxl' && vaeScalingFactor === DEFAULT_SCALING_FACTOR && positiveNumber(vaeConfig?.scaling_factor) === undefined) {
    warnings.push(`no vae_decoder/config.json with scaling_factor in ${root}; using SD 1.x's ${DEFAULT_SCALING_FACTOR} ` +
      '(SDXL\'s VAE uses 0.13025: add the VAE config.json to decode correctly)');
  }
  const vaeForceUpcast = vaeConfig?.force_upcast === true;
  const forceZerosForEmptyPrompt = architecture === 'sdxl' && modelIndex?.force_zeros_for_empty_prompt !== false;
  const unetConfig = readJsonIfPresent(join(root, 'unet', 'config.json'), 'UNet config');
  const sampleSize = positiveNumber(unetConfig?.sample_size);
  const defaultImageSize = sampleSize ? sampleSize * VAE_SCALE : 512;

  return {
    root, architecture, modelIndex, textEncoder, unet, vaeDecoder, tokenizer, textEncoder2, tokenizer2,
    forceZerosForEmptyPrompt, vaeForceUpcast, schedulerConfigPath, schedulerConfig, vaeScalingFactor, defaultImageSize,
    warnings,
  };
}

function tokenizerFolder(root: string, name: string): string {
  const dir = join(root, name);
  const ok = existsSync(join(dir, 'tokenizer.json')) || (existsSync(join(dir, 'vocab.json')) && existsSync(join(dir, 'merges.txt')));
  if (!ok) throw new ModelFolderError(`missing tokenizer files in ${dir}: need tokenizer.json, or vocab.json + merges.txt. ${LAYOUT_HELP}`);
  return dir;
}

/**
 * Which pipeline the folder holds, from model_index.json (its class name and whether it lists text_encoder_2) or, with
 * no model_index.json, from the presence of text_encoder_2/. Pipelines Heed does not run are refused with the reason.
 */
function pipelineArchitecture(root: string, modelIndex: JsonObject | null, warnings: string[]): PipelineArchitecture {
  if (!modelIndex) {
    warnings.push(`${root} has no model_index.json; reading the components by the standard layout.`);
    return existsSync(join(root, 'text_encoder_2')) ? 'sdxl' : 'sd';
  }
  const cls = typeof modelIndex._class_name === 'string' ? modelIndex._class_name.replace(/^ORT/, '') : '';
  if (/Img2Img|Inpaint|InstructPix2Pix|Upscale|Depth2Img/i.test(cls)) {
    const refiner = /XL/i.test(cls) && modelIndex.requires_aesthetics_score === true;
    throw new ModelFolderError(`${root}/model_index.json describes a ${cls}${refiner ? ' (an SDXL refiner: no ' +
      'text_encoder, conditioned on an aesthetic score; it refines a base model\'s output)' : ''}, an image-conditioned ` +
      'pipeline. Heed generates from text: use a text-to-image folder (SD 1.x/2.x, or the SDXL base).');
  }
  if (/Cascade|Kandinsky|Flux|StableDiffusion3|PixArt|Wuerstchen|Kolors/i.test(cls)) {
    throw new ModelFolderError(`${root}/model_index.json describes a ${cls}, which is not a Stable Diffusion 1.x/2.x or SDXL ` +
      'pipeline; Heed supports SD 1.x, 2.x and SDXL ONNX exports.');
  }
  const xl = /StableDiffusionXL/i.test(cls) || 'text_encoder_2' in modelIndex;
  if (cls && !/StableDiffusion/i.test(cls)) {
    warnings.push(`model_index.json names ${cls}; treating it as a Stable Diffusion ${xl ? 'XL' : '1.x/2.x'} pipeline.`);
  }
  return xl ? 'sdxl' : 'sd';
}
