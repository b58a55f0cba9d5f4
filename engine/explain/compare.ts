// `heed explain --compare`: every map method that applies to the model (or the ones asked for) on one image and one
// class (or, for CLIP, one text), each run on its own so that its wall time is its own cost — forward pass, gradient
// or relevance passes and the method — and its map is exactly what `heed explain --method <m>` gives.
//
// Timing: each method runs once untimed first (the warm-up builds its sessions and compiles its gradient / LRP
// graphs, which later runs reuse), then once timed. The timed run is the one whose map is reported.
import { explainWithModel, EXPLAIN_METHODS, type ExplainMethod, type ExplainOptions, type ExplainResult, type ClassScore, type TextScore } from './api.js';
import { ExplainError, MethodNotApplicableError } from './errors.js';
import { isMapMethod, methodMap, NON_MAP_METHODS } from './method-map.js';
import type { ExplainModel } from './model.js';
import type { GradientEngine } from './gradients.js';
import type { PreparedImage } from './preprocess.js';
import type { GridMap } from './tensor.js';

/** Every method `--compare` can set side by side, in the method table's order. */
export const COMPARE_METHODS: readonly ExplainMethod[] = EXPLAIN_METHODS.filter(isMapMethod);

export interface CompareOptions extends Omit<ExplainOptions, 'methods' | 'topK'> {
  /** The methods to compare; default every map method that applies to the model (the others are listed as skipped). */
  methods?: readonly ExplainMethod[];
  /** Timed runs per method (default 1); the wall time reported is their median. */
  repeat?: number;
}

export interface ComparedMethod {
  method: ExplainMethod;
  /** What the map explains ("class 3 (cat)", 'text "a dog"', "class-agnostic (max, discard 0.9)"). */
  about: string;
  map: GridMap;
  /** Wall time of the method's own explain run (forward, gradients / relevance, the method), after the warm-up; the
   *  median over `repeat` runs. */
  wallMs: number;
  /** Every timed run's wall time. */
  runsMs: number[];
  /** That run's breakdown (forward, gradients, lrp, the method). */
  timings: Record<string, number>;
}

export interface CompareResult {
  model: ExplainResult['model'];
  image: PreparedImage;
  classes?: ClassScore[];
  similarities?: TextScore[];
  /** The class every class method explains (classifiers). */
  classIndex?: number;
  label?: string;
  /** The text Chefer explains (CLIP). */
  text?: string;
  methods: ComparedMethod[];
  /** Methods left out because they do not apply to this model, with the reason. */
  skipped: { method: ExplainMethod; reason: string }[];
  notes: string[];
}

export interface CompareHooks {
  /** Called after each run: phase 'warm-up' or 'timed', 1-based index among `total` runs of that phase. */
  onRun?(phase: 'warm-up' | 'timed', method: ExplainMethod, index: number, total: number): void;
  signal?: AbortSignal;
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function validateCompareOptions(options: CompareOptions): void {
  for (const m of options.methods ?? []) {
    if (!EXPLAIN_METHODS.includes(m)) throw new ExplainError(`unknown method '${m}' (choose from ${COMPARE_METHODS.join(', ')})`, { field: 'methods' });
    if (!isMapMethod(m)) {
      throw new ExplainError(`method '${m}' cannot be compared: ${NON_MAP_METHODS.join(' and ')} give no single map (one map per head / one distance per head); ` +
        `choose from ${COMPARE_METHODS.join(', ')}`, { field: 'methods' });
    }
  }
  if (options.methods !== undefined && options.methods.length === 0) throw new ExplainError(`no method to compare: choose from ${COMPARE_METHODS.join(', ')}`, { field: 'methods' });
  if (options.repeat !== undefined && (!Number.isInteger(options.repeat) || options.repeat < 1 || options.repeat > 100)) {
    throw new ExplainError(`repeat must be an integer from 1 to 100 (got ${options.repeat})`, { field: 'repeat' });
  }
  if ((options.texts?.length ?? 0) > 1) {
    throw new ExplainError(`compare explains one image–text pair, got ${options.texts!.length} texts: give one text`, { field: 'texts' });
  }
}

export async function compareMethods(model: ExplainModel, gradients: GradientEngine, image: PreparedImage, options: CompareOptions = {}, hooks: CompareHooks = {}): Promise<CompareResult> {
  validateCompareOptions(options);
  const chosen = options.methods !== undefined;
  const candidates = [...new Set(options.methods ?? COMPARE_METHODS)];
  const { methods: _chosen, repeat = 1, ...base } = options;
  const skipped: CompareResult['skipped'] = [];

  // Warm-up: builds every method's sessions, finds the methods that do not apply, and fixes the class (top-1 unless
  // one was given) so that every class method explains the same one.
  let classIndex = options.classIndex;
  let first: ExplainResult | undefined;
  const applicable: ExplainMethod[] = [];
  for (const [i, method] of candidates.entries()) {
    hooks.signal?.throwIfAborted();
    try {
      const r = await explainWithModel(model, gradients, image, { ...base, ...(classIndex !== undefined ? { classIndex } : {}), methods: [method] });
      first ??= r;
      if (classIndex === undefined && r.classes?.[0]) classIndex = r.classes[0].index;
      applicable.push(method);
    } catch (e) {
      if (!(e instanceof MethodNotApplicableError) || chosen) throw e;
      skipped.push({ method, reason: e.reason });
    }
    hooks.onRun?.('warm-up', method, i + 1, candidates.length);
  }
  if (applicable.length === 0 || !first) {
    const byReason = new Map<string, string[]>();
    for (const s of skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.method]);
    throw new ExplainError(`no method applies to ${model.info.dir}: ${[...byReason].map(([reason, ms]) => `${ms.join(', ')} (${reason})`).join('; ')}`, { field: 'methods' });
  }

  const methods: ComparedMethod[] = [];
  for (const [i, method] of applicable.entries()) {
    hooks.signal?.throwIfAborted();
    const runsMs: number[] = [];
    let r: ExplainResult | undefined;
    for (let k = 0; k < repeat; k++) {
      const t0 = performance.now();
      r = await explainWithModel(model, gradients, image, { ...base, ...(classIndex !== undefined ? { classIndex } : {}), methods: [method] });
      runsMs.push(performance.now() - t0);
    }
    hooks.onRun?.('timed', method, i + 1, applicable.length);
    const m = methodMap(r!, method);
    if (!m) throw new ExplainError(`internal: method '${method}' produced no map`, { kind: 'internal' });
    methods.push({ method, about: m.about, map: m.map, wallMs: median(runsMs), runsMs, timings: r!.timings });
  }
  const label = classIndex !== undefined ? (first.classes?.find((c) => c.index === classIndex)?.label ?? model.info.labels?.[classIndex] ?? `class_${classIndex}`) : undefined;
  return {
    model: first.model, image, classes: first.classes, similarities: first.similarities,
    ...(classIndex !== undefined && first.classes ? { classIndex, label } : {}),
    ...(options.texts?.[0] !== undefined ? { text: options.texts[0] } : {}),
    methods, skipped, notes: first.notes,
  };
}
