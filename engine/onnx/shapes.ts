// Static shape inference with constant propagation. Once the graph inputs have fixed dims, every tensor of the
// graphs Heed meets gets a static shape; the small integer tensors of torch's dynamic-shape plumbing
// (Shape → Gather → Unsqueeze → Concat → Reshape) are evaluated on the host so that Reshape/Expand/Slice targets
// become known. We do this ourselves rather than exposing every tensor to ORT because (a) the VJP builder needs the
// *values* of those shape tensors, not only shapes, and (b) exposing all activations of a 64×64 UNet costs gigabytes.
import type { NodeProto } from 'onnx-buf';
import { Graph, GraphError, attr, attrInt, attrInts, attrTensor, describeNode, valueInfoType } from './graph.js';
import { DataType, numel, hostTensor, toNumbers, tensorFromProto, isExternal, type HostTensor, type DataTypeCode } from './tensor.js';

export interface TensorInfo {
  elemType: DataTypeCode;
  dims: number[];
  /** Host value, when the tensor is a constant small enough to fold. */
  value?: HostTensor;
}

export class ShapeInferenceError extends GraphError {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeInferenceError';
  }
}

const FOLD_LIMIT = 4096;

export interface InferOptions {
  /** Fixed dims for graph inputs; symbolic input dims must all be given here. */
  inputDims?: Record<string, number[]>;
  /** Element count up to which constant tensors are folded (default 4096). */
  foldLimit?: number;
}

export function inferShapes(graph: Graph, options: InferOptions = {}): Map<string, TensorInfo> {
  const limit = options.foldLimit ?? FOLD_LIMIT;
  const infos = new Map<string, TensorInfo>();
  for (const t of graph.proto.initializer) {
    const dims = t.dims.map(Number);
    const info: TensorInfo = { elemType: t.dataType, dims };
    if (numel(dims) <= limit && !isExternal(t)) info.value = tensorFromProto(t, graph.model.baseDir);
    infos.set(t.name, info);
  }
  for (const v of graph.realInputs()) {
    const vt = valueInfoType(v);
    if (!vt) throw new ShapeInferenceError(`graph input '${v.name}' has no tensor type`);
    const given = options.inputDims?.[v.name];
    let dims: number[];
    if (given) {
      if (vt.dims && vt.dims.length !== given.length) {
        throw new ShapeInferenceError(`input '${v.name}' has rank ${vt.dims.length} (dims [${vt.dims.join(', ')}]) but dims [${given.join(', ')}] were given`);
      }
      vt.dims?.forEach((d, i) => {
        if (typeof d === 'number' && d !== given[i]) {
          throw new ShapeInferenceError(`input '${v.name}' dim ${i} is fixed to ${d} by the model but ${given[i]} was given`);
        }
      });
      dims = given;
    } else {
      if (!vt.dims || vt.dims.some((d) => typeof d !== 'number')) {
        throw new ShapeInferenceError(`input '${v.name}' has symbolic dims [${vt.dims?.join(', ')}]: pass inputDims['${v.name}']`);
      }
      dims = vt.dims as number[];
    }
    infos.set(v.name, { elemType: vt.elemType, dims });
  }
  for (const node of graph.topologicalOrder()) {
    const ins = node.input.map((name) => {
      if (!name) return undefined;
      const info = infos.get(name);
      if (!info) throw new ShapeInferenceError(`${describeNode(node)}: input '${name}' is unknown (no producer, initializer or graph input)`);
      return info;
    });
    let outs: TensorInfo[];
    try {
      outs = inferNode(node, ins, limit);
    } catch (e) {
      if (e instanceof ShapeInferenceError) throw e;
      throw new ShapeInferenceError(`${describeNode(node)}: ${(e as Error).message}`);
    }
    node.output.forEach((name, i) => {
      if (name && outs[i]) infos.set(name, outs[i]);
    });
  }
  return infos;
}

type In = (TensorInfo | undefined)[];

function need(ins: In, i: number, node: NodeProto): TensorInfo {
  const t = ins[i];
  if (!t) throw new ShapeInferenceError(`${describeNode(node)}: input ${i} is missing`);
  return t;
}
function constValues(ins: In, i: number, node: NodeProto, what: string): number[] {
  const t = need(ins, i, node);
  if (!t.value) throw new ShapeInferenceError(`${describeNode(node)}: ${what} (input ${i}, '${node.input[i]}') is not a constant after folding; fix the input dims first`);
  return toNumbers(t.value);
}

