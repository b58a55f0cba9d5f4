// Layer-wise relevance propagation over ONNX graphs (rules as in Chefer et al. 2021), run by onnxruntime.
export { buildLrp, RELEVANCE_SUFFIX } from './build.js';
export type { LrpBuildOptions, LrpModel } from './build.js';
export { lrpRules, lrpSupportedOps, linearRelevance } from './rules.js';
export type { LrpRule, LrpContext, LrpOptions } from './rule.js';
export { LrpError, LrpUnsupportedOpError } from './errors.js';
export { LrpEngine } from './engine.js';
export type { ClassRelevance } from './engine.js';
export { attnLrpRules, ATTN_LRP_ATTENTIONS } from './attn-rules.js';
export type { AttnLrpAttention } from './attn-rules.js';
export { AttnLrpEngine, buildAttnLrp, poolToGrid } from './attn-engine.js';
export type { AttnLrpRelevance, AttnLrpBuildOptions } from './attn-engine.js';
