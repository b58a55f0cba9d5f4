// Which explanation methods the evaluation can score, how to ask the explain engine for each, and where its one
// patch map sits in an ExplainResult. Only methods that give ONE map per image and class are scored: `heads` (a map
// per head) and `distance` (no map) are not.
import type { ExplainMethod, ExplainOptions, ExplainResult } from '../api.js';
import type { GridMap } from '../tensor.js';

/** The scored methods: the explain engine's single-map methods plus a `random` baseline (no model run). */
export type EvalMethod = 'rollout' | 'grad-rollout' | 'chefer' | 'transformer-attribution' | 'partial-lrp' | 'raw-attention' | 'gradcam' | 'random';
export const EVAL_METHODS: readonly EvalMethod[] = [
  'rollout', 'grad-rollout', 'chefer', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'random',
];

export function isEvalMethod(m: string): m is EvalMethod {
  return (EVAL_METHODS as readonly string[]).includes(m);
}

/**
 * Explain options for scoring `methods` on `classIndex`. Rollout runs as the paper's rollout baseline (Chefer et al.'s
 * `compute_rollout_attention`: heads averaged, identity added, rows normalised, nothing discarded) rather than
 * vit-explain's default (max fusion, 90 % discarded); the class-specific methods use the engine's defaults.
 */
export function explainOptionsFor(methods: readonly EvalMethod[], classIndex: number, base: ExplainOptions = {}): ExplainOptions {
  const engine = methods.filter((m): m is Exclude<EvalMethod, 'random'> => m !== 'random') as ExplainMethod[];
  return {
    ...base,
    methods: engine,
    classIndex,
    headFusion: 'mean',
    discard: 0,
    rolloutNormalization: 'rows',
  };
}

/** The patch map of `method` in a result (explained for one class), or an error naming what is missing. */
export function methodMap(result: ExplainResult, method: Exclude<EvalMethod, 'random'>): GridMap {
  let map: GridMap | undefined;
  switch (method) {
    case 'rollout': map = result.rollout[0]?.map; break;
    case 'grad-rollout': map = result.gradRollout[0]?.map; break;
    case 'chefer': map = result.chefer[0]?.image; break;
    default: map = result.lrp.find((r) => r.method === method)?.map;
  }
  if (!map) throw new Error(`internal: the explain result has no ${method} map`);
  return map;
}

/**
 * The `random` baseline: independent uniform values per patch from a seeded generator (mulberry32), so a run is
 * repeatable. Any method should beat it: under positive perturbation its curve falls only as fast as removal itself.
 */
export function randomMap(grid: { height: number; width: number }, seed: number): GridMap {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const data = new Float32Array(grid.height * grid.width);
  for (let i = 0; i < data.length; i++) data[i] = next();
  return { height: grid.height, width: grid.width, data };
}
