// A small graph IR over the ONNX protobuf: producer/consumer indexes, topological order, and the edits Heed needs
// (expose outputs, append nodes/initializers, prune to the ancestors of chosen outputs). The protobuf stays the
// source of truth so that saving never loses fields this IR does not model.
import { create } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema, AttributeProto_AttributeType, NodeProtoSchema, ValueInfoProtoSchema, TypeProtoSchema,
  TypeProto_TensorSchema, TensorShapeProtoSchema, TensorShapeProto_DimensionSchema,
  type AttributeProto, type NodeProto, type TensorProto, type ValueInfoProto, type GraphProto,
} from 'onnx-buf';
import type { OnnxModel } from './model.js';
import { tensorFromProto, tensorToProto, type HostTensor, type DataTypeCode } from './tensor.js';

export type AttrValue = number | number[] | string | string[] | HostTensor | bigint;

export class GraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphError';
  }
}

export class Graph {
  readonly model: OnnxModel;
  private producerIndex = new Map<string, NodeProto>();
  private consumerIndex = new Map<string, NodeProto[]>();
  private initializerIndex = new Map<string, TensorProto>();
  private nameCounter = 0;

  constructor(model: OnnxModel) {
    if (!model.proto.graph) throw new GraphError(`${model.source} has no graph`);
    this.model = model;
    this.reindex();
  }

  get proto(): GraphProto {
    return this.model.proto.graph as GraphProto;
  }
  get nodes(): NodeProto[] {
    return this.proto.node;
  }
  get inputs(): ValueInfoProto[] {
    return this.proto.input;
  }
  get outputs(): ValueInfoProto[] {
    return this.proto.output;
  }

  reindex(): void {
    this.producerIndex.clear();
    this.consumerIndex.clear();
    this.initializerIndex.clear();
    for (const t of this.proto.initializer) this.initializerIndex.set(t.name, t);
    for (const n of this.proto.node) {
      for (const o of n.output) if (o) this.producerIndex.set(o, n);
      for (const i of n.input) {
        if (!i) continue;
        let list = this.consumerIndex.get(i);
        if (!list) this.consumerIndex.set(i, (list = []));
        list.push(n);
      }
    }
  }

  producer(tensor: string): NodeProto | undefined {
    return this.producerIndex.get(tensor);
  }
  consumers(tensor: string): NodeProto[] {
    return this.consumerIndex.get(tensor) ?? [];
  }
  initializer(name: string): TensorProto | undefined {
    return this.initializerIndex.get(name);
  }
  isInitializer(name: string): boolean {
    return this.initializerIndex.has(name);
  }
  isGraphInput(name: string): boolean {
    return this.proto.input.some((v) => v.name === name) && !this.initializerIndex.has(name);
  }
  /** Real inputs: graph inputs that are not also initializers (old exporters list initializers as inputs). */
  realInputs(): ValueInfoProto[] {
    return this.proto.input.filter((v) => !this.initializerIndex.has(v.name));
  }
  initializerValue(name: string): HostTensor {
    const t = this.initializerIndex.get(name);
    if (!t) throw new GraphError(`no initializer named '${name}' in ${this.model.source}`);
    return tensorFromProto(t, this.model.baseDir);
  }
  hasTensor(name: string): boolean {
    return this.producerIndex.has(name) || this.initializerIndex.has(name) || this.proto.input.some((v) => v.name === name);
  }
  nodeByName(name: string): NodeProto | undefined {
    return this.proto.node.find((n) => n.name === name);
  }

