// Helpers for the VJP tests: tiny models from node lists, a seeded RNG, a graph cut that turns an intermediate
// tensor into an input (so finite differences can perturb it), and a checker that compares buildVjp's gradients
// with central finite differences of L(x) = Σ_seeds ⟨cotangent, seed(x)⟩ evaluated by a plain forward session.
import { create } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import { cloneModel, type OnnxModel } from '../engine/onnx/model.js';
import { Graph, makeValueInfo, type AttrValue } from '../engine/onnx/graph.js';
import { DataType, hostTensor, numel, type HostTensor } from '../engine/onnx/tensor.js';
import { inferShapes } from '../engine/onnx/shapes.js';
import { openSession, ort } from '../engine/onnx/session.js';
import { buildVjp } from '../engine/onnx/autodiff/index.js';

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(n: number, lo = -1, hi = 1): number[] {
    return Array.from({ length: n }, () => lo + (hi - lo) * this.next());
  }
  normal(n: number): number[] {
    return Array.from({ length: n }, () => {
      const u = Math.max(this.next(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
    });
  }
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
}

export interface ModelSpec {
  inputs: { name: string; type: number; dims: number[] }[];
  nodes: NodeSpec[];
  outputs: string[];
  initializers?: Record<string, HostTensor>;
  opset?: number;
}

/** A model from a node list, built through the Graph API. */
export function makeModel(spec: ModelSpec): OnnxModel {
  const proto = create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: 'heed-test',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(spec.opset ?? 14) })],
    graph: create(GraphProtoSchema, { name: 'test' }),
  });
  const model: OnnxModel = { proto, baseDir: undefined, source: '<test model>' };
  const g = new Graph(model);
  for (const i of spec.inputs) g.addInput(i.name, i.type, i.dims);
  for (const [name, t] of Object.entries(spec.initializers ?? {})) g.addInitializer(name, t);
  spec.nodes.forEach((n, k) => g.addNode(n.op, n.inputs, n.outputs, n.attrs ?? {}, `${n.op}_${k}`));
  for (const o of spec.outputs) g.addOutput(o);
  return model;
}

/**
 * A copy of `model` where `tensor` is a graph input: its producer's output is renamed (now dead), so the rest of the
 * graph reads the fed value. `dims`/`type` describe the tensor.
 */
export function cutAt(model: OnnxModel, tensor: string, type: number, dims: number[]): OnnxModel {
  const copy = cloneModel(model);
  const g = new Graph(copy);
  const p = g.producer(tensor);
  if (!p) throw new Error(`cutAt: '${tensor}' has no producer`);
  p.output = p.output.map((o) => (o === tensor ? `${tensor}__cut_dead` : o));
  g.proto.input.push(makeValueInfo(tensor, type, dims));
  g.reindex();
  return copy;
}

export type Values = Record<string, { type: number; dims: number[]; data: number[] }>;

function toOrt(v: { type: number; dims: number[]; data: ArrayLike<number> }): ort.Tensor {
  switch (v.type) {
    case DataType.DOUBLE: return new ort.Tensor('float64', Float64Array.from(v.data), v.dims);
    case DataType.FLOAT: return new ort.Tensor('float32', Float32Array.from(v.data), v.dims);
    case DataType.INT64: return new ort.Tensor('int64', BigInt64Array.from(Array.from(v.data, (x) => BigInt(x))), v.dims);
    case DataType.INT32: return new ort.Tensor('int32', Int32Array.from(v.data), v.dims);
    case DataType.BOOL: return new ort.Tensor('bool', Uint8Array.from(v.data), v.dims);
    default: throw new Error(`toOrt: type ${v.type}`);
  }
}

export function feedsOf(values: Values): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(values)) out[k] = toOrt(v);
  return out;
}

export function numbers(t: ort.Tensor): number[] {
  return Array.from(t.data as ArrayLike<number>, Number);
}

export interface GradCheck {
  /** max |analytic − fd| over the checked entries / directions. */
  maxAbsErr: number;
  /** max |fd| (scale of the checked derivatives). */
  scale: number;
  /** maxAbsErr / max(scale, floor). */
  relErr: number;
  checked: number;
}

