// Ops that move elements without computing on them: reshapes, transposes, concatenation, gathers, slices, pads.
import { attrInt, attrInts, describeNode } from '../graph.js';
import { numel } from '../tensor.js';
import { ShapeInferenceError, broadcastDims, normAxis, type ShapeRule } from './rule.js';
import { broadcastTo, concatValues, gatherValues, sliceSpec, sliceValues, transposeValues } from './values.js';

export const Reshape: ShapeRule = ({ node, input, constValues, fold }) => {
  const a = input(0);
  const target = constValues(1, 'target shape');
  const allowZero = attrInt(node, 'allowzero', 0) === 1;
  const dims = target.map((d, i) => (d === 0 && !allowZero ? a.dims[i] : d));
  const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  const total = numel(a.dims);
  const minus = dims.indexOf(-1);
  if (minus >= 0) dims[minus] = known === 0 ? 0 : total / known;
  if (numel(dims) !== total || !dims.every(Number.isInteger)) {
    throw new ShapeInferenceError(`${describeNode(node)}: cannot reshape [${a.dims.join(', ')}] to [${target.join(', ')}]`);
  }
  return [fold({ elemType: a.elemType, dims }, (v) => v(0))];
};

export const Flatten: ShapeRule = ({ node, input, fold }) => {
  const a = input(0);
  const axis = normAxis(attrInt(node, 'axis', 1), a.dims.length);
  const dims = [numel(a.dims.slice(0, axis)), numel(a.dims.slice(axis))];
  return [fold({ elemType: a.elemType, dims }, (v) => v(0))];
};

export const Unsqueeze: ShapeRule = ({ node, input, constValues, fold }) => {
  const a = input(0);
  const axesRaw = attrInts(node, 'axes') ?? constValues(1, 'axes');
  const rank = a.dims.length + axesRaw.length;
  const axes = axesRaw.map((ax) => normAxis(ax, rank)).sort((p, q) => p - q);
  const dims = [...a.dims];
  for (const ax of axes) dims.splice(ax, 0, 1);
  return [fold({ elemType: a.elemType, dims }, (v) => v(0))];
};

export const Squeeze: ShapeRule = ({ node, input, has, constValues, fold }) => {
  const a = input(0);
  const axesRaw = attrInts(node, 'axes') ?? (has(1) ? constValues(1, 'axes') : undefined);
  const axes = axesRaw ? axesRaw.map((ax) => normAxis(ax, a.dims.length)) : a.dims.flatMap((d, i) => (d === 1 ? [i] : []));
  const dims = a.dims.filter((_, i) => !axes.includes(i));
  return [fold({ elemType: a.elemType, dims }, (v) => v(0))];
};

export const Transpose: ShapeRule = ({ node, input, fold }) => {
  const a = input(0);
  const perm = attrInts(node, 'perm') ?? a.dims.map((_, i) => a.dims.length - 1 - i);
  const dims = perm.map((p) => a.dims[p]);
  return [fold({ elemType: a.elemType, dims }, (v) => transposeValues(v(0), a.dims, perm))];
};

export const Concat: ShapeRule = ({ node, input, fold }) => {
  const parts = node.input.map((_, i) => input(i));
  const rank = parts[0].dims.length;
  const axis = normAxis(attrInt(node, 'axis', 0), rank);
  const dims = [...parts[0].dims];
  dims[axis] = parts.reduce((s, p) => s + p.dims[axis], 0);
  return [fold({ elemType: parts[0].elemType, dims }, (v) => concatValues(parts.map((p, i) => ({ dims: p.dims, values: v(i) })), axis))];
};

export const Gather: ShapeRule = ({ node, input, fold }) => {
  const a = input(0);
  const idx = input(1);
  const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
  const dims = [...a.dims.slice(0, axis), ...idx.dims, ...a.dims.slice(axis + 1)];
  return [fold({ elemType: a.elemType, dims }, (v) => gatherValues(v(0), a.dims, v(1), axis))];
};

export const Slice: ShapeRule = ({ node, input, has, constValues, fold }) => {
  const a = input(0);
  const starts = attrInts(node, 'starts') ?? constValues(1, 'starts');
  const ends = attrInts(node, 'ends') ?? constValues(2, 'ends');
  const axes = attrInts(node, 'axes') ?? (has(3) ? constValues(3, 'axes') : starts.map((_, i) => i));
  const steps = has(4) ? constValues(4, 'steps') : starts.map(() => 1);
  const spec = sliceSpec(a.dims, starts, ends, axes, steps);
  return [fold({ elemType: a.elemType, dims: spec.map((s) => s.count) }, (v) => sliceValues(v(0), a.dims, spec))];
};

export const Split: ShapeRule = ({ node, input, has, constValues }) => {
  const a = input(0);
  const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
  let sizes = attrInts(node, 'split') ?? (has(1) ? constValues(1, 'split') : undefined);
  const n = node.output.length;
  if (!sizes) {
    const per = Math.ceil(a.dims[axis] / n);
    sizes = Array.from({ length: n }, (_, i) => Math.min(per, a.dims[axis] - per * i));
  }
  return sizes.map((s) => {
    const dims = [...a.dims];
    dims[axis] = s;
    return { elemType: a.elemType, dims };
  });
};

export const Expand: ShapeRule = ({ input, constValues, fold }) => {
  const a = input(0);
  const shape = constValues(1, 'shape');
  const dims = broadcastDims(a.dims, shape);
  return [fold({ elemType: a.elemType, dims }, (v) => broadcastTo(v(0), a.dims, dims))];
};

export const Tile: ShapeRule = ({ input, constValues }) => {
  const a = input(0);
  const reps = constValues(1, 'repeats');
  return [{ elemType: a.elemType, dims: a.dims.map((d, i) => d * reps[i]) }];
};

export const Pad: ShapeRule = ({ node, input, constValues }) => {
  const a = input(0);
  const pads = attrInts(node, 'pads') ?? constValues(1, 'pads');
  const r = a.dims.length;
  return [{ elemType: a.elemType, dims: a.dims.map((d, i) => d + pads[i] + pads[i + r]) }];
};