  /** Nodes in an order where every producer precedes its consumers; throws on cycles. */
  topologicalOrder(nodes: readonly NodeProto[] = this.proto.node): NodeProto[] {
    const set = new Set(nodes);
    const indegree = new Map<NodeProto, number>();
    for (const n of nodes) {
      let d = 0;
      for (const i of n.input) {
        const p = i ? this.producerIndex.get(i) : undefined;
        if (p && set.has(p)) d++;
      }
      indegree.set(n, d);
    }
    const ready: NodeProto[] = nodes.filter((n) => indegree.get(n) === 0);
    const order: NodeProto[] = [];
    // Keep the original relative order among ready nodes so that a no-op edit keeps the node list as it was.
    const position = new Map(nodes.map((n, i) => [n, i]));
    const heap = ready.sort((a, b) => (position.get(a) ?? 0) - (position.get(b) ?? 0));
    while (heap.length > 0) {
      const n = heap.shift() as NodeProto;
      order.push(n);
      for (const o of n.output) {
        for (const c of this.consumers(o)) {
          if (!set.has(c)) continue;
          const d = (indegree.get(c) ?? 0) - 1;
          indegree.set(c, d);
          if (d === 0) insertSorted(heap, c, position);
        }
      }
    }
    if (order.length !== nodes.length) throw new GraphError(`${this.model.source}: the graph has a cycle`);
    return order;
  }

  uniqueName(prefix: string): string {
    let name: string;
    do name = `${prefix}__heed${this.nameCounter++}`;
    while (this.hasTensor(name) || this.proto.node.some((n) => n.name === name));
    return name;
  }

  /** Appends a node and returns it. Outputs must be new tensor names. */
  addNode(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, name?: string, domain = ''): NodeProto {
    for (const o of outputs) {
      if (this.producerIndex.has(o)) throw new GraphError(`addNode(${opType}): tensor '${o}' already has a producer`);
    }
    const node = create(NodeProtoSchema, {
      opType, input: inputs, output: outputs, name: name ?? this.uniqueName(opType), domain,
      attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    });
    this.proto.node.push(node);
    for (const o of outputs) this.producerIndex.set(o, node);
    for (const i of inputs) {
      if (!i) continue;
      let list = this.consumerIndex.get(i);
      if (!list) this.consumerIndex.set(i, (list = []));
      list.push(node);
    }
    return node;
  }

  addInitializer(name: string, value: HostTensor): void {
    if (this.initializerIndex.has(name)) throw new GraphError(`initializer '${name}' already exists`);
    const t = tensorToProto(name, value);
    this.proto.initializer.push(t);
    this.initializerIndex.set(name, t);
  }

  /** Declares `name` a graph output (idempotent). Type/shape are optional: ORT infers them. */
  addOutput(name: string, elemType?: DataTypeCode, dims?: (number | string)[]): void {
    if (this.proto.output.some((o) => o.name === name)) return;
    if (!this.hasTensor(name)) throw new GraphError(`cannot expose '${name}': no such tensor in ${this.model.source}`);
    this.proto.output.push(makeValueInfo(name, elemType, dims));
  }

  addInput(name: string, elemType: DataTypeCode, dims: (number | string)[]): void {
    if (this.hasTensor(name)) throw new GraphError(`cannot add input '${name}': a tensor with that name exists`);
    this.proto.input.push(makeValueInfo(name, elemType, dims));
  }

  setOutputs(names: string[]): void {
    const existing = new Map(this.proto.output.map((o) => [o.name, o]));
    this.proto.output = names.map((n) => existing.get(n) ?? makeValueInfo(n));
  }

  /** The set of nodes needed to compute `outputs`. */
  ancestors(outputs: readonly string[]): Set<NodeProto> {
    const keep = new Set<NodeProto>();
    const stack = [...outputs];
    const seen = new Set<string>();
    while (stack.length > 0) {
      const t = stack.pop() as string;
      if (seen.has(t)) continue;
      seen.add(t);
      const p = this.producerIndex.get(t);
      if (!p || keep.has(p)) continue;
      keep.add(p);
      for (const i of p.input) if (i) stack.push(i);
    }
    return keep;
  }

  /**
   * Keeps only what `outputs` need: their ancestor nodes, the initializers and graph inputs those read, and the
   * value infos of kept tensors. Graph outputs become exactly `outputs`.
   */
  pruneTo(outputs: string[]): void {
    for (const o of outputs) if (!this.hasTensor(o)) throw new GraphError(`pruneTo: no tensor '${o}' in ${this.model.source}`);
    const keep = this.ancestors(outputs);
    const used = new Set<string>(outputs);
    for (const n of keep) for (const i of n.input) if (i) used.add(i);
    const g = this.proto;
    g.node = g.node.filter((n) => keep.has(n));
    g.initializer = g.initializer.filter((t) => used.has(t.name));
    g.input = g.input.filter((v) => used.has(v.name));
    const live = new Set<string>(used);
    for (const n of g.node) for (const o of n.output) live.add(o);
    g.valueInfo = g.valueInfo.filter((v) => live.has(v.name));
    this.setOutputs(outputs);
    this.reindex();
  }

