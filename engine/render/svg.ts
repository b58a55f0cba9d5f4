// Small helpers for the SVG text layers that sharp (librsvg) rasterises: labels, titles, chart text.
// Every string that reaches an SVG goes through escapeXml — prompts are user text and may contain `<`, `&` or quotes.

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!)
    // XML 1.0 forbids most control characters even when escaped; librsvg would reject the whole document.
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '');
}

export const FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

/** A conservative width estimate for sans-serif text (librsvg gives no metrics back): ≈ 0.58 em per character (DejaVu Sans averages a little less). */
export function estimateTextWidth(text: string, fontSize: number): number {
  return [...text].length * fontSize * 0.58;
}

/** Shortens text with an ellipsis so that its estimated width fits `maxWidth`. */
export function fitText(text: string, fontSize: number, maxWidth: number): string {
  const chars = [...text];
  if (estimateTextWidth(text, fontSize) <= maxWidth) return text;
  const keep = Math.max(1, Math.floor(maxWidth / (fontSize * 0.58)) - 1);
  return chars.slice(0, keep).join('') + '…';
}

export interface SvgTextOptions {
  x: number;
  y: number;
  fontSize?: number;
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
  weight?: 'normal' | 'bold';
  /** Rotation in degrees around (x, y). */
  rotate?: number;
  baseline?: 'auto' | 'middle' | 'hanging';
}

export function svgText(text: string, o: SvgTextOptions): string {
  const attrs = [
    `x="${fmt(o.x)}"`,
    `y="${fmt(o.y)}"`,
    `font-family="${FONT_FAMILY}"`,
    `font-size="${fmt(o.fontSize ?? 12)}"`,
    `text-anchor="${o.anchor ?? 'start'}"`,
    `fill="${escapeXml(o.fill ?? '#000')}"`,
  ];
  if (o.weight === 'bold') attrs.push('font-weight="bold"');
  if (o.rotate) attrs.push(`transform="rotate(${fmt(o.rotate)} ${fmt(o.x)} ${fmt(o.y)})"`);
  if (o.baseline && o.baseline !== 'auto') attrs.push(`dominant-baseline="${o.baseline}"`);
  return `<text ${attrs.join(' ')}>${escapeXml(text)}</text>`;
}

/** Compact number formatting for SVG coordinates. */
export function fmt(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

export function svgDocument(width: number, height: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${body.join('')}</svg>`;
}

export function rgbCss(c: readonly [number, number, number]): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
