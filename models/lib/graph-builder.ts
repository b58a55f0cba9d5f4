// A small ONNX graph builder that writes graphs the way `torch.onnx.export` (torch 1.13, opset 14) does, so code
// tested on built models meets the same shapes of graph as on real exports:
// - node names are module paths plus a per-scope op counter (`/down_blocks.2/attentions.0/.../attn2/Softmax`,
//   then `Softmax_1`, ...), outputs are `<node name>_output_0`;
// - constants are `Constant` nodes in the graph, not initializers;
// - parameters are initializers named by module path (`conv_in.weight`), except Linear weights, which torch exports
//   transposed as `onnx::MatMul_<n>`, and GroupNorm affine terms (`onnx::Mul_<n>` / `onnx::Add_<n>`, shape [C,1,1]);
// - identical constant-filled parameters (LayerNorm ones/zeros) are de-duplicated through `Identity` nodes at the top;
// - large initializers can go to one external-data file (like diffusers' `weights.pb`), streamed to disk as they are
//   created so that a 3.4 GB UNet is never held in memory.
import { create } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema, AttributeProto_AttributeType, GraphProtoSchema, ModelProtoSchema, NodeProtoSchema,
  OperatorSetIdProtoSchema, StringStringEntryProtoSchema, TensorProtoSchema, TensorProto_DataLocation,
  type AttributeProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto,
} from 'onnx-buf';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './rng.js';
import { makeValueInfo } from '../../engine/onnx/graph.js';

/** ONNX element types used by the builders. */
export const DT = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type ElemType = (typeof DT)[keyof typeof DT];

export type Dim = number | string;

/** How a parameter is filled. Bounds and stds follow torch's default initialisers (see the model files). */
export type Init =
  | { kind: 'uniform'; bound: number }
  | { kind: 'normal'; std: number }
  | { kind: 'truncNormal'; std: number }
  | { kind: 'fill'; value: number }
  | { kind: 'data'; data: Float32Array };

/** Typed attribute values (explicit, because ONNX distinguishes INT from FLOAT attributes). */
export type Attr =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] }
  | { t: TensorProto };

export interface ExternalDataOptions {
  /** Folder of the .onnx file; `fileName` is written there and referenced relatively. */
  dir: string;
  fileName: string;
  /** Initializers of at least this many bytes go external (onnx's default threshold is 1024, as in the reference). */
  minBytes?: number;
}

export interface GraphBuilderOptions {
  seed: number;
  external?: ExternalDataOptions;
  producerName?: string;
  producerVersion?: string;
  /** Emit torch-style `Identity` nodes for repeated constant-filled parameters (default true). */
  dedupFilledParams?: boolean;
}

export interface ParamOptions {
  /** Store under torch's anonymous export name `onnx::<kind>_<n>` instead of the module path. */
  anonymous?: 'MatMul' | 'Mul' | 'Add';
  /** Multiply the drawn values (the cross-attention q/k tweak). */
  scale?: number;
}

export class GraphBuilder {
  readonly seed: number;
  private readonly scopes: string[] = [];
  private readonly counters = new Map<string, number>();
  private readonly nodes: NodeProto[] = [];
  private readonly identities: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly filledParams = new Map<string, string>();
  private readonly paramNames = new Set<string>();
  private anonCounter = 0;
  private globalConstCounter = 0;
  private fd: number | undefined;
  private extOffset = 0;
  private paramCount = 0;
  private finished = false;

  constructor(private readonly opts: GraphBuilderOptions) {
    this.seed = opts.seed;
  }

  // ---- scopes and names -------------------------------------------------------------------------------------

  /** Runs `fn` inside module scope `name` (one path segment such as `down_blocks.0` or `attn2`). */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** Current module path with dots, as torch names parameters (`down_blocks.0.resnets.1`). */
  modulePath(): string {
    return this.scopes.join('.');
  }

  private nodeName(opType: string): string {
    const prefix = this.scopes.length ? `/${this.scopes.join('/')}/` : '/';
    const key = prefix + opType;
    const k = this.counters.get(key) ?? 0;
    this.counters.set(key, k + 1);
    return k === 0 ? key : `${key}_${k}`;
  }

