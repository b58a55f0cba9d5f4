// Reductions over axes (ReduceX keep or drop them; ArgMax/ArgMin reduce one axis to an index).
import type { NodeProto } from 'onnx-buf';
import { attrInt, attrInts } from '../graph.js';
import { DataType } from '../tensor.js';
import { normAxis, type ShapeContext, type ShapeRule, type TensorInfo } from './rule.js';
import { argmaxValues } from './values.js';

function reducedDims(node: NodeProto, dims: readonly number[], axes: number[] | undefined): { dims: number[]; axes: Set<number> } {
  const keep = attrInt(node, 'keepdims', 1) === 1;
  const rank = dims.length;
  const noopEmpty = attrInt(node, 'noop_with_empty_axes', 0) === 1;
  const set = new Set((axes && axes.length > 0 ? axes : noopEmpty ? [] : dims.map((_, i) => i)).map((ax) => normAxis(ax, rank)));
  return { dims: keep ? dims.map((d, i) => (set.has(i) ? 1 : d)) : dims.filter((_, i) => !set.has(i)), axes: set };
}

export const Reduce: ShapeRule = ({ node, input, has, constValues }) => {
  const a = input(0);
  const axes = attrInts(node, 'axes') ?? (has(1) ? constValues(1, 'axes') : undefined);
  return [{ elemType: a.elemType, dims: reducedDims(node, a.dims, axes).dims }];
};

function argReduce(ctx: ShapeContext, foldable: boolean): TensorInfo[] {
  const { node, input, fold } = ctx;
  const a = input(0);
  const { dims, axes } = reducedDims(node, a.dims, [attrInt(node, 'axis', 0)]);
  const out: TensorInfo = { elemType: DataType.INT64, dims };
  if (foldable && a.value && axes.size === 1) {
    return [fold(out, (v) => argmaxValues(v(0), a.dims, [...axes][0], attrInt(node, 'select_last_index', 0) === 1))];
  }
  return [out];
}

export const ArgMax: ShapeRule = (ctx) => argReduce(ctx, true);
export const ArgMin: ShapeRule = (ctx) => argReduce(ctx, false);
