// Image preprocessing with @huggingface/transformers' image processors, read from the LOCAL model folder (never
// downloaded). The processor does the geometry (RGB conversion, resize, centre crop, rescale); the final
// normalisation is redone here in float32 steps, `fround(fround(x − mean) / std)`, because that is how numpy
// evaluates `(image - mean) / std` on a float32 image in transformers' Python processors, whereas transformers.js
// rounds once after computing in double. With this, ViTImageProcessor and CLIPImageProcessor outputs are bit-exact
// with the Python ones on the reference image (see test/explain-preprocess.test.ts).
import { AutoImageProcessor, RawImage, env } from '@huggingface/transformers';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ExplainError } from './errors.js';

// Explanations only ever read local folders: never reach the Hub.
env.allowRemoteModels = false;

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

interface ProcessorLike {
  image_mean?: number | number[];
  image_std?: number | number[];
  do_normalize?: boolean;
  do_rescale?: boolean;
  rescale_factor?: number;
  preprocess(image: RawImage, overrides: { do_normalize: boolean }): Promise<{ pixel_values: { dims: number[]; data: ArrayLike<number> }; original_size: number[] }>;
}

export class ImagePreprocessor {
  private constructor(private readonly proc: ProcessorLike, readonly dir: string) {}

  static async fromFolder(dirIn: string): Promise<ImagePreprocessor> {
    const dir = resolve(dirIn);
    let proc: unknown;
    try {
      proc = await AutoImageProcessor.from_pretrained(dir, { local_files_only: true });
    } catch (e) {
      throw new ExplainError(`cannot build the image processor from ${dir}/preprocessor_config.json: ${(e as Error).message}`);
    }
    return new ImagePreprocessor(proc as ProcessorLike, dir);
  }

  /** Reads and preprocesses an image file (PNG, JPEG, WebP, ...) or encoded image bytes. */
  async prepare(input: string | Uint8Array): Promise<PreparedImage> {
    const image = await readImage(input);
    const out = await this.proc.preprocess(image, { do_normalize: false });
    const dims = out.pixel_values.dims;
    if (dims.length !== 3 || dims[0] !== 3) {
      throw new ExplainError(`the image processor of ${this.dir} produced dims [${dims.join(', ')}]; Heed explains 3-channel images only`);
    }
    const [c, h, w] = dims;
    const src = out.pixel_values.data;
    const pixelValues = new Float32Array(c * h * w);
    const rgb = new Uint8Array(h * w * 3);
    const rescale = this.proc.do_rescale === false ? 1 : (this.proc.rescale_factor ?? 1 / 255);
    const mean = channelValues(this.proc.image_mean, c, 0);
    const std = channelValues(this.proc.image_std, c, 1);
    const normalize = this.proc.do_normalize !== false;
    const f = Math.fround;
    for (let ch = 0; ch < c; ch++) {
      const m = f(mean[ch]);
      const s = f(std[ch]);
      for (let i = 0; i < h * w; i++) {
        const x = src[ch * h * w + i];
        pixelValues[ch * h * w + i] = normalize ? f(f(x - m) / s) : x;
        rgb[i * 3 + ch] = Math.max(0, Math.min(255, Math.round(x / rescale)));
      }
    }
    const [oh, ow] = out.original_size;
    return { pixelValues, dims: [1, c, h, w], rgb, height: h, width: w, originalSize: { height: oh, width: ow } };
  }
}

function channelValues(v: number | number[] | undefined, channels: number, fallback: number): number[] {
  if (v === undefined) return new Array<number>(channels).fill(fallback);
  if (typeof v === 'number') return new Array<number>(channels).fill(v);
  if (v.length !== channels) throw new ExplainError(`image_mean/image_std have ${v.length} values for ${channels} channels`);
  return v;
}

async function readImage(input: string | Uint8Array): Promise<RawImage> {
  if (typeof input === 'string') {
    const path = resolve(input);
    if (!existsSync(path) || !statSync(path).isFile()) throw new ExplainError(`image not found: ${path}`);
    try {
      return await RawImage.read(path);
    } catch (e) {
      throw new ExplainError(`cannot read image ${path}: ${(e as Error).message}. Pass a PNG, JPEG, WebP, GIF, TIFF or AVIF file.`);
    }
  }
  try {
    // Copy into a plain ArrayBuffer-backed view: Blob refuses views over SharedArrayBuffer.
    return await RawImage.fromBlob(new Blob([Uint8Array.from(input)]));
  } catch (e) {
    throw new ExplainError(`cannot decode the image bytes (${input.byteLength} bytes): ${(e as Error).message}. Send a PNG, JPEG or WebP file.`);
  }
}
