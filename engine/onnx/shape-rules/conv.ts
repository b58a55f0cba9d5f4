// Sliding-window ops (convolutions, pools) and resampling.
import { attr, attrInt, attrInts, describeNode } from '../graph.js';
import { ShapeInferenceError, type ShapeContext, type ShapeRule, type TensorInfo } from './rule.js';

/** Conv, ConvTranspose, MaxPool, AveragePool: the output spatial size from kernel, strides, dilations and pads. */
function windowed(ctx: ShapeContext, kind: 'conv' | 'transpose' | 'pool'): TensorInfo[] {
  const { node, input } = ctx;
  const a = input(0);
  const w = kind === 'pool' ? undefined : input(1).dims;
  const spatial = a.dims.length - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? (w ? w.slice(2) : undefined);
  if (!kernel) throw new ShapeInferenceError(`${describeNode(node)}: kernel_shape unknown`);
  const strides = attrInts(node, 'strides') ?? new Array(spatial).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array(spatial).fill(1);
  let pads = attrInts(node, 'pads') ?? new Array(spatial * 2).fill(0);
  const autoPad = attr(node, 'auto_pad') ? new TextDecoder().decode(attr(node, 'auto_pad')?.s) : 'NOTSET';
  const group = attrInt(node, 'group', 1);
  const outSpatial: number[] = [];
  for (let i = 0; i < spatial; i++) {
    const inSize = a.dims[2 + i];
    const k = (kernel[i] - 1) * dil[i] + 1;
    if (kind === 'transpose') {
      const outPad = attrInts(node, 'output_padding')?.[i] ?? 0;
      outSpatial.push(strides[i] * (inSize - 1) + outPad + k - pads[i] - pads[i + spatial]);
      continue;
    }
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      outSpatial.push(Math.ceil(inSize / strides[i]));
      continue;
    }
    if (autoPad === 'VALID') pads = new Array(spatial * 2).fill(0);
    const ceil = attrInt(node, 'ceil_mode', 0) === 1;
    const v = (inSize + pads[i] + pads[i + spatial] - k) / strides[i] + 1;
    outSpatial.push(ceil ? Math.ceil(v) : Math.floor(v));
  }
  const channels = w === undefined ? a.dims[1] : kind === 'transpose' ? w[1] * group : w[0];
  return [{ elemType: a.elemType, dims: [a.dims[0], channels, ...outSpatial] }];
}

export const Conv: ShapeRule = (ctx) => windowed(ctx, 'conv');
export const ConvTranspose: ShapeRule = (ctx) => windowed(ctx, 'transpose');
export const Pool: ShapeRule = (ctx) => windowed(ctx, 'pool');

export const GlobalPool: ShapeRule = ({ input }) => {
  const a = input(0);
  return [{ elemType: a.elemType, dims: [a.dims[0], a.dims[1], ...a.dims.slice(2).map(() => 1)] }];
};

export const Resize: ShapeRule = ({ input, has, constValues }) => {
  const a = input(0);
  if (has(3)) return [{ elemType: a.elemType, dims: constValues(3, 'sizes') }];
  const scales = constValues(2, 'scales');
  return [{ elemType: a.elemType, dims: a.dims.map((d, i) => Math.floor(d * scales[i])) }];
};

export const Upsample: ShapeRule = ({ node, input, constValues }) => {
  const a = input(0);
  const scales = attrInts(node, 'scales') ?? constValues(1, 'scales');
  return [{ elemType: a.elemType, dims: a.dims.map((d, i) => Math.floor(d * scales[i])) }];
};
