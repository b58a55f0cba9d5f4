// Maps side by side on one colour scale with a colour bar: a title band above each tile and a caption band under it
// (`heed explain --compare`: method name above, wall time under). Pixels are composited raw; text is one SVG layer.
import sharp, { type OverlayOptions } from 'sharp';
import { colormapLut, type ColormapName } from './colormap.js';
import { makeRgb, resizeRgb, type RgbImage } from './image.js';
import { fitText, rgbCss, svgDocument, svgText } from './svg.js';
import { formatTick, niceTicks } from './chart.js';

export interface ComparisonTile {
  image: RgbImage;
  title: string;
  caption?: string;
}

export interface ColorBarSpec {
  colormap: ColormapName;
  /** The values the colormap's ends stand for. */
  min: number;
  max: number;
  label: string;
}

export interface ComparisonOptions {
  title?: string;
  /** Tiles per row (default: all in one row up to 5). */
  columns?: number;
  /** Tiles are scaled so that their shorter side is at least this (default 160 px; nearest neighbour for small maps). */
  minTileSide?: number;
}

export class ComparisonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ComparisonError';
  }
}

/** A vertical strip of the colormap, top = max, `width × height`. */
export function colorBarImage(colormap: ColormapName, width: number, height: number): RgbImage {
  const lut = colormapLut(colormap);
  const img = makeRgb(width, height);
  for (let y = 0; y < height; y++) {
    const i = Math.round((255 * (height - 1 - y)) / Math.max(1, height - 1)) * 3;
    for (let x = 0; x < width; x++) img.data.set(lut.subarray(i, i + 3), (y * width + x) * 3);
  }
  return img;
}

function raw(img: RgbImage): { input: Buffer; raw: { width: number; height: number; channels: 3 } } {
  return { input: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), raw: { width: img.width, height: img.height, channels: 3 } };
}

export async function renderComparison(tiles: readonly ComparisonTile[], bar: ColorBarSpec, o: ComparisonOptions = {}): Promise<Buffer> {
  if (tiles.length === 0) throw new ComparisonError('nothing to compare: no tiles');
  if (!Number.isFinite(bar.min) || !Number.isFinite(bar.max) || !(bar.max > bar.min)) {
    throw new ComparisonError(`colour bar range must be finite with max > min, got [${bar.min}, ${bar.max}]`);
  }
  const first = tiles[0]!.image;
  const scale = Math.max(1, (o.minTileSide ?? 160) / Math.min(first.width, first.height));
  const tw = Math.round(first.width * scale);
  const th = Math.round(first.height * scale);
  const columns = Math.min(tiles.length, o.columns ?? 5);
  const rows = Math.ceil(tiles.length / columns);
  const gap = 8;
  const font = 13;
  const titleBand = font + 10;
  const captionBand = font + 8;
  const heading = o.title ? font * 1.3 + 14 : 0;
  const barW = 18;
  const barLabelW = 64;
  const cellH = titleBand + th + captionBand;
  const width = gap + columns * (tw + gap) + barW + barLabelW + gap;
  const height = Math.round(heading + gap + rows * (cellH + gap));

  const composites: OverlayOptions[] = [];
  const text: string[] = [];
  if (o.title) {
    text.push(svgText(fitText(o.title, font * 1.3, width - 8), { x: width / 2, y: heading / 2 + 3, fontSize: font * 1.3, anchor: 'middle', baseline: 'middle', weight: 'bold', fill: '#111' }));
  }
  for (const [i, t] of tiles.entries()) {
    const x = gap + (i % columns) * (tw + gap);
    const y = heading + gap + Math.floor(i / columns) * (cellH + gap);
    const img = t.image.width === tw && t.image.height === th ? t.image : await resizeRgb(t.image, tw, th, scale >= 2 ? 'nearest' : 'lanczos3');
    composites.push({ ...raw(img), left: x, top: Math.round(y + titleBand) });
    text.push(svgText(fitText(t.title, font, tw - 2), { x: x + tw / 2, y: y + titleBand / 2 + 1, fontSize: font, anchor: 'middle', baseline: 'middle', weight: 'bold', fill: '#111' }));
    if (t.caption) text.push(svgText(fitText(t.caption, font - 1, tw - 2), { x: x + tw / 2, y: y + titleBand + th + captionBand / 2, fontSize: font - 1, anchor: 'middle', baseline: 'middle', fill: '#333' }));
  }
  // The colour bar spans the first row's tile, with ticks in the bar's own units.
  const barX = gap + columns * (tw + gap);
  const barTop = Math.round(heading + gap + titleBand);
  composites.push({ ...raw(colorBarImage(bar.colormap, barW, th)), left: barX, top: barTop });
  const ticks = niceTicks(bar.min, bar.max, 4).filter((v) => v >= bar.min - 1e-12 && v <= bar.max + 1e-12);
  for (const v of ticks) {
    const y = barTop + (th - 1) * (1 - (v - bar.min) / (bar.max - bar.min));
    text.push(`<line x1="${barX + barW}" y1="${y.toFixed(1)}" x2="${barX + barW + 4}" y2="${y.toFixed(1)}" stroke="#333" stroke-width="1"/>`);
    text.push(svgText(formatTick(v, ticks), { x: barX + barW + 6, y, fontSize: font - 2, baseline: 'middle', fill: '#333' }));
  }
  text.push(svgText(fitText(bar.label, font - 2, th), { x: barX + barW + barLabelW - 6, y: barTop + th / 2, fontSize: font - 2, anchor: 'middle', rotate: 90, fill: '#333' }));
  composites.push({ input: Buffer.from(svgDocument(width, height, text)), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: rgbCss([255, 255, 255]) } }).composite(composites).png().toBuffer();
}
