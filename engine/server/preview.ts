// Live previews from the latents, without running the VAE: SD's 4 latent channels map to RGB almost linearly, so a
// fixed 4×3 projection gives a recognisable low-resolution picture for the cost of a few thousand multiply-adds per
// step (a VAE decode would cost as much as a UNet step). The factors are the widely used SD 1.x approximation
// (as in ComfyUI's latent previews); other channel counts get no preview.
import sharp from 'sharp';
import type { PngPreview } from '../protocol/index.js';

const SD1_LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/** Latents [1, 4, h, w] → RGB bytes (h × w × 3), values mapped from [-1, 1] to [0, 255]. */
export function latentsToRgb(latents: Float32Array, channels: number, height: number, width: number): Uint8Array | undefined {
  if (channels !== 4 || latents.length < 4 * height * width) return undefined;
  const plane = height * width;
  const out = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v += latents[k * plane + p] * SD1_LATENT_RGB[k][c];
      out[p * 3 + c] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
    }
  }
  return out;
}

/** A PNG preview whose longest side is `size` pixels (nearest-neighbour upscaling keeps latent pixels visible). */
export async function latentPreview(latents: Float32Array, shape: readonly number[], size = 64): Promise<PngPreview | undefined> {
  const [, channels, height, width] = shape;
  if (channels === undefined || height === undefined || width === undefined) return undefined;
  const rgb = latentsToRgb(latents, channels, height, width);
  if (!rgb) return undefined;
  const scale = size / Math.max(height, width);
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).resize(w, h, { kernel: 'nearest' }).png().toBuffer();
  return { width: w, height: h, png: png.toString('base64') };
}

/** A small PNG of a finished image (for the result event: enough for a thumbnail, without a fetch). */
export async function imageThumbnail(pngPath: string, size = 128): Promise<PngPreview> {
  const { data, info } = await sharp(pngPath).resize(size, size, { fit: 'inside', withoutEnlargement: true }).png().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, png: data.toString('base64') };
}
