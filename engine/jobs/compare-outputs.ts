// Files of `heed explain --compare`: compare.png (the input, then each method's map on one colour scale with a
// colour bar, the method's name above and its wall time under), compare.json (per method: what it explains, wall
// time, the run's timings, the map's raw range and the map itself) and, with a trace folder, compare_<method>.npy
// [grid] (raw values).
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeNpy } from '../io/npy.js';
import { heatmapImage, mapStats, renderComparison, type ComparisonTile, type Normalization } from '../render/index.js';
import type { CompareResult } from '../explain/compare.js';
import { gridToNested } from '../explain/tensor.js';
import { startOutputFolder, type WrittenFiles } from './explain-outputs.js';

/**
 * How the maps share the colour scale: 'normalized' — each map min–max scaled to [0, 1] (methods' raw units differ:
 * rollout is a probability, LRP a relevance, gradcam already [0, 1]), one bar 0..1; 'shared' — the raw values on one
 * range (the min and max over all maps).
 */
export type CompareScale = 'normalized' | 'shared';
export const COMPARE_SCALES: readonly CompareScale[] = ['normalized', 'shared'];

export function formatMs(v: number): string {
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`;
}

/** The colour range each map is drawn with, and the bar's. */
export function compareRange(result: CompareResult, scale: CompareScale): { normalize: (i: number) => Normalization; bar: { min: number; max: number; label: string } } {
  if (scale === 'normalized') return { normalize: () => 'minmax', bar: { min: 0, max: 1, label: 'each map min–max scaled' } };
  let min = Infinity;
  let max = -Infinity;
  for (const m of result.methods) {
    const s = mapStats(m.map.data);
    min = Math.min(min, s.min);
    max = Math.max(max, s.max);
  }
  if (!(max > min)) max = min + 1; // every map flat and equal: any range shows them as one colour
  return { normalize: () => ({ min, max }), bar: { min, max, label: 'raw value (shared range)' } };
}

export function compareJson(result: CompareResult, scale: CompareScale): Record<string, unknown> {
  return {
    model: result.model,
    image: { height: result.image.height, width: result.image.width, originalSize: result.image.originalSize },
    classes: result.classes, similarities: result.similarities,
    classIndex: result.classIndex, label: result.label, text: result.text,
    scale,
    /** The colour bar's range: [0, 1] for 'normalized', the raw min and max over all maps for 'shared'. */
    colorRange: (({ min, max }) => ({ min, max }))(compareRange(result, scale).bar),
    methods: result.methods.map((m) => {
      const s = mapStats(m.map.data);
      return { method: m.method, about: m.about, wallMs: m.wallMs, runsMs: m.runsMs, timingsMs: m.timings, min: s.min, max: s.max, map: gridToNested(m.map) };
    }),
    skipped: result.skipped,
    notes: result.notes,
  };
}

export async function writeCompareOutputs(result: CompareResult, outDirIn: string, scale: CompareScale = 'normalized', traceDirIn?: string): Promise<WrittenFiles> {
  const { outDir, files, base, put } = await startOutputFolder(outDirIn, result.image);
  const { normalize, bar } = compareRange(result, scale);
  const what = result.text !== undefined ? `"${result.text}"` : result.label !== undefined ? `${result.label} (class ${result.classIndex})` : '';
  const tiles: ComparisonTile[] = [{ image: base, title: 'input', ...(what ? { caption: what } : {}) }];
  for (const [i, m] of result.methods.entries()) {
    tiles.push({
      image: heatmapImage(m.map, base.width, base.height, { colormap: 'turbo', normalize: normalize(i), resample: 'bilinear' }),
      title: m.method, caption: formatMs(m.wallMs),
    });
  }
  put('compare.png', await renderComparison(tiles, { colormap: 'turbo', ...bar }, { title: `Methods compared${what ? `: ${what}` : ''}`, columns: Math.min(tiles.length, 5) }));
  put('compare.json', JSON.stringify(compareJson(result, scale), null, 1));
  const traceFiles: string[] = [];
  if (traceDirIn !== undefined) {
    const traceDir = resolve(traceDirIn);
    mkdirSync(traceDir, { recursive: true });
    for (const m of result.methods) {
      const name = `compare_${m.method.replace(/-/g, '_')}.npy`;
      writeNpy(join(traceDir, name), m.map.data, [m.map.height, m.map.width]);
      traceFiles.push(name);
    }
  }
  return { outDir, files, traceFiles };
}
