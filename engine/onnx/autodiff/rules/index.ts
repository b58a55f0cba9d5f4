// The rule registry, keyed by ONNX op type (default domain). One entry per op; an op missing here fails the build
// with its op type and node name (UnsupportedOpError). Ops that never carry gradient (Shape, comparisons, ArgMax…)
// need no entry: they produce integer/bool tensors, which the builder never differentiates.
import type { Rule } from '../rule.js';
import * as ew from './elementwise.js';
import { MatMul, Gemm } from './matmul.js';
import { Conv } from './conv.js';
import { InstanceNormalization, LayerNormalization } from './norm.js';
import { Softmax, LogSoftmax } from './softmax.js';
import { ReduceMean, ReduceSum, ReduceL2 } from './reduce.js';
import { ReshapeLike, Transpose, Expand, Concat, Split, Slice, Gather, Resize } from './shape.js';

export const rules: ReadonlyMap<string, Rule> = new Map<string, Rule>([
  ['Add', ew.Add], ['Sub', ew.Sub], ['Mul', ew.Mul], ['Div', ew.Div], ['Pow', ew.Pow], ['Sum', ew.Sum],
  ['Neg', ew.Neg], ['Identity', ew.Identity], ['Dropout', ew.Dropout], ['Cast', ew.Cast],
  ['Sqrt', ew.Sqrt], ['Exp', ew.Exp], ['Log', ew.Log], ['Reciprocal', ew.Reciprocal],
  ['Sigmoid', ew.Sigmoid], ['Tanh', ew.Tanh], ['Erf', ew.Erf], ['Sin', ew.Sin], ['Cos', ew.Cos],
  ['Relu', ew.Relu], ['LeakyRelu', ew.LeakyRelu], ['Abs', ew.Abs], ['Where', ew.Where],
  ['MatMul', MatMul], ['Gemm', Gemm], ['Conv', Conv],
  ['InstanceNormalization', InstanceNormalization], ['LayerNormalization', LayerNormalization],
  ['Softmax', Softmax], ['LogSoftmax', LogSoftmax],
  ['ReduceMean', ReduceMean], ['ReduceSum', ReduceSum], ['ReduceL2', ReduceL2],
  ['Reshape', ReshapeLike], ['Flatten', ReshapeLike], ['Squeeze', ReshapeLike], ['Unsqueeze', ReshapeLike],
  ['Transpose', Transpose], ['Expand', Expand], ['Concat', Concat], ['Split', Split], ['Slice', Slice],
  ['Gather', Gather], ['Resize', Resize],
]);

/** Op types with a backward rule (for docs and coverage checks). */
export function supportedOps(): string[] {
  return [...rules.keys()].sort();
}
