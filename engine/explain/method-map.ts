// One map per method: the part of an explain result that `--compare`, `--video` and the panel's compare view show
// for a method. Methods that give one patch-grid map per explained class or text (rollout, gradient rollout,
// Chefer, the LRP family) have one; `heads` gives one map per head and `distance` one number per head, so they are
// not "a map" to set side by side.
import type { ExplainMethod, ExplainResult } from './api.js';
import type { GridMap } from './tensor.js';

/** Methods that give no single map (see above). */
export const NON_MAP_METHODS: readonly ExplainMethod[] = ['heads', 'distance'];

export function isMapMethod(m: ExplainMethod): boolean {
  return !NON_MAP_METHODS.includes(m);
}

export interface MethodMap {
  method: ExplainMethod;
  /** What the map explains, e.g. "class 3 (cat)", 'text "a dog"' or "class-agnostic". */
  about: string;
  map: GridMap;
}

/**
 * The first map `method` wrote into `result` (rollout: the first head fusion × discard ratio; gradient methods: the
 * first explained class or text), or undefined when it wrote none.
 */
export function methodMap(result: ExplainResult, method: ExplainMethod): MethodMap | undefined {
  const cls = (c: number | undefined, label: string | undefined): string => (c === undefined ? '' : `class ${c}${label ? ` (${label})` : ''}`);
  switch (method) {
    case 'rollout': {
      const r = result.rollout[0];
      return r && { method, about: `class-agnostic (${r.fusion}, discard ${r.discard})`, map: r.map };
    }
    case 'grad-rollout': {
      const g = result.gradRollout[0];
      return g && { method, about: cls(g.classIndex, g.label), map: g.map };
    }
    case 'chefer': {
      const c = result.chefer[0];
      return c && { method, about: c.text !== undefined ? `text "${c.text}"` : cls(c.classIndex, c.label), map: c.image };
    }
    case 'heads':
    case 'distance':
      return undefined;
    default: {
      // The LRP family (and any later method that reports through result.lrp).
      const l = result.lrp.find((r) => r.method === method);
      return l && { method, about: cls(l.classIndex, l.label), map: l.map };
    }
  }
}
