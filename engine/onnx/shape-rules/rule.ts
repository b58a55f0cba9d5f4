// What a shape rule sees: the node, the inferred inputs, and helpers that fail with the node named. A rule returns
// one TensorInfo per output; it folds its values on the host (fold) when every input is a known constant, so that
// torch's dynamic-shape plumbing (Shape → Gather → Concat → Reshape) becomes static.
import type { NodeProto } from 'onnx-buf';
import { GraphError, describeNode } from '../graph.js';
import { hostTensor, numel, toNumbers, DataType, type HostTensor, type DataTypeCode } from '../tensor.js';

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

/** The values of input i, as numbers; only callable inside fold's compute, where every present input has one. */
export type InputValues = (i: number) => number[];

export interface ShapeContext {
  readonly node: NodeProto;
  /** Inferred inputs, undefined where an optional input is empty. */
  readonly ins: readonly (TensorInfo | undefined)[];
  /** Input i, which must be present. */
  input(i: number): TensorInfo;
  /** Whether optional input i is given. */
  has(i: number): boolean;
  /** The folded value of input i (a shape, axes…), which must be a constant. */
  constValues(i: number, what: string): number[];
  /** Attaches the host value computed by `compute` when the output is small and every input is a constant. */
  fold(out: TensorInfo, compute: (values: InputValues) => ArrayLike<number> | undefined): TensorInfo;
}

/** Output infos of one node. */
export type ShapeRule = (ctx: ShapeContext) => TensorInfo[];

export function makeShapeContext(node: NodeProto, ins: readonly (TensorInfo | undefined)[], limit: number): ShapeContext {
  const input = (i: number): TensorInfo => {
    const t = ins[i];
    if (!t) throw new ShapeInferenceError(`${describeNode(node)}: input ${i} is missing`);
    return t;
  };
  const values: InputValues = (i) => {
    const v = ins[i]?.value;
    if (!v) throw new ShapeInferenceError(`${describeNode(node)}: internal: input ${i} has no folded value`);
    return toNumbers(v);
  };
  return {
    node, ins, input,
    has: (i) => !!node.input[i],
    constValues: (i, what) => {
      const t = input(i);
      if (!t.value) throw new ShapeInferenceError(`${describeNode(node)}: ${what} (input ${i}, '${node.input[i]}') is not a constant after folding; fix the input dims first`);
      return toNumbers(t.value);
    },
    fold: (out, compute) => {
      if (numel(out.dims) <= limit && ins.every((t, i) => !node.input[i] || t?.value)) {
        const vals = compute(values);
        if (vals) out.value = hostTensor(foldableType(out.elemType), out.dims, vals);
      }
      return out;
    },
  };
}

function foldableType(t: DataTypeCode): DataTypeCode {
  // Fold 16-bit floats and small ints through float32/int32 hosts; they only ever feed shape plumbing.
  if (t === DataType.FLOAT16 || t === DataType.BFLOAT16) return DataType.FLOAT;
  if (t === DataType.INT16 || t === DataType.UINT16 || t === DataType.UINT32) return DataType.INT32;
  if (t === DataType.UINT64) return DataType.INT64;
  return t;
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

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}