export function broadcastDims(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new ShapeInferenceError(`cannot broadcast [${a.join(', ')}] with [${b.join(', ')}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

const UNARY = new Set(['Relu', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Erf', 'Sin', 'Cos', 'Reciprocal',
  'Identity', 'Softmax', 'LogSoftmax', 'Floor', 'Ceil', 'Round', 'Sign', 'Softplus', 'LeakyRelu', 'Elu', 'Gelu',
  'HardSigmoid', 'Clip', 'Dropout', 'Not', 'IsNaN', 'CumSum', 'Trilu', 'InstanceNormalization',
  'LayerNormalization', 'GroupNormalization', 'BatchNormalization', 'Celu', 'Selu', 'Mish', 'HardSwish', 'Tan', 'Atan']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual',
  'And', 'Or', 'Xor', 'Max', 'Min', 'Mod', 'Sum', 'Mean', 'Where', 'PRelu', 'BitShift']);
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN']);

function inferNode(node: NodeProto, ins: In, limit: number): TensorInfo[] {
  const op = node.opType;
  if (node.domain !== '' && node.domain !== 'ai.onnx') {
    throw new ShapeInferenceError(`${describeNode(node)}: operator domain '${node.domain}' is not supported by Heed's shape inference ` +
      '(fused com.microsoft ops hide intermediate tensors; use an unfused export)');
  }
  const x = ins[0];
  const fold = (out: TensorInfo, compute: () => ArrayLike<number> | undefined): TensorInfo => {
    if (numel(out.dims) <= limit && ins.every((t, i) => !node.input[i] || t?.value)) {
      const vals = compute();
      if (vals) out.value = hostTensor(foldableType(out.elemType), out.dims, vals);
    }
    return out;
  };
  switch (op) {
    case 'Constant': {
      const t = attrTensor(node, 'value');
      if (t) return [{ elemType: t.dataType, dims: t.dims, value: t }];
      const a = attr(node, 'value_float') ?? attr(node, 'value_int') ?? attr(node, 'value_floats') ?? attr(node, 'value_ints');
      if (!a) throw new ShapeInferenceError(`${describeNode(node)}: unsupported Constant attribute`);
      if (a.name === 'value_float') return [{ elemType: DataType.FLOAT, dims: [], value: hostTensor(DataType.FLOAT, [], [a.f]) }];
      if (a.name === 'value_int') return [{ elemType: DataType.INT64, dims: [], value: hostTensor(DataType.INT64, [], [Number(a.i)]) }];
      if (a.name === 'value_floats') return [{ elemType: DataType.FLOAT, dims: [a.floats.length], value: hostTensor(DataType.FLOAT, [a.floats.length], a.floats) }];
      return [{ elemType: DataType.INT64, dims: [a.ints.length], value: hostTensor(DataType.INT64, [a.ints.length], a.ints.map(Number)) }];
    }
    case 'Shape': {
      const d = need(ins, 0, node).dims;
      const start = normAxis(attrInt(node, 'start', 0), d.length);
      const endAttr = attrInt(node, 'end');
      const end = endAttr === undefined ? d.length : normAxis(endAttr, d.length);
      const vals = d.slice(Math.max(0, start), Math.min(d.length, end));
      return [{ elemType: DataType.INT64, dims: [vals.length], value: hostTensor(DataType.INT64, [vals.length], vals) }];
    }
    case 'Size': {
      const n = numel(need(ins, 0, node).dims);
      return [{ elemType: DataType.INT64, dims: [], value: hostTensor(DataType.INT64, [], [n]) }];
    }
    case 'ConstantOfShape': {
      const dims = constValues(ins, 0, node, 'shape');
      const t = attrTensor(node, 'value');
      const elemType = t?.dataType ?? DataType.FLOAT;
      const fill = t ? Number(t.data[0]) : 0;
      return [fold({ elemType, dims }, () => new Array(numel(dims)).fill(fill))];
    }
    case 'Cast': {
      const to = attrInt(node, 'to', DataType.FLOAT);
      const a = need(ins, 0, node);
      return [fold({ elemType: to, dims: [...a.dims] }, () => castValues(toNumbers(a.value as HostTensor), to))];
    }
    case 'CastLike': {
      const a = need(ins, 0, node);
      const to = need(ins, 1, node).elemType;
      return [fold({ elemType: to, dims: [...a.dims] }, () => castValues(toNumbers(a.value as HostTensor), to))];
    }
    case 'Reshape': {
      const a = need(ins, 0, node);
      const target = constValues(ins, 1, node, 'target shape');
      const allowZero = attrInt(node, 'allowzero', 0) === 1;
      const dims = target.map((d, i) => (d === 0 && !allowZero ? a.dims[i] : d));
      const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
      const total = numel(a.dims);
      const minus = dims.indexOf(-1);
      if (minus >= 0) dims[minus] = known === 0 ? 0 : total / known;
      if (numel(dims) !== total || !dims.every(Number.isInteger)) {
        throw new ShapeInferenceError(`${describeNode(node)}: cannot reshape [${a.dims.join(', ')}] to [${target.join(', ')}]`);
      }
      return [fold({ elemType: a.elemType, dims }, () => toNumbers(a.value as HostTensor))];
    }
    case 'Flatten': {
      const a = need(ins, 0, node);
      const axis = normAxis(attrInt(node, 'axis', 1), a.dims.length);
      const dims = [numel(a.dims.slice(0, axis)), numel(a.dims.slice(axis))];
      return [fold({ elemType: a.elemType, dims }, () => toNumbers(a.value as HostTensor))];
    }
    case 'Unsqueeze': {
      const a = need(ins, 0, node);
      const axesRaw = attrInts(node, 'axes') ?? constValues(ins, 1, node, 'axes');
      const rank = a.dims.length + axesRaw.length;
      const axes = axesRaw.map((ax) => normAxis(ax, rank)).sort((p, q) => p - q);
      const dims = [...a.dims];
      for (const ax of axes) dims.splice(ax, 0, 1);
      return [fold({ elemType: a.elemType, dims }, () => toNumbers(a.value as HostTensor))];
    }
    case 'Squeeze': {
      const a = need(ins, 0, node);
      const axesRaw = attrInts(node, 'axes') ?? (node.input[1] ? constValues(ins, 1, node, 'axes') : undefined);
      const axes = axesRaw ? axesRaw.map((ax) => normAxis(ax, a.dims.length)) : a.dims.flatMap((d, i) => (d === 1 ? [i] : []));
      const dims = a.dims.filter((_, i) => !axes.includes(i));
      return [fold({ elemType: a.elemType, dims }, () => toNumbers(a.value as HostTensor))];
    }
    case 'Transpose': {
      const a = need(ins, 0, node);
      const perm = attrInts(node, 'perm') ?? a.dims.map((_, i) => a.dims.length - 1 - i);
      const dims = perm.map((p) => a.dims[p]);
      return [fold({ elemType: a.elemType, dims }, () => transposeValues(toNumbers(a.value as HostTensor), a.dims, perm))];
    }
    case 'Concat': {
      const parts = node.input.map((_, i) => need(ins, i, node));
      const rank = parts[0].dims.length;
      const axis = normAxis(attrInt(node, 'axis', 0), rank);
      const dims = [...parts[0].dims];
      dims[axis] = parts.reduce((s, p) => s + p.dims[axis], 0);
      return [fold({ elemType: parts[0].elemType, dims }, () => concatValues(parts, axis))];
    }
    case 'Gather': {
      const a = need(ins, 0, node);
      const idx = need(ins, 1, node);
      const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
      const dims = [...a.dims.slice(0, axis), ...idx.dims, ...a.dims.slice(axis + 1)];
      return [fold({ elemType: a.elemType, dims }, () => gatherValues(toNumbers(a.value as HostTensor), a.dims, toNumbers(idx.value as HostTensor), axis))];
    }
    case 'Slice': {
      const a = need(ins, 0, node);
      const starts = attrInts(node, 'starts') ?? constValues(ins, 1, node, 'starts');
      const ends = attrInts(node, 'ends') ?? constValues(ins, 2, node, 'ends');
      const axes = attrInts(node, 'axes') ?? (node.input[3] ? constValues(ins, 3, node, 'axes') : starts.map((_, i) => i));
      const steps = node.input[4] ? constValues(ins, 4, node, 'steps') : starts.map(() => 1);
      const spec = sliceSpec(a.dims, starts, ends, axes, steps);
      return [fold({ elemType: a.elemType, dims: spec.map((s) => s.count) }, () => sliceValues(toNumbers(a.value as HostTensor), a.dims, spec))];
    }
    case 'Split': {
      const a = need(ins, 0, node);
      const axis = normAxis(attrInt(node, 'axis', 0), a.dims.length);
      let sizes = attrInts(node, 'split') ?? (node.input[1] ? constValues(ins, 1, node, 'split') : undefined);
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
    }
    case 'Expand': {
      const a = need(ins, 0, node);
      const shape = constValues(ins, 1, node, 'shape');
      const dims = broadcastDims(a.dims, shape);
      return [fold({ elemType: a.elemType, dims }, () => broadcastTo(toNumbers(a.value as HostTensor), a.dims, dims))];
    }
    case 'Tile': {
      const a = need(ins, 0, node);
      const reps = constValues(ins, 1, node, 'repeats');
      return [{ elemType: a.elemType, dims: a.dims.map((d, i) => d * reps[i]) }];
    }
    case 'Range': {
      const [s, l, d] = [0, 1, 2].map((i) => constValues(ins, i, node, 'range bound')[0]);
      const count = Math.max(Math.ceil((l - s) / d), 0);
      const elemType = need(ins, 0, node).elemType;
      return [fold({ elemType, dims: [count] }, () => Array.from({ length: count }, (_, i) => s + i * d))];
    }
    case 'MatMul': {
      const a = need(ins, 0, node).dims;
      const b = need(ins, 1, node).dims;
      const a2 = a.length === 1 ? [1, a[0]] : a;
      const b2 = b.length === 1 ? [b[0], 1] : b;
      if (a2[a2.length - 1] !== b2[b2.length - 2]) {
        throw new ShapeInferenceError(`${describeNode(node)}: MatMul of [${a.join(', ')}] and [${b.join(', ')}]: inner dims differ`);
      }
      const batch = broadcastDims(a2.slice(0, -2), b2.slice(0, -2));
      const dims = [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2]]), ...(b.length === 1 ? [] : [b2[b2.length - 1]])];
      return [{ elemType: need(ins, 0, node).elemType, dims }];
    }
    case 'Gemm': {
      const a = need(ins, 0, node).dims;
      const b = need(ins, 1, node).dims;
      const m = attrInt(node, 'transA', 0) ? a[1] : a[0];
      const n = attrInt(node, 'transB', 0) ? b[0] : b[1];
      return [{ elemType: need(ins, 0, node).elemType, dims: [m, n] }];
    }
    case 'Conv': case 'ConvTranspose': case 'MaxPool': case 'AveragePool': {
      const a = need(ins, 0, node);
      const w = op.endsWith('Pool') ? undefined : need(ins, 1, node).dims;
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
        if (op === 'ConvTranspose') {
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
      const channels = op.endsWith('Pool') ? a.dims[1] : op === 'ConvTranspose' ? (w as number[])[1] * group : (w as number[])[0];
      return [{ elemType: a.elemType, dims: [a.dims[0], channels, ...outSpatial] }];
    }
    case 'GlobalAveragePool': case 'GlobalMaxPool': {
      const a = need(ins, 0, node);
      return [{ elemType: a.elemType, dims: [a.dims[0], a.dims[1], ...a.dims.slice(2).map(() => 1)] }];
    }
    case 'ReduceMean': case 'ReduceSum': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd': case 'ReduceL2':
    case 'ReduceSumSquare': case 'ReduceLogSumExp': case 'ArgMax': case 'ArgMin': {
      const a = need(ins, 0, node);
      const keep = attrInt(node, 'keepdims', 1) === 1;
      let axes: number[] | undefined;
      if (op.startsWith('Arg')) axes = [attrInt(node, 'axis', 0)];
      else axes = attrInts(node, 'axes') ?? (node.input[1] ? constValues(ins, 1, node, 'axes') : undefined);
      const rank = a.dims.length;
      const noopEmpty = attrInt(node, 'noop_with_empty_axes', 0) === 1;
      const set = new Set((axes && axes.length > 0 ? axes : noopEmpty ? [] : a.dims.map((_, i) => i)).map((ax) => normAxis(ax, rank)));
      const dims = keep ? a.dims.map((d, i) => (set.has(i) ? 1 : d)) : a.dims.filter((_, i) => !set.has(i));
      const elemType = op.startsWith('Arg') ? DataType.INT64 : a.elemType;
      if (op === 'ArgMax' && a.value && set.size === 1) {
        return [fold({ elemType, dims }, () => argmaxValues(toNumbers(a.value as HostTensor), a.dims, [...set][0], attrInt(node, 'select_last_index', 0) === 1))];
      }
      return [{ elemType, dims }];
    }
    case 'Resize': case 'Upsample': {
      const a = need(ins, 0, node);
      const sizesIdx = op === 'Resize' ? 3 : -1;
      if (sizesIdx > 0 && node.input[3]) {
        return [{ elemType: a.elemType, dims: constValues(ins, 3, node, 'sizes') }];
      }
      const scales = op === 'Resize' ? constValues(ins, 2, node, 'scales') : (attrInts(node, 'scales') ?? constValues(ins, 1, node, 'scales'));
      return [{ elemType: a.elemType, dims: a.dims.map((d, i) => Math.floor(d * scales[i])) }];
    }
    case 'Pad': {
      const a = need(ins, 0, node);
      const pads = attrInts(node, 'pads') ?? constValues(ins, 1, node, 'pads');
      const r = a.dims.length;
      return [{ elemType: a.elemType, dims: a.dims.map((d, i) => d + pads[i] + pads[i + r]) }];
    }
    case 'Einsum':
      throw new ShapeInferenceError(`${describeNode(node)}: Einsum is not supported yet`);
    default:
      break;
  }
  if (UNARY.has(op)) {
    const a = need(ins, 0, node);
    const out: TensorInfo = { elemType: BOOL_OUT.has(op) ? DataType.BOOL : a.elemType, dims: [...a.dims] };
    const f = UNARY_FOLD[op];
    if (f) return [fold(out, () => toNumbers(a.value as HostTensor).map(f))];
    return [out];
  }
  if (BINARY.has(op)) {
    const parts = node.input.map((_, i) => need(ins, i, node));
    const dims = parts.map((p) => p.dims).reduce((p, q) => broadcastDims(p, q));
    const elemType = BOOL_OUT.has(op) ? DataType.BOOL : op === 'Where' ? parts[1].elemType : parts[0].elemType;
    const f = BINARY_FOLD[op];
    const out: TensorInfo = { elemType, dims };
    if (op === 'Where') {
      return [fold(out, () => {
        const [c, p, q] = parts.map((t) => broadcastTo(toNumbers(t.value as HostTensor), t.dims, dims));
        return c.map((v, i) => (v ? p[i] : q[i]));
      })];
    }
    if (f && parts.length === 2) {
      const isInt = !(elemType === DataType.FLOAT || elemType === DataType.DOUBLE || elemType === DataType.FLOAT16);
      return [fold(out, () => {
        const [p, q] = parts.map((t) => broadcastTo(toNumbers(t.value as HostTensor), t.dims, dims));
        return p.map((v, i) => {
          const r = f(v, q[i]);
          return op === 'Div' && isInt ? Math.trunc(r) : r;
        });
      })];
    }
    return [out];
  }
  throw new ShapeInferenceError(`${describeNode(node)}: operator '${op}' is not supported by Heed's shape inference. ` +
    'Report the model and the op; exports of SD, ViT and CLIP need only standard ai.onnx ops.');
}

