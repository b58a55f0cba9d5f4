// Labelled grids of images (token maps, attention heads) and side-by-side panels, composed by sharp.
// Pixels are composited as raw tiles; all text lives in one SVG layer on top (sharp rasterises it with librsvg).
import sharp, { type OverlayOptions } from 'sharp';
import { resizeRgb, type RgbImage } from './image.js';
import { fitText, rgbCss, svgDocument, svgText } from './svg.js';

export interface GridTile {
  image: RgbImage;
  /** Text under (or above) the tile, e.g. the token or word. Any characters: it is XML-escaped. */
  label?: string;
}

export interface GridOptions {
  /** Columns; default ceil(sqrt(n)) so the grid stays roughly square. */
  columns?: number;
  /** Tile size in pixels; default the first tile's size. Tiles of other sizes are resized to it. */
  tileWidth?: number;
  tileHeight?: number;
  /** Space between tiles and around the grid. Default 4. */
  gap?: number;
  fontSize?: number;
  /** Height of each label band; default fontSize + 8. 0 when no tile has a label. */
  labelHeight?: number;
  labelPosition?: 'below' | 'above';
  /** Optional heading across the top. */
  title?: string;
  background?: [number, number, number];
  textColor?: string;
}

export interface GridLayout {
  columns: number;
  rows: number;
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  titleHeight: number;
  labelHeight: number;
  /** Top-left corner of each tile's image and the baseline point of its label. */
  cells: { x: number; y: number; labelX: number; labelY: number }[];
}

export class GridError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GridError';
  }
}

/** Pure geometry of a grid, so callers (and tests) can know the output size without rendering. */
export function gridLayout(count: number, o: GridOptions & { tileWidth: number; tileHeight: number; anyLabel?: boolean }): GridLayout {
  if (!Number.isInteger(count) || count < 1) throw new GridError(`a grid needs at least one tile, got ${count}`);
  const columns = Math.min(count, o.columns ?? Math.ceil(Math.sqrt(count)));
  if (!Number.isInteger(columns) || columns < 1) throw new GridError(`columns must be a positive integer, got ${o.columns}`);
  const rows = Math.ceil(count / columns);
  const gap = o.gap ?? 4;
  const fontSize = o.fontSize ?? 12;
  const labelHeight = o.anyLabel === false ? 0 : (o.labelHeight ?? fontSize + 8);
  const titleHeight = o.title ? Math.round(fontSize * 1.3) + 10 : 0;
  const cellH = o.tileHeight + labelHeight;
  const width = gap + columns * (o.tileWidth + gap);
  const height = titleHeight + gap + rows * (cellH + gap);
  const cells: GridLayout['cells'] = [];
  for (let i = 0; i < count; i++) {
    const cx = gap + (i % columns) * (o.tileWidth + gap);
    const cy = titleHeight + gap + Math.floor(i / columns) * (cellH + gap);
    const above = o.labelPosition === 'above';
    const y = above ? cy + labelHeight : cy;
    const labelY = above ? cy + labelHeight / 2 : cy + o.tileHeight + labelHeight / 2;
    cells.push({ x: cx, y, labelX: cx + o.tileWidth / 2, labelY });
  }
  return { columns, rows, width, height, tileWidth: o.tileWidth, tileHeight: o.tileHeight, titleHeight, labelHeight, cells };
}

function rawInput(img: RgbImage): { input: Buffer; raw: { width: number; height: number; channels: 3 } } {
  return { input: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), raw: { width: img.width, height: img.height, channels: 3 } };
}

/** Renders tiles into one PNG. Returns the bytes and the layout used. */
export async function renderGrid(tiles: readonly GridTile[], o: GridOptions = {}): Promise<{ png: Buffer; layout: GridLayout }> {
  if (tiles.length === 0) throw new GridError('nothing to draw: the grid got no tiles');
  const tileWidth = o.tileWidth ?? tiles[0]!.image.width;
  const tileHeight = o.tileHeight ?? tiles[0]!.image.height;
  const anyLabel = tiles.some((t) => t.label !== undefined && t.label !== '');
  const layout = gridLayout(tiles.length, { ...o, tileWidth, tileHeight, anyLabel });
  const fontSize = o.fontSize ?? 12;
  const bg = o.background ?? [255, 255, 255];
  const textColor = o.textColor ?? '#111';

  const composites: OverlayOptions[] = [];
  for (let i = 0; i < tiles.length; i++) {
    const img = await resizeRgb(tiles[i]!.image, tileWidth, tileHeight);
    composites.push({ ...rawInput(img), left: layout.cells[i]!.x, top: layout.cells[i]!.y });
  }
  const text: string[] = [];
  if (o.title) {
    text.push(svgText(fitText(o.title, fontSize * 1.3, layout.width - 8), {
      x: layout.width / 2, y: layout.titleHeight / 2 + 2, fontSize: fontSize * 1.3, anchor: 'middle', baseline: 'middle', weight: 'bold', fill: textColor,
    }));
  }
  tiles.forEach((t, i) => {
    if (!t.label) return;
    const c = layout.cells[i]!;
    text.push(svgText(fitText(t.label, fontSize, tileWidth - 2), { x: c.labelX, y: c.labelY, fontSize, anchor: 'middle', baseline: 'middle', fill: textColor }));
  });
  if (text.length > 0) composites.push({ input: Buffer.from(svgDocument(layout.width, layout.height, text)), left: 0, top: 0 });

  const png = await sharp({ create: { width: layout.width, height: layout.height, channels: 3, background: rgbCss(bg) } })
    .composite(composites)
    .png()
    .toBuffer();
  return { png, layout };
}

export interface Panel {
  image: RgbImage;
  title: string;
}

/**
 * Panels in one row with their titles above, at one common size (the largest panel's): "plain | Attend-and-Excite",
 * "image | rollout | Chefer". Text is escaped like every label.
 */
export async function renderSideBySide(panels: readonly Panel[], o: { gap?: number; fontSize?: number; title?: string } = {}): Promise<{ png: Buffer; layout: GridLayout }> {
  if (panels.length === 0) throw new GridError('nothing to draw: side-by-side got no panels');
  const tileWidth = Math.max(...panels.map((p) => p.image.width));
  const tileHeight = Math.max(...panels.map((p) => p.image.height));
  return renderGrid(
    panels.map((p) => ({ image: p.image, label: p.title })),
    { columns: panels.length, tileWidth, tileHeight, gap: o.gap ?? 8, fontSize: o.fontSize ?? 16, labelPosition: 'above', ...(o.title ? { title: o.title } : {}) },
  );
}