export interface CheckOptions {
  seeds: string[];
  wrt: string[];
  values: Values;
  /** Finite-difference step; per wrt tensor when a record. */
  eps: number | Record<string, number>;
  /** Compare every entry when the wrt tensor has at most this many elements, else random directions. */
  maxEntries?: number;
  directions?: number;
  seed?: number;
}

/**
 * Gradients from buildVjp vs central finite differences. wrt tensors that are graph inputs are perturbed directly;
 * intermediate ones through cutAt. Everything runs in the model's own precision; L is accumulated in float64.
 */
export async function checkVjp(model: OnnxModel, o: CheckOptions): Promise<Record<string, GradCheck>> {
  const rng = new Rng(o.seed ?? 1);
  const inputDims: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(o.values)) inputDims[k] = v.dims;
  const vjp = buildVjp(model, { seeds: o.seeds, wrt: o.wrt, inputDims });
  const cots: Values = {};
  for (const s of o.seeds) {
    const sp = vjp.specs[s];
    cots[vjp.cotangents[s]] = { type: sp.elemType, dims: sp.dims, data: rng.normal(numel(sp.dims)) };
  }
  const vs = await openSession(vjp.model);
  const feeds: Values = {};
  for (const i of vjp.inputs) feeds[i.name] = o.values[i.name];
  const out = await vs.run(feedsOf({ ...feeds, ...cots }));
  await vs.release();

  const results: Record<string, GradCheck> = {};
  for (const w of o.wrt) {
    const sp = vjp.specs[w];
    const grad = numbers(out[vjp.gradients[w]]);
    let fm = model;
    let base: number[];
    const values = { ...o.values };
    if (o.values[w]) {
      base = o.values[w].data;
    } else {
      // Intermediate tensor: read its value from a forward run, then cut the graph there.
      const probe = cloneModel(model);
      const pg = new Graph(probe);
      pg.addOutput(w);
      const ps = await openSession(probe);
      const po = await ps.run(feedsOf(o.values), [w]);
      await ps.release();
      base = numbers(po[w]);
      fm = cutAt(model, w, sp.elemType, sp.dims);
    }
    const fs = await openSession(fm);
    const loss = async (x: number[]): Promise<number> => {
      const r = await fs.run(feedsOf({ ...values, [w]: { type: sp.elemType, dims: sp.dims, data: x } }), o.seeds);
      let L = 0;
      for (const s of o.seeds) {
        const y = numbers(r[s]);
        const c = cots[vjp.cotangents[s]].data;
        for (let i = 0; i < y.length; i++) L += c[i] * y[i];
      }
      return L;
    };
    const n = base.length;
    const eps = typeof o.eps === 'number' ? o.eps : o.eps[w] ?? 1e-2;
    let maxAbsErr = 0;
    let scale = 0;
    let checked = 0;
    if (n <= (o.maxEntries ?? 64)) {
      for (let j = 0; j < n; j++) {
        const xp = [...base];
        const xm = [...base];
        xp[j] += eps;
        xm[j] -= eps;
        const fd = ((await loss(xp)) - (await loss(xm))) / (2 * eps);
        maxAbsErr = Math.max(maxAbsErr, Math.abs(fd - grad[j]));
        scale = Math.max(scale, Math.abs(fd));
        checked++;
      }
    } else {
      for (let k = 0; k < (o.directions ?? 3); k++) {
        const d = rng.normal(n);
        const norm = Math.sqrt(d.reduce((s, v) => s + v * v, 0));
        const u = d.map((v) => v / norm);
        const fd = ((await loss(base.map((v, i) => v + eps * u[i]))) - (await loss(base.map((v, i) => v - eps * u[i])))) / (2 * eps);
        const an = u.reduce((s, v, i) => s + v * grad[i], 0);
        maxAbsErr = Math.max(maxAbsErr, Math.abs(fd - an));
        scale = Math.max(scale, Math.abs(fd));
        checked++;
      }
    }
    await fs.release();
    results[w] = { maxAbsErr, scale, relErr: maxAbsErr / Math.max(scale, 1e-3), checked };
  }
  return results;
}

/** Shapes of every tensor of a model with fixed input dims (for building variants in tests). */
export function shapesOf(model: OnnxModel, inputDims: Record<string, number[]>) {
  return inferShapes(new Graph(cloneModel(model)), { inputDims });
}

export { hostTensor, DataType };
