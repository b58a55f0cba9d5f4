// Public surface of the explain engine (ViT / DeiT / DINO / CLIP explanations).
export { explainImage, explainWithModel, validateOptions as validateExplainOptions, EXPLAIN_METHODS } from './api.js';
export type {
  ExplainMethod, ExplainOptions, ExplainResult, ClassScore, TextScore, RolloutResult, GradRolloutResult, CheferResult,
  HeadsResult, DistanceResult, GradRolloutVariant,
} from './api.js';
export { ExplainModel } from './model.js';
export type { ForwardResult, TokenizedTexts, TokenLayout, ModelLoadOptions } from './model.js';
export { GradientEngine } from './gradients.js';
export { ExplainError, MethodNotApplicableError } from './errors.js';
export { HEAD_FUSIONS } from './rollout.js';
export type { HeadFusion, RolloutNormalization } from './rollout.js';
export type { StartLayer } from './chefer.js';
export type { GridMap, LayerTensor } from './tensor.js';
