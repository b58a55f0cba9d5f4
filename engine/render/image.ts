// 8-bit RGB images in memory, and the conversions between model tensors, files and PNG bytes (via sharp).
//
// sharp only accepts uint8 raw input, so float images are quantised here exactly as diffusers' `numpy_to_pil` does:
// clamp to [0,1], multiply by 255 in float32, numpy's `.round()` (half to even), so a PNG from Heed and one from
// diffusers agree byte for byte given the same float image.
import sharp from 'sharp';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** Interleaved 8-bit RGB, row-major: `data[(y * width + x) * 3 + c]`. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** An input image that cannot be read or decoded. */
export class ImageError extends HeedError {
  constructor(message: string, field: string | undefined = 'image', kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'ImageError';
  }
}

export function makeRgb(width: number, height: number, fill: [number, number, number] = [0, 0, 0]): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageError(`image size must be positive integers, got ${width}×${height}`);
  }
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(fill, p * 3);
  return { width, height, data };
}

export function quantize(v: number): number {
  if (!(v > 0)) return 0; // NaN and negatives
  if (v >= 1) return 255;
  const x = Math.fround(Math.fround(v) * 255);
  let r = Math.round(x);
  if (r - x === 0.5 && r % 2 === 1) r -= 1; // numpy rounds half to even
  return r;
}

/**
 * Float image in HWC layout with values in [0,1] (the `image.npy` convention) → RgbImage.
 * `channels` may be 1 (grey, replicated), 3, or 4 (alpha dropped). Out-of-range values are clamped, NaN becomes 0.
 */
export function floatHwcToRgb(data: ArrayLike<number>, height: number, width: number, channels = 3): RgbImage {
  if (![1, 3, 4].includes(channels)) throw new ImageError(`float image must have 1, 3 or 4 channels, got ${channels}`);
  if (data.length !== height * width * channels) {
    throw new ImageError(`float image has ${data.length} values, expected ${height}×${width}×${channels} = ${height * width * channels}`);
  }
  const img = makeRgb(width, height);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) img.data[p * 3 + c] = quantize(data[p * channels + (channels === 1 ? 0 : c)]!);
  }
  return img;
}

/**
 * A decoder output in CHW layout with values in [-1,1] (what the SD VAE decoder returns for one batch item) →
 * float HWC in [0,1], the diffusers postprocessing `(x / 2 + 0.5).clamp(0, 1)` then permute.
 */
export function decoderChwToHwc(chw: ArrayLike<number>, channels: number, height: number, width: number): Float32Array {
  if (chw.length !== channels * height * width) {
    throw new ImageError(`decoder output has ${chw.length} values, expected ${channels}×${height}×${width}`);
  }
  const out = new Float32Array(height * width * channels);
  const plane = height * width;
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < plane; p++) {
      const v = chw[c * plane + p]! / 2 + 0.5;
      out[p * channels + c] = v < 0 ? 0 : v > 1 ? 1 : Number.isNaN(v) ? 0 : v;
    }
  }
  return out;
}

/** Encodes an RgbImage as PNG bytes. */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png()
    .toBuffer();
}

/** Float HWC image in [0,1] → PNG bytes. */
export async function floatImageToPng(data: ArrayLike<number>, height: number, width: number, channels = 3): Promise<Buffer> {
  return encodePng(floatHwcToRgb(data, height, width, channels));
}

/**
 * Decodes any image sharp reads (PNG, JPEG, WebP, …; a path or bytes) to RgbImage: alpha is flattened onto white,
 * grey is expanded to RGB. Unreadable input gives an ImageError naming the source.
 */
export async function decodeImage(input: string | Uint8Array, label = typeof input === 'string' ? input : '<bytes>'): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(input)
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColorspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    let rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (info.channels === 1) {
      const expanded = new Uint8Array(info.width * info.height * 3);
      for (let p = 0; p < info.width * info.height; p++) expanded.fill(rgb[p]!, p * 3, p * 3 + 3);
      rgb = expanded;
    } else if (info.channels !== 3) {
      throw new ImageError(`${label}: decoded to ${info.channels} channels, expected RGB`);
    }
    return { width: info.width, height: info.height, data: new Uint8Array(rgb) };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`cannot read image ${label}: ${(e as Error).message} (use a PNG, JPEG or WebP file)`);
  }
}

/** Resizes an RgbImage (sharp's resampling; for photos, not for maps — maps use map.ts so the geometry is torch's). */
export async function resizeRgb(img: RgbImage, width: number, height: number, kernel: 'nearest' | 'cubic' | 'lanczos3' = 'lanczos3'): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img;
  const { data } = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .resize(width, height, { fit: 'fill', kernel })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
