// The shape rule registry, keyed by ONNX op type (default domain), like the autodiff rules: one entry per op; an op
// missing here fails inference with its op type and node name.
import type { ShapeRule } from './rule.js';
import { Constant, Shape, Size, ConstantOfShape, Range, Cast, CastLike } from './constant.js';
import { Reshape, Flatten, Unsqueeze, Squeeze, Transpose, Concat, Gather, Slice, Split, Expand, Tile, Pad } from './layout.js';
import { MatMul, Gemm, Einsum } from './matmul.js';
import { Conv, ConvTranspose, Pool, GlobalPool, Resize, Upsample } from './conv.js';
import { Reduce, ArgMax, ArgMin } from './reduce.js';
import { unaryRules, naryRules, Where } from './elementwise.js';

const REDUCTIONS = ['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp'];

export const shapeRules: ReadonlyMap<string, ShapeRule> = new Map<string, ShapeRule>([
  ['Constant', Constant], ['Shape', Shape], ['Size', Size], ['ConstantOfShape', ConstantOfShape], ['Range', Range],
  ['Cast', Cast], ['CastLike', CastLike],
  ['Reshape', Reshape], ['Flatten', Flatten], ['Unsqueeze', Unsqueeze], ['Squeeze', Squeeze], ['Transpose', Transpose],
  ['Concat', Concat], ['Gather', Gather], ['Slice', Slice], ['Split', Split], ['Expand', Expand], ['Tile', Tile], ['Pad', Pad],
  ['MatMul', MatMul], ['Gemm', Gemm], ['Einsum', Einsum],
  ['Conv', Conv], ['ConvTranspose', ConvTranspose], ['MaxPool', Pool], ['AveragePool', Pool],
  ['GlobalAveragePool', GlobalPool], ['GlobalMaxPool', GlobalPool], ['Resize', Resize], ['Upsample', Upsample],
  ...REDUCTIONS.map((op): [string, ShapeRule] => [op, Reduce]), ['ArgMax', ArgMax], ['ArgMin', ArgMin],
  ...Object.entries(unaryRules), ...Object.entries(naryRules), ['Where', Where],
]);

/** Op types shape inference supports (for docs and coverage checks). */
export function shapeSupportedOps(): string[] {
  return [...shapeRules.keys()].sort();
}
