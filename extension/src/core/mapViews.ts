// Which map the map panel shows for a word, given the layer/resolution filter and the step slider. Pure (no 'vscode',
// no DOM, no Node): the extension host builds the panel's data with it, and build.mjs bundles it for the webview
// (global `heedViews`) so the panel's controls run exactly this tested code.

/** A row-major map. */
export interface Plane {
  height: number;
  width: number;
  data: ArrayLike<number>;
}

/** Several maps on one grid: per layer (names in the run's layer list) or per UNet call. */
export interface PlaneStack {
  height: number;
  width: number;
  planes: ArrayLike<number>[];
}

/** One word's maps as the panel holds them. */
export interface WordMaps {
  word: string;
  tokenIndices: number[];
  maxAttention?: number;
  /** DAAM's map: every layer, every step. */
  daam: Plane;
  /** Per grid size: one plane per layer, summed over steps. */
  layers?: PlaneStack[];
  /** Per resolution: one plane per UNet call (head/layer mean). */
  steps?: PlaneStack[];
}

/** What the per-layer stacks of one grid hold (GenerateResult.layerMaps). */
export interface LayerGroup {
  height: number;
  width: number;
  layers: string[];
}

/** What the per-step stacks of one resolution hold (GenerateResult.stepMaps). */
export interface StepGroup {
  height: number;
  width: number;
  calls: number;
  timesteps: number[];
}

export interface ViewOption {
  /** 'daam', 'grid:16x16' or 'layer:16x16:2'. */
  id: string;
  label: string;
}

export interface Selection {
  plane: Plane;
  /** What is shown, for the caption and the overlay's accessible name. */
  caption: string;
  /** Set when the selection could not be honoured exactly (and what is shown instead). */
  note?: string;
}

const gridKey = (g: { height: number; width: number }): string => `${g.height}x${g.width}`;
const gridText = (g: { height: number; width: number }): string => `${g.height}×${g.width}`;

/** A layer's short name: 'up_blocks.1.attentions.0.transformer_blocks.0.attn2' → 'up_blocks.1.attentions.0'. */
export function shortLayerName(modulePath: string): string {
  return modulePath.replace(/\.transformer_blocks\.0\.attn2$/, '').replace(/\.attn2$/, '');
}

/** The filter's options: DAAM first, then per grid (finest first) the grid's layer mean and each of its layers. */
export function viewOptions(layerGroups: readonly LayerGroup[] | undefined): ViewOption[] {
  const out: ViewOption[] = [{ id: 'daam', label: 'All layers (DAAM)' }];
  for (const g of layerGroups ?? []) {
    out.push({ id: `grid:${gridKey(g)}`, label: `${gridText(g)}: mean of ${g.layers.length} layer${g.layers.length === 1 ? '' : 's'}` });
    g.layers.forEach((name, i) => out.push({ id: `layer:${gridKey(g)}:${i}`, label: `${gridText(g)}: ${shortLayerName(name)}` }));
  }
  return out;
}

interface ParsedView {
  kind: 'daam' | 'grid' | 'layer';
  height?: number;
  width?: number;
  index?: number;
}

function parseView(id: string): ParsedView {
  const m = /^(grid|layer):(\d+)x(\d+)(?::(\d+))?$/.exec(id);
  if (!m) return { kind: 'daam' };
  return { kind: m[1] as 'grid' | 'layer', height: Number(m[2]), width: Number(m[3]), ...(m[4] !== undefined ? { index: Number(m[4]) } : {}) };
}

function meanPlane(stack: PlaneStack): Plane {
  const n = stack.height * stack.width;
  const out = new Float32Array(n);
  for (const p of stack.planes) for (let i = 0; i < n; i++) out[i] += p[i]! / stack.planes.length;
  return { height: stack.height, width: stack.width, data: out };
}

const sameGrid = (a: { height: number; width: number }, b: ParsedView): boolean => a.height === b.height && a.width === b.width;