  // ---- nodes ------------------------------------------------------------------------------------------------

  /** Appends a node; returns its output names. An empty-string input is an omitted optional input. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, nOutputs = 1, outputNames?: string[]): string[] {
    const name = this.nodeName(opType);
    const outputs = outputNames ?? Array.from({ length: nOutputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(create(NodeProtoSchema, {
      name, opType, input: inputs, output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => makeAttr(k, v)),
    }));
    return outputs;
  }

  /** Single-output node. `outputName` renames the output (used for graph outputs such as `out_sample`). */
  op1(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outputName?: string): string {
    return this.op(opType, inputs, attrs, 1, outputName ? [outputName] : undefined)[0];
  }

  /** A `Constant` node in the current scope. */
  constant(t: TensorProto): string {
    return this.op1('Constant', [], { value: { t } });
  }

  /** Torch emits the axes of Unsqueeze as unscoped `Constant_<n>` nodes with `onnx::Unsqueeze_<k>` outputs. */
  unscopedConstant(t: TensorProto, outputPrefix: string): string {
    const n = this.nodes.length + this.identities.length;
    const out = `onnx::${outputPrefix}_${++this.globalConstCounter}`;
    this.nodes.push(create(NodeProtoSchema, {
      name: `Constant_${n}`, opType: 'Constant', input: [], output: [out], attribute: [makeAttr('value', { t })],
    }));
    return out;
  }

  constI64(values: number[], dims: number[] = [values.length]): string {
    return this.constant(tensorI64(values, dims));
  }

  scalarI64(v: number): string {
    return this.constant(tensorI64([v], []));
  }

  scalarF32(v: number): string {
    return this.constant(tensorF32(Float32Array.of(v), []));
  }

  constF32(values: ArrayLike<number>, dims: number[]): string {
    return this.constant(tensorF32(Float32Array.from(values), dims));
  }

  // ---- graph inputs and outputs -----------------------------------------------------------------------------

  input(name: string, elemType: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  // ---- parameters -------------------------------------------------------------------------------------------

  /**
   * Creates a float32 parameter named `<module path>.<local>` and returns the initializer name. Values are drawn from
   * a stream seeded by (builder seed, full module-path name), whatever name the initializer is stored under.
   */
  param(local: string, dims: number[], init: Init, options: ParamOptions = {}): string {
    const logical = this.scopes.length ? `${this.modulePath()}.${local}` : local;
    if (this.paramNames.has(logical)) throw new Error(`parameter '${logical}' is created twice: a builder bug`);
    this.paramNames.add(logical);
    const count = dims.reduce((a, b) => a * b, 1);
    this.paramCount += count;
    const stored = options.anonymous ? `onnx::${options.anonymous}_${++this.anonCounter}` : logical;
    if (init.kind === 'fill' && options.scale === undefined && (this.opts.dedupFilledParams ?? true)) {
      const key = `${init.value}:${dims.join('x')}`;
      const first = this.filledParams.get(key);
      if (first !== undefined) {
        // torch's exporter keeps one copy of identical parameters and aliases the others through Identity.
        this.identities.push(create(NodeProtoSchema, {
          name: `Identity_${this.identities.length}`, opType: 'Identity', input: [first], output: [stored],
        }));
        return stored;
      }
      this.filledParams.set(key, stored);
    }
    const data = fillParam(init, count, this.seed, logical);
    if (options.scale !== undefined) for (let i = 0; i < data.length; i++) data[i] *= options.scale;
    this.addInitializer(stored, dims, data);
    return stored;
  }

  /** Number of float parameters created so far (aliases by Identity included, as torch counts them). */
  get parameterCount(): number {
    return this.paramCount;
  }

  private addInitializer(name: string, dims: number[], data: Float32Array): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const ext = this.opts.external;
    if (ext && bytes.byteLength >= (ext.minBytes ?? 1024)) {
      if (this.fd === undefined) {
        mkdirSync(ext.dir, { recursive: true });
        this.fd = openSync(join(ext.dir, ext.fileName), 'w');
      }
      writeAll(this.fd, bytes);
      this.initializers.push(create(TensorProtoSchema, {
        name, dataType: DT.FLOAT, dims: dims.map(BigInt), dataLocation: TensorProto_DataLocation.EXTERNAL,
        externalData: [
          create(StringStringEntryProtoSchema, { key: 'location', value: ext.fileName }),
          create(StringStringEntryProtoSchema, { key: 'offset', value: String(this.extOffset) }),
          create(StringStringEntryProtoSchema, { key: 'length', value: String(bytes.byteLength) }),
        ],
      }));
      this.extOffset += bytes.byteLength;
      return;
    }
    this.initializers.push(create(TensorProtoSchema, {
      name, dataType: DT.FLOAT, dims: dims.map(BigInt), rawData: new Uint8Array(bytes),
    }));
  }

