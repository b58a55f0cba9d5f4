// Constants and shape plumbing: these produce the small integer tensors that later rules read as targets.
import { attr, attrInt, attrTensor, describeNode } from '../graph.js';
import { DataType, hostTensor, numel, toNumbers } from '../tensor.js';
import { ShapeInferenceError, normAxis, type ShapeRule } from './rule.js';
import { castValues } from './values.js';

export const Constant: ShapeRule = ({ node }) => {
  const t = attrTensor(node, 'value');
  if (t) return [{ elemType: t.dataType, dims: t.dims, value: t }];
  const a = attr(node, 'value_float') ?? attr(node, 'value_int') ?? attr(node, 'value_floats') ?? attr(node, 'value_ints');
  if (!a) throw new ShapeInferenceError(`${describeNode(node)}: unsupported Constant attribute`);
  if (a.name === 'value_float') return [{ elemType: DataType.FLOAT, dims: [], value: hostTensor(DataType.FLOAT, [], [a.f]) }];
  if (a.name === 'value_int') return [{ elemType: DataType.INT64, dims: [], value: hostTensor(DataType.INT64, [], [Number(a.i)]) }];
  if (a.name === 'value_floats') return [{ elemType: DataType.FLOAT, dims: [a.floats.length], value: hostTensor(DataType.FLOAT, [a.floats.length], a.floats) }];
  return [{ elemType: DataType.INT64, dims: [a.ints.length], value: hostTensor(DataType.INT64, [a.ints.length], a.ints.map(Number)) }];
};

export const Shape: ShapeRule = ({ node, input }) => {
  const d = input(0).dims;
  const start = normAxis(attrInt(node, 'start', 0), d.length);
  const endAttr = attrInt(node, 'end');
  const end = endAttr === undefined ? d.length : normAxis(endAttr, d.length);
  const vals = d.slice(Math.max(0, start), Math.min(d.length, end));
  return [{ elemType: DataType.INT64, dims: [vals.length], value: hostTensor(DataType.INT64, [vals.length], vals) }];
};

export const Size: ShapeRule = ({ input }) => {
  const n = numel(input(0).dims);
  return [{ elemType: DataType.INT64, dims: [], value: hostTensor(DataType.INT64, [], [n]) }];
};

export const ConstantOfShape: ShapeRule = ({ node, constValues, fold }) => {
  const dims = constValues(0, 'shape');
  const t = attrTensor(node, 'value');
  const elemType = t?.dataType ?? DataType.FLOAT;
  const fill = t ? toNumbers(t)[0] : 0;
  return [fold({ elemType, dims }, () => new Array(numel(dims)).fill(fill))];
};

export const Range: ShapeRule = ({ input, constValues, fold }) => {
  const [s, l, d] = [0, 1, 2].map((i) => constValues(i, 'range bound')[0]);
  const count = Math.max(Math.ceil((l - s) / d), 0);
  const elemType = input(0).elemType;
  return [fold({ elemType, dims: [count] }, () => Array.from({ length: count }, (_, i) => s + i * d))];
};

export const Cast: ShapeRule = ({ node, input, fold }) => {
  const to = attrInt(node, 'to', DataType.FLOAT);
  const a = input(0);
  return [fold({ elemType: to, dims: [...a.dims] }, (v) => castValues(v(0), to))];
};

export const CastLike: ShapeRule = ({ input, fold }) => {
  const a = input(0);
  const to = input(1).elemType;
  return [fold({ elemType: to, dims: [...a.dims] }, (v) => castValues(v(0), to))];
};
