// The method table, in the order methods are listed, checked and reported (EXPLAIN_METHODS).
import type { ExplainMethod } from '../api.js';
import type { ExplainMethodImpl } from './method.js';
import { heads } from './heads.js';
import { rollout } from './rollout.js';
import { gradRollout } from './grad-rollout.js';
import { chefer } from './chefer.js';
import { distance } from './distance.js';
import { transformerAttributionMethod, partialLrpMethod, rawAttentionMethod, gradCamMethod, attnLrpMethod } from './lrp.js';

export const METHODS: readonly ExplainMethodImpl[] = [
  heads, rollout, gradRollout, chefer, distance, transformerAttributionMethod, partialLrpMethod, rawAttentionMethod, gradCamMethod,
  attnLrpMethod,
];

export function methodNamed(name: ExplainMethod): ExplainMethodImpl | undefined {
  return METHODS.find((m) => m.name === name);
}

export type { ExplainMethodImpl, MethodContext, GradientMethodContext } from './method.js';
export { asList } from './method.js';
