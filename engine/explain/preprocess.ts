// Image preprocessing as transformers' Python image processors do it, read from the LOCAL model folder's
// preprocessor_config.json (never downloaded). Decoding is sharp's (libvips); the geometry (resize with PIL's exact
// resampling, centre crop) and the float32 rescale / normalise are Heed's own reimplementation
// (engine/image/resample.ts, ./image-processor.ts), so that `pixel_values` equal the Python ones for any input size,
// not only for images that already have the model's size (see test/explain-preprocess-resize.test.ts).
import sharp, { type OutputInfo } from 'sharp';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Image8 } from '../image/resample.js';
import { ExplainError } from './errors.js';
import { parseProcessorConfig, runProcessor, type ProcessorSpec } from './image-processor.js';

/** What the image processor produced, plus the RGB image the model saw (for overlays). */
export interface PreparedImage {
  /** [1, 3, H, W] normalised. */
  pixelValues: Float32Array;
  dims: [number, number, number, number];
  /** The processed (resized / cropped) image as 8-bit RGB, H×W×3: overlays sit on exactly what the model saw. */
  rgb: Uint8Array;
  height: number;
  width: number;
  /** Size of the input file before processing. */
  originalSize: { height: number; width: number };
}

export class ImagePreprocessor {
  private constructor(readonly spec: ProcessorSpec, readonly dir: string) {}

  static async fromFolder(dirIn: string): Promise<ImagePreprocessor> {
    const dir = resolve(dirIn);
    const path = join(dir, 'preprocessor_config.json');
    const config = readJsonFile(path);
    // Without image_processor_type, transformers picks the class from config.json's model_type.
    const modelConfig = existsSync(join(dir, 'config.json')) ? readJsonFile(join(dir, 'config.json')) : undefined;
    const modelType = typeof modelConfig === 'object' && modelConfig !== null && typeof (modelConfig as Record<string, unknown>).model_type === 'string'
      ? ((modelConfig as Record<string, unknown>).model_type as string) : undefined;
    return new ImagePreprocessor(parseProcessorConfig(config, path, modelType), dir);
  }

  /** Reads and preprocesses an image file (PNG, JPEG, WebP, ...) or encoded image bytes. */
  async prepare(input: string | Uint8Array): Promise<PreparedImage> {
    const image = await decodeRgb(input);
    const { pixelValues, rgb } = runProcessor(this.spec, image);
    return {
      pixelValues, dims: [1, 3, rgb.height, rgb.width], rgb: rgb.data, height: rgb.height, width: rgb.width,
      originalSize: { height: image.height, width: image.width },
    };
  }
}

function readJsonFile(path: string): unknown {
  if (!existsSync(path)) throw new ExplainError(`${path} is missing, so the image preprocessing is unknown: copy it from the original model repository`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (e) {
    throw new ExplainError(`cannot parse ${path}: ${(e as Error).message}`);
  }
}

/**
 * Decodes to 8-bit RGB as `PIL.Image.open(f).convert("RGB")` would: grey is replicated, alpha dropped (not composited),
 * palettes expanded. EXIF orientation is applied, as transformers' `load_image` does (`ImageOps.exif_transpose`).
 */
export async function decodeRgb(input: string | Uint8Array): Promise<Image8> {
  let bytes: Uint8Array;
  let what: string;
  let failed: string;
  if (typeof input === 'string') {
    const path = resolve(input);
    if (!existsSync(path) || !statSync(path).isFile()) throw new ExplainError(`image not found: ${path}`);
    bytes = readFileSync(path);
    what = `image ${path}`;
    failed = `cannot read image ${path}`;
  } else {
    bytes = input;
    what = `the image bytes (${input.byteLength} bytes)`;
    failed = `cannot decode the image bytes (${input.byteLength} bytes)`;
  }
  let raw: { data: Buffer; info: OutputInfo };
  let space: string | undefined;
  try {
    space = (await sharp(bytes).metadata()).space;
    raw = await sharp(bytes).rotate().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ExplainError(`${failed}: ${(e as Error).message}. Pass a PNG, JPEG, WebP, GIF, TIFF or AVIF file.`);
  }
  if (space === 'cmyk') throw new ExplainError(`cannot use ${what}: it is CMYK; convert it to RGB first`);
  const { width, height, channels } = raw.info;
  const n = width * height;
  const rgb = new Uint8Array(n * 3);
  const src = raw.data;
  if (channels === 3) {
    rgb.set(src.subarray(0, n * 3));
  } else if (channels === 4) {
    for (let i = 0; i < n; i++) {
      rgb[i * 3] = src[i * 4];
      rgb[i * 3 + 1] = src[i * 4 + 1];
      rgb[i * 3 + 2] = src[i * 4 + 2];
    }
  } else if (channels === 1 || channels === 2) {
    for (let i = 0; i < n; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = src[i * channels];
  } else {
    throw new ExplainError(`cannot use ${what}: it decodes to ${channels} channels; Heed explains RGB, grey or RGBA images (convert CMYK and others to RGB first)`);
  }
  return { data: rgb, width, height, channels: 3 };
}
