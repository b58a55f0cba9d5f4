// The node emitter the backward rules write through. Every tensor it creates gets a static shape recorded next to
// the forward shapes, so rules compose (a helper can ask for the dims of what another helper produced) and the
// broadcast bookkeeping (reduce-to-shape) is done on the host, never with runtime Shape ops.
import type { NodeProto } from 'onnx-buf';
import { Graph, type AttrValue } from '../graph.js';
import { broadcastDims, type TensorInfo } from '../shapes.js';
import { DataType, hostTensor, numel, type DataTypeCode, type HostTensor } from '../tensor.js';
import { VjpError } from './errors.js';

export class Emitter {
  private counter = 0;
  private readonly taken = new Set<string>();
  private readonly constCache = new Map<string, string>();
  /** Nodes emitted so far, in emission order (the backward graph). */
  readonly emitted: NodeProto[] = [];

  constructor(readonly graph: Graph, readonly infos: Map<string, TensorInfo>, readonly opset: number, readonly prefix = 'vjp') {
    for (const n of graph.nodes) {
      if (n.name) this.taken.add(n.name);
      for (const o of n.output) this.taken.add(o);
    }
    for (const t of graph.proto.initializer) this.taken.add(t.name);
    for (const v of graph.proto.input) this.taken.add(v.name);
  }

  /** A new tensor/node name that collides with nothing in the graph. */
  fresh(hint: string): string {
    let name: string;
    do name = `/${this.prefix}/${hint}_${this.counter++}`;
    while (this.taken.has(name));
    this.taken.add(name);
    return name;
  }