  // ---- finishing --------------------------------------------------------------------------------------------

  /** The model proto (ir 7, opset 14, producer "pytorch 1.13.0" like the reference exports). Closes external data. */
  finish(): ModelProto {
    if (this.finished) throw new Error('GraphBuilder.finish() called twice');
    this.finished = true;
    if (this.fd !== undefined) closeSync(this.fd);
    // Unique node names and single producers are what real exports guarantee and what graph tools index by.
    const names = new Set<string>();
    const produced = new Set<string>(this.initializers.map((t) => t.name));
    for (const n of [...this.identities, ...this.nodes]) {
      if (names.has(n.name)) throw new Error(`GraphBuilder: duplicate node name '${n.name}' (a builder bug)`);
      names.add(n.name);
      for (const o of n.output) {
        if (produced.has(o)) throw new Error(`GraphBuilder: tensor '${o}' produced twice (a builder bug)`);
        produced.add(o);
      }
    }
    return create(ModelProtoSchema, {
      irVersion: 7n,
      producerName: this.opts.producerName ?? 'pytorch',
      producerVersion: this.opts.producerVersion ?? '1.13.0',
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 14n })],
      graph: create(GraphProtoSchema, {
        name: 'torch_jit',
        node: [...this.identities, ...this.nodes],
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
}

function fillParam(init: Init, count: number, seed: number, logical: string): Float32Array {
  const out = new Float32Array(count);
  switch (init.kind) {
    case 'fill': return out.fill(init.value);
    case 'data':
      if (init.data.length !== count) throw new Error(`parameter '${logical}': ${init.data.length} values for ${count} elements`);
      out.set(init.data);
      return out;
    case 'uniform': return Rng.forParam(seed, logical).fillUniform(out, -init.bound, init.bound);
    case 'normal': return Rng.forParam(seed, logical).fillNormal(out, init.std);
    case 'truncNormal': return Rng.forParam(seed, logical).fillTruncNormal(out, init.std);
  }
}

// ---- proto helpers ------------------------------------------------------------------------------------------

export function tensorI64(values: number[], dims: number[]): TensorProto {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return create(TensorProtoSchema, {
    dataType: DT.INT64, dims: dims.map(BigInt), rawData: new Uint8Array(data.buffer),
  });
}

export function tensorF32(values: Float32Array, dims: number[]): TensorProto {
  return create(TensorProtoSchema, {
    dataType: DT.FLOAT, dims: dims.map(BigInt), rawData: new Uint8Array(Float32Array.from(values).buffer),
  });
}

function makeAttr(name: string, v: Attr): AttributeProto {
  const T = AttributeProto_AttributeType;
  if ('i' in v) return create(AttributeProtoSchema, { name, type: T.INT, i: BigInt(v.i) });
  if ('f' in v) return create(AttributeProtoSchema, { name, type: T.FLOAT, f: v.f });
  if ('s' in v) return create(AttributeProtoSchema, { name, type: T.STRING, s: new TextEncoder().encode(v.s) });
  if ('ints' in v) return create(AttributeProtoSchema, { name, type: T.INTS, ints: v.ints.map(BigInt) });
  if ('floats' in v) return create(AttributeProtoSchema, { name, type: T.FLOATS, floats: v.floats });
  return create(AttributeProtoSchema, { name, type: T.TENSOR, t: v.t });
}

function valueInfo(name: string, elemType: ElemType, dims: Dim[]): ValueInfoProto {
  return makeValueInfo(name, elemType, dims);
}