const UNARY_FOLD: Record<string, (v: number) => number> = {
  Identity: (v) => v, Neg: (v) => -v, Abs: Math.abs, Sqrt: Math.sqrt, Floor: Math.floor, Ceil: Math.ceil,
  Exp: Math.exp, Log: Math.log, Sin: Math.sin, Cos: Math.cos, Reciprocal: (v) => 1 / v, Not: (v) => (v ? 0 : 1),
  Relu: (v) => Math.max(0, v), Sign: Math.sign, Round: (v) => Math.round(v),
};
const BINARY_FOLD: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b, Sub: (a, b) => a - b, Mul: (a, b) => a * b, Div: (a, b) => a / b, Pow: (a, b) => a ** b,
  Equal: (a, b) => (a === b ? 1 : 0), Less: (a, b) => (a < b ? 1 : 0), Greater: (a, b) => (a > b ? 1 : 0),
  LessOrEqual: (a, b) => (a <= b ? 1 : 0), GreaterOrEqual: (a, b) => (a >= b ? 1 : 0), Max: Math.max, Min: Math.min,
  And: (a, b) => (a && b ? 1 : 0), Or: (a, b) => (a || b ? 1 : 0), Mod: (a, b) => a % b,
};

function foldableType(t: DataTypeCode): DataTypeCode {
  // Fold 16-bit floats and small ints through float32/int32 hosts; they only ever feed shape plumbing.
  if (t === DataType.FLOAT16 || t === DataType.BFLOAT16) return DataType.FLOAT;
  if (t === DataType.INT16 || t === DataType.UINT16 || t === DataType.UINT32) return DataType.INT32;
  if (t === DataType.UINT64) return DataType.INT64;
  return t;
}