  reserve(name: string): void {
    if (this.taken.has(name)) throw new VjpError(`output name '${name}' is already used in the graph; rename the tensor or pick another suffix`);
    this.taken.add(name);
  }

  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new VjpError(`internal: no shape known for tensor '${name}'`);
    return i;
  }
  dims(name: string): number[] {
    return this.info(name).dims;
  }
  type(name: string): DataTypeCode {
    return this.info(name).elemType;
  }

  /** Emits one node with one output of the given dims/type; returns the output name. */
  op(opType: string, inputs: string[], dims: number[], elemType: DataTypeCode, attrs: Record<string, AttrValue> = {}, hint = opType): string {
    return this.opMulti(opType, inputs, [{ dims, elemType }], attrs, hint)[0];
  }

  /** Emits a node whose single output gets a caller-chosen (reserved) name, e.g. a graph output. */
  opNamed(opType: string, inputs: string[], output: string, dims: number[], elemType: DataTypeCode, attrs: Record<string, AttrValue> = {}): string {
    this.reserve(output);
    const node = this.graph.addNode(opType, inputs, [output], attrs, this.fresh(`${opType}_node`));
    this.emitted.push(node);
    this.infos.set(output, { elemType, dims: [...dims] });
    return output;
  }

  opMulti(opType: string, inputs: string[], outs: { dims: number[]; elemType: DataTypeCode }[], attrs: Record<string, AttrValue> = {}, hint = opType): string[] {
    const names = outs.map(() => this.fresh(hint));
    const node = this.graph.addNode(opType, inputs, names, attrs, this.fresh(`${hint}_node`));
    this.emitted.push(node);
    names.forEach((n, i) => this.infos.set(n, { elemType: outs[i].elemType, dims: [...outs[i].dims] }));
    return names;
  }

  /** A constant tensor as an initializer (deduplicated by content). */
  constant(t: HostTensor, hint = 'const'): string {
    // Only small constants (scalars, shape vectors) are worth deduplicating; big ones (one-hot matrices) are unique.
    const key = t.data.length <= 64 ? `${t.dataType}|${t.dims.join(',')}|${Array.from(t.data as ArrayLike<number | bigint>, String).join(',')}` : undefined;
    const cached = key ? this.constCache.get(key) : undefined;
    if (cached) return cached;
    const name = this.fresh(hint);
    this.graph.addInitializer(name, t);
    this.infos.set(name, { elemType: t.dataType, dims: [...t.dims], value: t.data.length <= 4096 ? t : undefined });
    if (key) this.constCache.set(key, name);
    return name;
  }
  scalar(v: number, elemType: DataTypeCode): string {
    return this.constant(hostTensor(elemType, [], [v]), 'scalar');
  }
  ints(values: number[]): string {
    return this.constant(hostTensor(DataType.INT64, [values.length], values), 'ints');
  }

  // ---- elementwise with numpy broadcasting -------------------------------------------------------------------
  private binary(opType: string, a: string, b: string): string {
    return this.op(opType, [a, b], broadcastDims(this.dims(a), this.dims(b)), this.type(a));
  }
  add(a: string, b: string): string { return this.binary('Add', a, b); }
  sub(a: string, b: string): string { return this.binary('Sub', a, b); }
  mul(a: string, b: string): string { return this.binary('Mul', a, b); }
  div(a: string, b: string): string { return this.binary('Div', a, b); }
  pow(a: string, b: string): string { return this.binary('Pow', a, b); }
  unary(opType: string, a: string): string { return this.op(opType, [a], this.dims(a), this.type(a)); }
  neg(a: string): string { return this.unary('Neg', a); }
  /** a · s for a host scalar s (skips s = 1). */
  scale(a: string, s: number): string {
    return s === 1 ? a : this.mul(a, this.scalar(s, this.type(a)));
  }
  where(cond: string, a: string, b: string): string {
    const dims = broadcastDims(broadcastDims(this.dims(cond), this.dims(a)), this.dims(b));
    return this.op('Where', [cond, a, b], dims, this.type(a));
  }
  cast(a: string, to: DataTypeCode): string {
    return this.type(a) === to ? a : this.op('Cast', [a], this.dims(a), to, { to });
  }

  // ---- shape plumbing (all targets static) ---------------------------------------------------------------------
  reshape(a: string, dims: number[]): string {
    if (sameDims(this.dims(a), dims)) return a;
    if (numel(this.dims(a)) !== numel(dims)) throw new VjpError(`internal: reshape [${this.dims(a)}] → [${dims}]`);
    return this.op('Reshape', [a, this.ints(dims)], dims, this.type(a));
  }
  transpose(a: string, perm: number[]): string {
    if (perm.every((p, i) => p === i)) return a;
    const d = this.dims(a);
    return this.op('Transpose', [a], perm.map((p) => d[p]), this.type(a), { perm });
  }
  /** Swaps the last two axes. */
  transposeLast2(a: string): string {
    const r = this.dims(a).length;
    const perm = [...Array(r).keys()];
    [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
    return this.transpose(a, perm);
  }
  expand(a: string, dims: number[]): string {
    if (sameDims(this.dims(a), dims)) return a;
    return this.op('Expand', [a, this.ints(dims)], broadcastDims(this.dims(a), dims), this.type(a));
  }
  /** A reduction over `axes` in the form the model's opset wants (axes as input from opset 13 for ReduceSum, 18 for the others). */
  reduce(opType: string, a: string, axes: number[], keepdims: boolean): string {
    const d = this.dims(a);
    const norm = [...new Set(axes.map((ax) => (ax < 0 ? ax + d.length : ax)))].sort((p, q) => p - q);
    if (norm.length === 0) return a;
    const outDims = keepdims ? d.map((x, i) => (norm.includes(i) ? 1 : x)) : d.filter((_, i) => !norm.includes(i));
    const axesAsInput = opType === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    return axesAsInput
      ? this.op(opType, [a, this.ints(norm)], outDims, this.type(a), { keepdims: keepdims ? 1 : 0 })
      : this.op(opType, [a], outDims, this.type(a), { axes: norm, keepdims: keepdims ? 1 : 0 });
  }
  reduceSum(a: string, axes: number[], keepdims: boolean): string {
    return this.reduce('ReduceSum', a, axes, keepdims);
  }
  /**
   * Sums a gradient of broadcast shape back to `dims` (the shape of the operand that was broadcast): leading extra
   * axes and axes where the operand had size 1 are summed, then the result is reshaped to exactly `dims`.
   */
  reduceToShape(g: string, dims: number[]): string {
    const gd = this.dims(g);
    if (sameDims(gd, dims)) return g;
    const lead = gd.length - dims.length;
    const axes: number[] = [];
    for (let i = 0; i < gd.length; i++) {
      const target = i < lead ? 1 : dims[i - lead];
      if (i < lead || (target === 1 && gd[i] !== 1)) axes.push(i);
      else if (target !== gd[i]) throw new VjpError(`internal: cannot reduce [${gd}] to [${dims}]`);
    }
    return this.reshape(this.reduceSum(g, axes, true), dims);
  }
  matmul(a: string, b: string): string {
    const da = this.dims(a);
    const db = this.dims(b);
    const batch = broadcastDims(da.slice(0, -2), db.slice(0, -2));
    return this.op('MatMul', [a, b], [...batch, da[da.length - 2], db[db.length - 1]], this.type(a));
  }
  /** Gemm with static dims (2-D operands). */
  gemm(a: string, b: string, transA: boolean, transB: boolean, alpha = 1): string {
    const da = this.dims(a);
    const db = this.dims(b);
    const m = transA ? da[1] : da[0];
    const n = transB ? db[0] : db[1];
    const attrs: Record<string, AttrValue> = { transA: transA ? 1 : 0, transB: transB ? 1 : 0 };
    if (alpha !== 1) attrs.alpha = alpha;
    return this.op('Gemm', [a, b], [m, n], this.type(a), attrs);
  }
  slice(a: string, starts: number[], ends: number[], axes: number[], steps?: number[]): string {
    const d = this.dims(a);
    const out = [...d];
    axes.forEach((ax, k) => {
      const step = steps?.[k] ?? 1;
      out[ax] = Math.max(0, Math.ceil((Math.min(ends[k], d[ax]) - starts[k]) / step));
    });
    const inputs = [a, this.ints(starts), this.ints(ends), this.ints(axes)];
    if (steps) inputs.push(this.ints(steps));
    return this.op('Slice', inputs, out, this.type(a));
  }
  /** Zero padding: `before[i]`/`after[i]` elements on axis i. */
  pad(a: string, before: number[], after: number[]): string {
    if (before.every((x) => x === 0) && after.every((x) => x === 0)) return a;
    const d = this.dims(a);
    return this.op('Pad', [a, this.ints([...before, ...after])], d.map((x, i) => x + before[i] + after[i]), this.type(a), { mode: 'constant' });
  }
  concat(parts: string[], axis: number): string {
    if (parts.length === 1) return parts[0];
    const d = [...this.dims(parts[0])];
    d[axis] = parts.reduce((s, p) => s + this.dims(p)[axis], 0);
    return this.op('Concat', parts, d, this.type(parts[0]), { axis });
  }
  /** Zeros of the given dims (ConstantOfShape: nothing big stored in the model). */
  zeros(dims: number[], elemType: DataTypeCode): string {
    return this.op('ConstantOfShape', [this.ints(dims)], dims, elemType, { value: hostTensor(elemType, [1], [0]) }, 'zeros');
  }
}

export function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
