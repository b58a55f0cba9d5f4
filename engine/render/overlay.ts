// Heat-map rendering: a map of any grid size, upsampled to an image's size, coloured by a perceptual colormap, and
// alpha-blended over the image.
import { colormapLut, lutIndex, type ColormapName } from './colormap.js';
import { makeRgb, type RgbImage } from './image.js';
import { normalizeValues, resizeMap, sanitizeMap, type Map2D, type Normalization, type ResampleMethod } from './map.js';

export interface HeatmapOptions {
  colormap?: ColormapName;
  /** How map values become [0,1] (after upsampling). Default `minmax`. */
  normalize?: Normalization;
  /** Upsampling of the map to the image size. Default `bicubic` (DAAM's choice). */
  resample?: ResampleMethod;
}

export interface OverlayOptions extends HeatmapOptions {
  /** Blend weight of the heat map over the image, 0..1. Default 0.5. */
  opacity?: number;
  /**
   * When true, the blend weight is opacity × normalised value, so low-attention regions show the image unchanged
   * (good for sparse maps); when false (default) the whole image is tinted, as DAAM and vit-explain display.
   */
  alphaByValue?: boolean;
}

export class OverlayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OverlayError';
  }
}

/**
 * Upsamples (if needed) and normalises a map to exactly width × height values in [0,1]. Non-finite map values are
 * treated as 0 (no attention) before anything else, whatever the grid size, so one NaN cannot blank or flood a picture.
 */
export function mapToUnit(map: Map2D, width: number, height: number, o: HeatmapOptions = {}): Float32Array {
  const clean = sanitizeMap(map);
  const resized = clean.width === width && clean.height === height ? clean : resizeMap(clean, width, height, o.resample ?? 'bicubic');
  return normalizeValues(resized.data, o.normalize ?? 'minmax');
}

/** The map alone as a colour image of the given size. */
export function heatmapImage(map: Map2D, width: number, height: number, o: HeatmapOptions = {}): RgbImage {
  const unit = mapToUnit(map, width, height, o);
  const lut = colormapLut(o.colormap ?? 'viridis');
  const img = makeRgb(width, height);
  for (let p = 0; p < unit.length; p++) {
    const i = lutIndex(unit[p]!) * 3;
    img.data[p * 3] = lut[i]!;
    img.data[p * 3 + 1] = lut[i + 1]!;
    img.data[p * 3 + 2] = lut[i + 2]!;
  }
  return img;
}

/** Blends the coloured map over `image` (which is not modified): out = (1 − a)·image + a·colour. */
export function overlayHeatmap(image: RgbImage, map: Map2D, o: OverlayOptions = {}): RgbImage {
  const opacity = o.opacity ?? 0.5;
  if (!(opacity >= 0 && opacity <= 1)) throw new OverlayError(`opacity must be between 0 and 1, got ${opacity}`);
  const unit = mapToUnit(map, image.width, image.height, o);
  const lut = colormapLut(o.colormap ?? 'viridis');
  const out = makeRgb(image.width, image.height);
  for (let p = 0; p < unit.length; p++) {
    const u = unit[p]!;
    const a = o.alphaByValue ? opacity * u : opacity;
    const i = lutIndex(u) * 3;
    for (let c = 0; c < 3; c++) {
      out.data[p * 3 + c] = Math.round((1 - a) * image.data[p * 3 + c]! + a * lut[i + c]!);
    }
  }
  return out;
}