/**
 * The plane to draw for `word` with filter `viewId` at `step` (0-based UNet call; null = all steps). Per-step maps
 * are kept per resolution (the layer mean), not per layer: a layer view at a step shows its grid's per-step map,
 * and a grid without per-step maps shows the nearest one that has them, each with a note saying so.
 */
export function selectPlane(word: WordMaps, viewId: string, step: number | null, layerGroups: readonly LayerGroup[] = [], stepGroups: readonly StepGroup[] = []): Selection {
  const view = parseView(viewId);
  if (step !== null) {
    const stacks = word.steps ?? [];
    if (stacks.length === 0) {
      return { ...selectPlane(word, viewId, null, layerGroups), note: 'this run kept no per-step maps (generate with maps.perStep): showing all steps' };
    }
    const byGrid = view.kind === 'daam' ? undefined : stacks.find((s) => sameGrid(s, view));
    // Nearest resolution when the view's grid has no per-step maps (DAAM has no single grid: the finest one).
    const stack = byGrid ?? [...stacks].sort((a, b) => (view.kind === 'daam'
      ? b.height * b.width - a.height * a.width
      : Math.abs(a.height - (view.height ?? 0)) - Math.abs(b.height - (view.height ?? 0))))[0]!;
    const k = Math.max(0, Math.min(stack.planes.length - 1, Math.floor(step)));
    const group = stepGroups.find((g) => sameGrid(g, { kind: 'grid', height: stack.height, width: stack.width }));
    const t = group?.timesteps[k];
    const caption = `${gridText(stack)}, mean of its layers, step ${k + 1} of ${stack.planes.length}${t !== undefined ? ` (t=${t})` : ''}`;
    let note: string | undefined;
    if (view.kind === 'layer') note = `per-step maps are kept per resolution, not per layer: showing the ${gridText(stack)} layer mean`;
    else if (view.kind === 'grid' && !byGrid) note = `no per-step maps at ${gridText(view as { height: number; width: number })}: showing ${gridText(stack)}`;
    return { plane: { height: stack.height, width: stack.width, data: stack.planes[k]! }, caption, ...(note ? { note } : {}) };
  }
  if (view.kind !== 'daam') {
    const stack = (word.layers ?? []).find((s) => sameGrid(s, view));
    const group = layerGroups.find((g) => sameGrid(g, view));
    if (stack && view.kind === 'grid') {
      return { plane: meanPlane(stack), caption: `${gridText(stack)}, mean of ${stack.planes.length} layer${stack.planes.length === 1 ? '' : 's'}, all steps` };
    }
    if (stack && view.index !== undefined && view.index < stack.planes.length) {
      const name = group?.layers[view.index];
      return { plane: { height: stack.height, width: stack.width, data: stack.planes[view.index]! }, caption: `${name ? shortLayerName(name) : `layer ${view.index}`} (${gridText(stack)}), all steps` };
    }
    return { plane: word.daam, caption: 'all layers (DAAM), all steps', note: 'this run has no maps for that layer filter (generate with maps.perLayer): showing DAAM' };
  }
  return { plane: word.daam, caption: 'all layers (DAAM), all steps' };
}

/** The number of positions of the step slider besides "all steps": the longest per-step stack (0 = none). */
export function stepCount(words: readonly WordMaps[]): number {
  return Math.max(0, ...words.flatMap((w) => (w.steps ?? []).map((s) => s.planes.length)));
}

/** Splits an .npy stack [n, h, w] into planes (views, no copies). */
export function splitStack(shape: readonly number[], data: Float32Array): PlaneStack {
  if (shape.length !== 3) throw new Error(`expected a stack of maps [n, height, width], got shape [${shape.join(', ')}]`);
  const [n, height, width] = shape as [number, number, number];
  if (n * height * width !== data.length) throw new Error(`shape [${shape.join(', ')}] does not match ${data.length} values`);
  const plane = height * width;
  return { height, width, planes: Array.from({ length: n }, (_, i) => data.subarray(i * plane, (i + 1) * plane)) };
}
