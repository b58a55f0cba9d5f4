// A patch map at image resolution, as the repository brings it there before ranking pixels and segmenting:
// torch `interpolate(scale_factor=patch, mode='bilinear')` (align_corners=False).
import { resizeMap } from '../../render/map.js';
import type { GridMap } from '../tensor.js';

/**
 * Upsamples a grid map bilinearly to `grid × patch` pixels and places it in an `image`-sized plane (row-major H·W).
 * Pixels outside the patch grid (an image that is not a multiple of the patch size; the model never saw them as
 * patches) get the map's minimum, so they rank as least relevant and segment as background.
 */
export function upsampleToImage(map: GridMap, patch: { height: number; width: number }, image: { height: number; width: number }): Float32Array {
  const h = map.height * patch.height;
  const w = map.width * patch.width;
  const up = resizeMap({ width: map.width, height: map.height, data: map.data }, w, h, 'bilinear').data;
  if (h === image.height && w === image.width) return up;
  let min = Infinity;
  for (const v of map.data) if (Number.isFinite(v) && v < min) min = v;
  const out = new Float32Array(image.height * image.width).fill(Number.isFinite(min) ? min : 0);
  for (let y = 0; y < Math.min(h, image.height); y++) {
    for (let x = 0; x < Math.min(w, image.width); x++) out[y * image.width + x] = up[y * w + x]!;
  }
  return out;
}
