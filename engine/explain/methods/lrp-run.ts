// The LRP family of `heed explain` (transformer-attribution, partial-lrp, raw-attention, gradcam): its names, result
// type and file names. The methods themselves are entries of the method table (methods/lrp.ts).
import type { GridMap } from '../tensor.js';

export type LrpMethod = 'transformer-attribution' | 'partial-lrp' | 'raw-attention' | 'gradcam';
export const LRP_METHODS: readonly LrpMethod[] = ['transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam'];

export function isLrpMethod(m: string): m is LrpMethod {
  return (LRP_METHODS as readonly string[]).includes(m);
}

export interface LrpMethodResult {
  method: LrpMethod;
  classIndex: number;
  label: string;
  /** transformer-attribution only: the first block of the rollout. */
  startLayer?: number;
  /** One value per patch: raw (unnormalised) except gradcam, which the reference min–max normalises. */
  map: GridMap;
}

/** File stem of a method's outputs: `transformer_attribution_<class>` (.png overlay, .npy in the trace folder). */
export function lrpFileStem(r: LrpMethodResult): string {
  return `${r.method.replace(/-/g, '_')}_${r.classIndex}`;
}
