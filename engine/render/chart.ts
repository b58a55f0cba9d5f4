// Line charts as hand-built SVG (axes, "nice" ticks, legend), rasterised to PNG by sharp.
// Used for the Attend-and-Excite loss per subject over steps and for mean attention distance vs depth.
// Non-finite points are skipped and break the line, so a NaN in a trace shows as a gap rather than a broken chart.
import sharp from 'sharp';
import { schemeTableau10 } from 'd3-scale-chromatic';
import { escapeXml, fitText, fmt, svgDocument, svgText } from './svg.js';

export interface ChartSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
  dashed?: boolean;
  /** Draw a dot at each point (default: when the series has ≤ 40 points). */
  markers?: boolean;
  /** Join the points with a line (default true); false draws a scatter (markers only). */
  line?: boolean;
  /** Error bars: ± this much around each point's y (same order as points). */
  yErrors?: ReadonlyArray<number>;
}

export interface HorizontalRule {
  y: number;
  label?: string;
  color?: string;
}

export interface LineChartSpec {
  series: readonly ChartSeries[];
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** Fixed axis ranges; by default the data range widened to nice tick values. */
  xDomain?: [number, number];
  yDomain?: [number, number];
  /** Reference lines, e.g. A&E thresholds. */
  rules?: readonly HorizontalRule[];
  /** Draw x tick labels as integers only (steps, layers). */
  integerX?: boolean;
}

export class ChartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChartError';
  }
}

/** Tick values on 1-2-5 steps covering [min, max] with about `count` intervals (d3's algorithm, simplified). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= d;
    max += d;
  }
  const step = tickStep(min, max, count);
  const start = Math.ceil(min / step - 1e-9);
  const stop = Math.floor(max / step + 1e-9);
  const ticks: number[] = [];
  for (let i = start; i <= stop; i++) ticks.push(roundTo(i * step, step));
  return ticks;
}

function tickStep(min: number, max: number, count: number): number {
  const raw = (max - min) / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const err = raw / power;
  const m = err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
  return m * power;
}

/** Removes float noise such as 0.30000000000000004 from a tick value. */
function roundTo(v: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(v.toFixed(Math.min(20, decimals)));
}

/** Widens [min, max] outwards to tick multiples. */
export function niceDomain(min: number, max: number, count = 5): [number, number] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    return [min - d, max + d];
  }
  const step = tickStep(min, max, count);
  return [roundTo(Math.floor(min / step + 1e-9) * step, step), roundTo(Math.ceil(max / step - 1e-9) * step, step)];
}

export function formatTick(v: number, ticks: readonly number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : Math.abs(v) || 1;
  if (Math.abs(v) >= 1e5 || (Math.abs(v) > 0 && Math.abs(v) < 1e-4)) return v.toExponential(1);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(Math.min(10, decimals));
}

function finitePoints(spec: LineChartSpec): { xs: number[]; ys: number[] } {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of spec.series) {
    s.points.forEach(([x, y], k) => {
      if (!Number.isFinite(x) || !Number.isFinite(y)) return;
      xs.push(x);
      ys.push(y);
      const e = s.yErrors?.[k];
      if (e !== undefined && Number.isFinite(e)) ys.push(y - e, y + e);
    });
  }
  for (const r of spec.rules ?? []) if (Number.isFinite(r.y)) ys.push(r.y);
  return { xs, ys };
}