  /** Rewrites the node list in topological order (needed after appending nodes that feed earlier ones). */
  sortNodes(): void {
    this.proto.node = this.topologicalOrder();
  }
}

function insertSorted(list: NodeProto[], n: NodeProto, position: Map<NodeProto, number>): void {
  const p = position.get(n) ?? 0;
  let i = list.length;
  while (i > 0 && (position.get(list[i - 1]) ?? 0) > p) i--;
  list.splice(i, 0, n);
}

export function makeValueInfo(name: string, elemType?: DataTypeCode, dims?: (number | string)[]): ValueInfoProto {
  if (elemType === undefined) return create(ValueInfoProtoSchema, { name });
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: dims === undefined ? undefined : create(TensorShapeProtoSchema, {
            dim: dims.map((d) => create(TensorShapeProto_DimensionSchema, {
              value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
            })),
          }),
        }),
      },
    }),
  });
}

/** Element type and dims (numbers, or names for symbolic dims, or undefined when unknown) of a value info. */
export function valueInfoType(v: ValueInfoProto): { elemType: DataTypeCode; dims: (number | string | undefined)[] | undefined } | undefined {
  if (v.type?.value.case !== 'tensorType') return undefined;
  const t = v.type.value.value;
  const dims = t.shape?.dim.map((d) => d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : undefined);
  return { elemType: t.elemType, dims };
}

export function makeAttribute(name: string, v: AttrValue): AttributeProto {
  const T = AttributeProto_AttributeType;
  if (typeof v === 'bigint') return create(AttributeProtoSchema, { name, type: T.INT, i: v });
  if (typeof v === 'number') {
    return Number.isInteger(v) && !Object.is(v, -0) && !isFloatHint(name)
      ? create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(v) })
      : create(AttributeProtoSchema, { name, type: T.FLOAT, f: v });
  }
  if (typeof v === 'string') return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') {
      return create(AttributeProtoSchema, { name, type: T.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) });
    }
    const nums = v as number[];
    return nums.every((x) => Number.isInteger(x)) && !isFloatHint(name)
      ? create(AttributeProtoSchema, { name, type: T.INTS, ints: nums.map((x) => BigInt(x)) })
      : create(AttributeProtoSchema, { name, type: T.FLOATS, floats: nums });
  }
  return create(AttributeProtoSchema, { name, type: T.TENSOR, t: tensorToProto('', v) });
}

// Attributes whose ONNX type is FLOAT even when a whole number is passed (e.g. alpha=1 in Gemm).
const FLOAT_ATTRS = new Set(['alpha', 'beta', 'epsilon', 'gamma', 'bias', 'lambd', 'momentum', 'ratio', 'value_float',
  'value_floats', 'cubic_coeff_a', 'extrapolation_value', 'spatial_scale', 'scale', 'min', 'max', 'threshold', 'fmod_float']);
function isFloatHint(name: string): boolean {
  return FLOAT_ATTRS.has(name);
}

export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}
export function attrInt(node: NodeProto, name: string, fallback: number): number;
export function attrInt(node: NodeProto, name: string): number | undefined;
export function attrInt(node: NodeProto, name: string, fallback?: number): number | undefined {
  const a = attr(node, name);
  return a ? Number(a.i) : fallback;
}
export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? a.f : fallback;
}
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? a.ints.map(Number) : undefined;
}
export function attrFloats(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? [...a.floats] : undefined;
}
export function attrString(node: NodeProto, name: string, fallback: string): string {
  const a = attr(node, name);
  return a ? new TextDecoder().decode(a.s) : fallback;
}
export function attrTensor(node: NodeProto, name: string): HostTensor | undefined {
  const a = attr(node, name);
  return a?.t ? tensorFromProto(a.t) : undefined;
}

/** A node's label for error messages: op type and name. */
export function describeNode(n: NodeProto): string {
  return `${n.opType} node '${n.name || n.output[0]}'`;
}
