// The LRP family of `heed explain` (transformer-attribution, partial-lrp, raw-attention, gradcam, attn-lrp): its names,
// result type and file names. The methods themselves are entries of the method table (methods/lrp.ts).
import type { GridMap } from '../tensor.js';
import type { AttnLrpAttention } from '../lrp/attn-rules.js';

export type LrpMethod = 'transformer-attribution' | 'partial-lrp' | 'raw-attention' | 'gradcam' | 'attn-lrp';
export const LRP_METHODS: readonly LrpMethod[] = ['transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'attn-lrp'];

export function isLrpMethod(m: string): m is LrpMethod {
  return (LRP_METHODS as readonly string[]).includes(m);
}

export interface LrpMethodResult {
  method: LrpMethod;
  classIndex: number;
  label: string;
  /** transformer-attribution only: the first block of the rollout. */
  startLayer?: number;
  /** One value per patch: raw (unnormalised) except gradcam, which the reference min–max normalises. attn-lrp: the
   * input relevance summed over each patch. */
  map: GridMap;
  /** attn-lrp only: LXT's heatmap at input resolution (relevance of every pixel, summed over colour channels). */
  pixels?: GridMap;
  /** attn-lrp only: how relevance crossed the attention ('cp' or 'attnlrp'). */
  attention?: AttnLrpAttention;
}

/** File stem of a method's outputs: `transformer_attribution_<class>` (.png overlay, .npy in the trace folder). */
export function lrpFileStem(r: LrpMethodResult): string {
  return `${r.method.replace(/-/g, '_')}_${r.classIndex}`;
}
