// Matrix products.
import { attrInt, describeNode } from '../graph.js';
import { ShapeInferenceError, broadcastDims, type ShapeRule } from './rule.js';

export const MatMul: ShapeRule = ({ node, input }) => {
  const a = input(0).dims;
  const b = input(1).dims;
  const a2 = a.length === 1 ? [1, a[0]] : a;
  const b2 = b.length === 1 ? [b[0], 1] : b;
  if (a2[a2.length - 1] !== b2[b2.length - 2]) {
    throw new ShapeInferenceError(`${describeNode(node)}: MatMul of [${a.join(', ')}] and [${b.join(', ')}]: inner dims differ`);
  }
  const batch = broadcastDims(a2.slice(0, -2), b2.slice(0, -2));
  const dims = [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2]]), ...(b.length === 1 ? [] : [b2[b2.length - 1]])];
  return [{ elemType: input(0).elemType, dims }];
};

export const Gemm: ShapeRule = ({ node, input }) => {
  const a = input(0).dims;
  const b = input(1).dims;
  const m = attrInt(node, 'transA', 0) ? a[1] : a[0];
  const n = attrInt(node, 'transB', 0) ? b[0] : b[1];
  return [{ elemType: input(0).elemType, dims: [m, n] }];
};

export const Einsum: ShapeRule = ({ node }) => {
  throw new ShapeInferenceError(`${describeNode(node)}: Einsum is not supported yet`);
};