function castValues(v: number[], to: DataTypeCode): number[] {
  if (to === DataType.FLOAT || to === DataType.DOUBLE || to === DataType.FLOAT16) return v;
  if (to === DataType.BOOL) return v.map((x) => (x ? 1 : 0));
  return v.map((x) => Math.trunc(x));
}

export function strides(dims: readonly number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

function transposeValues(v: number[], dims: number[], perm: number[]): number[] {
  const outDims = perm.map((p) => dims[p]);
  const inStr = strides(dims);
  const out = new Array(v.length);
  const idx = new Array(dims.length).fill(0);
  for (let o = 0; o < v.length; o++) {
    let src = 0;
    for (let k = 0; k < perm.length; k++) src += idx[k] * inStr[perm[k]];
    out[o] = v[src];
    for (let k = outDims.length - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

function concatValues(parts: TensorInfo[], axis: number): number[] {
  const outer = numel(parts[0].dims.slice(0, axis));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const inner = numel(p.dims.slice(axis));
      const vals = toNumbers(p.value as HostTensor);
      for (let i = 0; i < inner; i++) out.push(vals[o * inner + i]);
    }
  }
  return out;
}

function gatherValues(v: number[], dims: number[], idx: number[], axis: number): number[] {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const n = dims[axis];
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const raw of idx) {
      const i = raw < 0 ? raw + n : raw;
      if (i < 0 || i >= n) throw new ShapeInferenceError(`Gather index ${raw} out of range for axis of size ${n}`);
      for (let k = 0; k < inner; k++) out.push(v[(o * n + i) * inner + k]);
    }
  }
  return out;
}

