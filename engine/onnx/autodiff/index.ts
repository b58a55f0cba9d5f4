// Reverse-mode gradients through ONNX graphs, emitted as ONNX so onnxruntime runs them. See build.ts for the algorithm and rules/ for the ops.
export { buildVjp, buildSplitVjp, COTANGENT_SUFFIX, GRADIENT_SUFFIX } from './build.js';
export type { VjpOptions, VjpModel, SplitVjp, TensorSpec } from './build.js';
export { VjpRunner } from './runner.js';
export type { Residuals, VjpRunnerOptions, VjpSignature } from './runner.js';
export { VjpError, UnsupportedOpError } from './errors.js';
export { supportedOps } from './rules/index.js';
export type { Rule, RuleContext } from './rule.js';
