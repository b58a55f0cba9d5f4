// The LRP family of `heed explain` (transformer-attribution, partial-lrp, raw-attention, gradcam): everything the
// explain pipeline (api.ts) needs to run them, kept here so that api.ts only registers and calls.
import { ExplainError } from '../errors.js';
import type { AttentionGradients } from '../gradients.js';
import type { LrpEngine } from '../lrp/engine.js';
import type { PreparedImage } from '../preprocess.js';
import { clsRowToGrid } from '../rollout.js';
import type { TokenLayout } from '../model.js';
import type { GridMap } from '../tensor.js';
import { attentionGradCam, partialLrp, rawAttention, transformerAttribution } from './lrp-maps.js';

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

export interface LrpRunInput {
  methods: ReadonlySet<string>;
  engine: LrpEngine;
  image: PreparedImage;
  /** Attention maps and gradients for each class, in the order of `classes`. */
  gradients: readonly AttentionGradients[];
  classes: readonly number[];
  labelOf: (c: number) => string;
  layout: TokenLayout;
  startLayer: number;
  timings: Record<string, number>;
}

/** Runs the requested LRP-family methods for each class; timings: `lrp` (relevance pass) and one entry per method. */
export async function runLrpMethods(input: LrpRunInput): Promise<LrpMethodResult[]> {
  const { methods, layout, timings } = input;
  const wanted = LRP_METHODS.filter((m) => methods.has(m));
  if (wanted.length === 0) return [];
  const needsRelevance = wanted.includes('transformer-attribution') || wanted.includes('partial-lrp');
  const out: LrpMethodResult[] = [];
  const grid = (row: Float64Array): GridMap => {
    const padded = new Float64Array(layout.prefixTokens + row.length);
    padded.set(row, layout.prefixTokens);
    return clsRowToGrid(padded, layout.grid, layout.prefixTokens, false);
  };
  const time = (key: string, t0: number): void => {
    timings[key] = (timings[key] ?? 0) + performance.now() - t0;
  };
  for (const [i, c] of input.classes.entries()) {
    const g = input.gradients[i];
    if (!g) throw new ExplainError('internal: no gradients for an LRP class');
    let cams;
    if (needsRelevance) {
      const t0 = performance.now();
      cams = (await input.engine.relevance(input.image, c)).cams;
      time('lrp', t0);
    }
    const label = input.labelOf(c);
    for (const method of wanted) {
      const t0 = performance.now();
      let row: Float64Array;
      if (method === 'transformer-attribution') row = transformerAttribution(cams!, g.visionGrads, input.startLayer, layout.prefixTokens);
      else if (method === 'partial-lrp') row = partialLrp(cams!, layout.prefixTokens);
      else if (method === 'raw-attention') row = rawAttention(g.vision, layout.prefixTokens);
      else row = attentionGradCam(g.vision, g.visionGrads, layout.prefixTokens);
      out.push({ method, classIndex: c, label, map: grid(row), ...(method === 'transformer-attribution' ? { startLayer: input.startLayer } : {}) });
      time(method, t0);
    }
  }
  return out;
}