/** Builds the chart's SVG document. */
export function lineChartSvg(spec: LineChartSpec): string {
  const width = spec.width ?? 640;
  const height = spec.height ?? 400;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 120 || height < 100) {
    throw new ChartError(`chart size must be integers of at least 120×100, got ${width}×${height}`);
  }
  const { xs, ys } = finitePoints(spec);
  const xDom = spec.xDomain ?? (xs.length ? niceDomain(Math.min(...xs), Math.max(...xs)) : [0, 1]);
  const yDom = spec.yDomain ?? (ys.length ? niceDomain(Math.min(...ys), Math.max(...ys)) : [0, 1]);
  for (const [name, d] of [['xDomain', xDom], ['yDomain', yDom]] as const) {
    if (!Number.isFinite(d[0]) || !Number.isFinite(d[1]) || !(d[1] > d[0])) throw new ChartError(`${name} must be finite with max > min, got [${d[0]}, ${d[1]}]`);
  }
  const font = 12;
  const legendItems = spec.series.filter((s) => s.name);
  const legendW = legendItems.length ? Math.min(width * 0.35, Math.max(...legendItems.map((s) => s.name.length)) * font * 0.62 + 34) : 0;
  const m = { top: spec.title ? 34 : 14, right: 16 + legendW, bottom: spec.xLabel ? 48 : 30, left: spec.yLabel ? 66 : 50 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  if (pw < 40 || ph < 40) throw new ChartError(`chart ${width}×${height} leaves no room for the plot; make it larger`);
  const sx = (x: number): number => m.left + ((x - xDom[0]) / (xDom[1] - xDom[0])) * pw;
  const sy = (y: number): number => m.top + ph - ((y - yDom[0]) / (yDom[1] - yDom[0])) * ph;

  const body: string[] = [`<rect width="${width}" height="${height}" fill="#fff"/>`];
  // grid + ticks
  let xt = niceTicks(xDom[0], xDom[1], Math.max(2, Math.floor(pw / 80)));
  if (spec.integerX) xt = xt.filter((v) => Number.isInteger(v));
  const yt = niceTicks(yDom[0], yDom[1], Math.max(2, Math.floor(ph / 50)));
  for (const v of yt) {
    if (v < yDom[0] || v > yDom[1]) continue;
    const y = sy(v);
    body.push(`<line x1="${fmt(m.left)}" y1="${fmt(y)}" x2="${fmt(m.left + pw)}" y2="${fmt(y)}" stroke="#e5e5e5" stroke-width="1"/>`);
    body.push(svgText(formatTick(v, yt), { x: m.left - 6, y, fontSize: font - 1, anchor: 'end', baseline: 'middle', fill: '#333' }));
  }
  for (const v of xt) {
    if (v < xDom[0] || v > xDom[1]) continue;
    const x = sx(v);
    body.push(`<line x1="${fmt(x)}" y1="${fmt(m.top + ph)}" x2="${fmt(x)}" y2="${fmt(m.top + ph + 4)}" stroke="#333" stroke-width="1"/>`);
    body.push(svgText(formatTick(v, xt), { x, y: m.top + ph + 16, fontSize: font - 1, anchor: 'middle', fill: '#333' }));
  }
  body.push(`<rect x="${fmt(m.left)}" y="${fmt(m.top)}" width="${fmt(pw)}" height="${fmt(ph)}" fill="none" stroke="#333" stroke-width="1"/>`);
  // reference rules
  for (const r of spec.rules ?? []) {
    if (!Number.isFinite(r.y) || r.y < yDom[0] || r.y > yDom[1]) continue;
    const y = sy(r.y);
    const c = escapeXml(r.color ?? '#888');
    body.push(`<line x1="${fmt(m.left)}" y1="${fmt(y)}" x2="${fmt(m.left + pw)}" y2="${fmt(y)}" stroke="${c}" stroke-width="1" stroke-dasharray="2 3"/>`);
    if (r.label) body.push(svgText(r.label, { x: m.left + pw - 4, y: y - 4, fontSize: font - 2, anchor: 'end', fill: r.color ?? '#666' }));
  }
  // series, clipped to the plot area
  body.push(`<clipPath id="plot"><rect x="${fmt(m.left)}" y="${fmt(m.top)}" width="${fmt(pw)}" height="${fmt(ph)}"/></clipPath><g clip-path="url(#plot)">`);
  spec.series.forEach((s, si) => {
    const color = escapeXml(s.color ?? schemeTableau10[si % schemeTableau10.length]!);
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${fmt(sx(x))} ${fmt(sy(y))} `;
      pen = true;
    }
    if (d && s.line !== false) body.push(`<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} stroke-linejoin="round"/>`);
    s.yErrors?.forEach((e, k) => {
      const p = s.points[k];
      if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1]) || !Number.isFinite(e) || e <= 0) return;
      const x = fmt(sx(p[0]));
      body.push(`<line x1="${x}" y1="${fmt(sy(p[1] - e))}" x2="${x}" y2="${fmt(sy(p[1] + e))}" stroke="${color}" stroke-width="1" opacity="0.7"/>`);
    });
    if (s.line === false || (s.markers ?? s.points.length <= 40)) {
      for (const [x, y] of s.points) if (Number.isFinite(x) && Number.isFinite(y)) body.push(`<circle cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="2.5" fill="${color}"/>`);
    }
  });
  body.push('</g>');
  if (xs.length === 0) body.push(svgText('no finite data', { x: m.left + pw / 2, y: m.top + ph / 2, fontSize: font, anchor: 'middle', fill: '#999' }));
  // labels
  if (spec.title) body.push(svgText(fitText(spec.title, font + 2, width - 10), { x: width / 2, y: 20, fontSize: font + 2, anchor: 'middle', weight: 'bold' }));
  if (spec.xLabel) body.push(svgText(spec.xLabel, { x: m.left + pw / 2, y: height - 10, fontSize: font, anchor: 'middle' }));
  if (spec.yLabel) body.push(svgText(spec.yLabel, { x: 16, y: m.top + ph / 2, fontSize: font, anchor: 'middle', rotate: -90 }));
  // legend
  legendItems.forEach((s, i) => {
    const si = spec.series.indexOf(s);
    const color = escapeXml(s.color ?? schemeTableau10[si % schemeTableau10.length]!);
    const x = width - legendW - 4;
    const y = m.top + 8 + i * (font + 8);
    if (s.line === false) body.push(`<circle cx="${fmt(x + 10)}" cy="${fmt(y)}" r="3.5" fill="${color}"/>`);
    else body.push(`<line x1="${fmt(x)}" y1="${fmt(y)}" x2="${fmt(x + 20)}" y2="${fmt(y)}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    body.push(svgText(fitText(s.name, font, legendW - 30), { x: x + 26, y, fontSize: font, baseline: 'middle' }));
  });
  return svgDocument(width, height, body);
}

/** Renders the chart to PNG bytes at exactly spec.width × spec.height. */
export async function renderLineChart(spec: LineChartSpec): Promise<Buffer> {
  const svg = lineChartSvg(spec);
  const width = spec.width ?? 640;
  const height = spec.height ?? 400;
  // density 72 keeps librsvg's 1 SVG unit = 1 pixel; resize guards against any rounding of the intrinsic size.
  return sharp(Buffer.from(svg), { density: 72 }).resize(width, height, { fit: 'fill' }).flatten({ background: '#ffffff' }).png().toBuffer();
}
