// The explain panel's *Compare methods* view: from the engine's compare.json, one tile per method with its title,
// its wall time and the value range its colours stand for — each map's own min..max ('normalized', the engine's
// default) or one range over all maps ('shared') — and the colour bar's range and label. Pure (no 'vscode', no DOM):
// build.mjs bundles it for the webview (global `heedCompare`), so the panel draws exactly this tested code.

export type CompareScale = 'normalized' | 'shared';

export interface ComparedMethodJson {
  method: string;
  about?: string;
  wallMs: number;
  map: number[][];
}

export interface CompareJson {
  classIndex?: number;
  label?: string;
  text?: string;
  methods: ComparedMethodJson[];
  skipped?: { method: string; reason: string }[];
}

export interface CompareTile {
  method: string;
  title: string;
  /** The wall time as shown under the map. */
  caption: string;
  /** Values mapped to the colormap's ends. */
  range: { min: number; max: number };
  map: number[][];
}

export interface CompareView {
  heading: string;
  tiles: CompareTile[];
  bar: { min: number; max: number; label: string };
  skipped: string[];
}

/** "3.2 ms", "41 ms", "12.3 s" (as the CLI's compare.png captions). */
export function formatWallMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

function rangeOf(values: Iterable<number>): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (min === Infinity) return { min: 0, max: 1 };
  return max > min ? { min, max } : { min, max: min + 1 };
}

export function compareView(json: CompareJson, scale: CompareScale = 'normalized'): CompareView {
  const methods = json.methods ?? [];
  const shared = rangeOf(methods.flatMap((m) => m.map.flat()));
  const tiles = methods.map((m): CompareTile => ({
    method: m.method, title: m.method, caption: formatWallMs(m.wallMs), map: m.map,
    range: scale === 'shared' ? shared : rangeOf(m.map.flat()),
  }));
  const what = json.text !== undefined ? `"${json.text}"` : json.label !== undefined ? `${json.label} (class ${json.classIndex})` : '';
  return {
    heading: `Methods compared${what ? `: ${what}` : ''}`,
    tiles,
    bar: scale === 'shared' ? { ...shared, label: 'raw value (shared range)' } : { min: 0, max: 1, label: 'each map min–max scaled' },
    skipped: (json.skipped ?? []).map((s) => `${s.method}: ${s.reason}`),
  };
}

/** Where v falls in the range, clamped to [0, 1] (non-finite → 0). */
export function unit(v: number, range: { min: number; max: number }): number {
  if (!Number.isFinite(v)) return 0;
  return Math.min(1, Math.max(0, (v - range.min) / (range.max - range.min)));
}
