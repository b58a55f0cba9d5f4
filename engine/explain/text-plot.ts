// CLIP text relevance as a picture: the text's tokens in a row, each on a background coloured by its share of the
// relevance (the Chefer notebook's `show_heatmap_on_text` draws the same thing with captum's HTML visualiser).
import sharp from 'sharp';
import { colormapLut, colorAt } from '../render/colormap.js';
import { estimateTextWidth, rgbCss, svgDocument, svgText } from '../render/svg.js';

export interface TokenScore {
  token: string;
  /** Share of the relevance, in [0, 1]. */
  normalized: number;
}

export async function renderTokenRelevance(text: string, tokens: readonly TokenScore[], title?: string): Promise<Buffer> {
  const font = 16;
  const pad = 6;
  const gap = 4;
  const lut = colormapLut('inferno');
  const max = Math.max(1e-12, ...tokens.map((t) => t.normalized));
  const boxes = tokens.map((t) => ({ ...t, width: Math.max(24, estimateTextWidth(t.token, font) + 2 * pad) }));
  const titleText = title ?? text;
  const width = Math.ceil(Math.max(200, gap + boxes.reduce((a, b) => a + b.width + gap, 0), estimateTextWidth(titleText, 13) + 16));
  const height = 24 + font + 2 * pad + 22;
  const body: string[] = [`<rect width="${width}" height="${height}" fill="#fff"/>`];
  body.push(svgText(titleText, { x: 8, y: 16, fontSize: 13, fill: '#333' }));
  let x = gap;
  const y = 24;
  for (const b of boxes) {
    // Scale by the largest share so the most relevant token is always the brightest colour.
    const t = b.normalized / max;
    const c = colorAt(lut, 0.15 + 0.8 * t);
    const lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    body.push(`<rect x="${x}" y="${y}" width="${b.width.toFixed(1)}" height="${font + 2 * pad}" rx="3" fill="${rgbCss(c)}"/>`);
    body.push(svgText(b.token, { x: x + b.width / 2, y: y + pad + font * 0.8, fontSize: font, anchor: 'middle', fill: lum > 140 ? '#000' : '#fff' }));
    body.push(svgText(b.normalized.toFixed(2), { x: x + b.width / 2, y: y + font + 2 * pad + 14, fontSize: 11, anchor: 'middle', fill: '#555' }));
    x += b.width + gap;
  }
  return sharp(Buffer.from(svgDocument(width, height, body))).png().toBuffer();
}