export interface SliceAxisSpec { start: number; step: number; count: number }

export function sliceSpec(dims: readonly number[], starts: number[], ends: number[], axes: number[], steps: number[]): SliceAxisSpec[] {
  const spec = dims.map((d) => ({ start: 0, step: 1, count: d }));
  axes.forEach((axRaw, k) => {
    const ax = normAxis(axRaw, dims.length);
    const d = dims[ax];
    const step = steps[k] ?? 1;
    let s = starts[k];
    let e = ends[k];
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    const count = Math.max(0, Math.ceil((e - s) / step));
    spec[ax] = { start: s, step, count };
  });
  return spec;
}

function sliceValues(v: number[], dims: number[], spec: SliceAxisSpec[]): number[] {
  const str = strides(dims);
  const outDims = spec.map((s) => s.count);
  const total = numel(outDims);
  const out: number[] = new Array(total);
  const idx = new Array(dims.length).fill(0);
  for (let o = 0; o < total; o++) {
    let src = 0;
    for (let k = 0; k < dims.length; k++) src += (spec[k].start + idx[k] * spec[k].step) * str[k];
    out[o] = v[src];
    for (let k = outDims.length - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function broadcastTo(v: number[], dims: readonly number[], outDims: readonly number[]): number[] {
  const r = outDims.length;
  const padded = [...new Array(r - dims.length).fill(1), ...dims];
  const inStr = strides(padded);
  const total = numel(outDims);
  const out: number[] = new Array(total);
  const idx = new Array(r).fill(0);
  for (let o = 0; o < total; o++) {
    let src = 0;
    for (let k = 0; k < r; k++) if (padded[k] !== 1) src += idx[k] * inStr[k];
    out[o] = v[src];
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

function argmaxValues(v: number[], dims: number[], axis: number, last: boolean): number[] {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const n = dims[axis];
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < inner; k++) {
      let best = 0;
      for (let i = 1; i < n; i++) {
        const a = v[(o * n + i) * inner + k];
        const b = v[(o * n + best) * inner + k];
        if (a > b || (last && a === b)) best = i;
      }
      out.push(best);
    }
  }
  return out;
}

