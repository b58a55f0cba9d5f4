// Reverse-mode differentiation of an ONNX graph, emitted as ONNX so the same runtime runs forward and backward (the
// shape of tinygrad's gradient.py):
//   1. fix the input dims and infer every shape (shape plumbing folds to constants),
//   2. prune the forward to what the seeds need,
//   3. mark the tensors on a path from a `wrt` tensor to a seed (float tensors only: Shape/int branches never
//      carry gradient, and branches that do not depend on `wrt` — the timestep embedding — are skipped),
//   4. walk those nodes in reverse topological order, asking each op's rule for its input gradients and summing
//      contributions per tensor (grads[x] += v),
//   5. expose the seeds and the gradients as outputs.
// The result runs as one ORT session (`buildVjp`) or as a forward/backward pair that passes the residual tensors
// the rules reference (`buildSplitVjp`), for callers that compute the cotangents from the forward's outputs.
import type { NodeProto } from 'onnx-buf';
import { cloneModel, opsetVersion, type OnnxModel } from '../model.js';
import { Graph, makeValueInfo, valueInfoType } from '../graph.js';
import { inferShapes, type TensorInfo } from '../shapes.js';
import { dataTypeName, isFloatType, type DataTypeCode } from '../tensor.js';
import { Emitter, sameDims } from './emitter.js';
import { UnsupportedOpError, VjpError } from './errors.js';
import { rules } from './rules/index.js';
import { simplifyForward } from './simplify.js';
import { planRematerialization, tensorBytes, DEFAULT_REMATERIALIZE_BYTES } from './rematerialize.js';
import type { GradPart, Rule, RuleContext } from './rule.js';

/** Suffix of the cotangent input added for each seed: `<seed>__cot`. */
export const COTANGENT_SUFFIX = '__cot';
/** Suffix of the gradient output added for each `wrt` tensor: `<wrt>__grad`. */
export const GRADIENT_SUFFIX = '__grad';

export interface VjpOptions {
  /** Tensors whose cotangents are given (graph outputs or any intermediate float tensor). */
  seeds: string[];
  /** Tensors to differentiate with respect to: graph inputs, initializers or intermediate tensors. */
  wrt: string[];
  /** Fixed dims of the graph inputs (required for every symbolic dim). */
  inputDims?: Record<string, number[]>;
  /**
   * The rule registry (default: the derivative rules of rules/). Modified-gradient methods pass their own, e.g.
   * AttnLRP (engine/explain/lrp/attn-rules.ts), whose Gradient×Input form is this backward pass with a few rules
   * replaced.
   */
  rules?: ReadonlyMap<string, Rule>;
  /**
   * Split VJP only: a residual of at least this many bytes that cheap ops compute from small tensors (an attention's
   * softmax probabilities from its queries and keys) is recomputed in the backward instead of being passed (default
   * 64 MiB; `Infinity` passes every residual). See rematerialize.ts.
   */
  rematerializeBytes?: number;
}

export interface TensorSpec {
  name: string;
  elemType: DataTypeCode;
  dims: number[];
}

export interface VjpModel {
  /** Inputs: the forward inputs the seeds need, then one cotangent per seed. Outputs: seeds, then gradients. */
  model: OnnxModel;
  /** Forward inputs of the VJP model (after pruning), with their fixed dims. */
  inputs: TensorSpec[];
  /** Seed name → its cotangent input (`<seed>__cot`, same dims and type as the seed). */
  cotangents: Record<string, string>;
  /** wrt name → its gradient output (`<wrt>__grad`, same dims and type as the tensor). */
  gradients: Record<string, string>;
  /** Shapes of the seeds and wrt tensors. */
  specs: Record<string, TensorSpec>;
  /** Non-fatal findings, e.g. a wrt tensor the seeds do not depend on (its gradient is zeros). */
  warnings: string[];
  /** Backward node count and the forward node count after pruning (for reports and benches). */
  stats: { forwardNodes: number; backwardNodes: number };
}

interface Differentiated {
  graph: Graph;
  emitter: Emitter;
  infos: Map<string, TensorInfo>;
  forwardNodes: Set<NodeProto>;
  result: Omit<VjpModel, 'model'>;
}

function spec(name: string, infos: Map<string, TensorInfo>): TensorSpec {
  const i = infos.get(name);
  if (!i) throw new VjpError(`internal: no shape for '${name}'`);
  return { name, elemType: i.elemType, dims: [...i.dims] };
}

function differentiate(model: OnnxModel, options: VjpOptions): Differentiated {
  const { seeds, wrt } = options;
  if (seeds.length === 0) throw new VjpError('buildVjp: no seeds given; name at least one tensor to start the backward pass from');
  if (wrt.length === 0) throw new VjpError('buildVjp: no wrt tensors given; name the tensors whose gradients you want');
  const copy = cloneModel(model);
  const graph = new Graph(copy);
  for (const s of seeds) {
    if (!graph.hasTensor(s)) {
      throw new VjpError(`seed '${s}' is not a tensor of ${model.source}; seeds must name a graph output or a node output ` +
        `(graph outputs: ${graph.outputs.map((o) => o.name).join(', ')})`);
    }
  }
  for (const w of wrt) {
    if (!graph.hasTensor(w)) {
      throw new VjpError(`wrt tensor '${w}' is not a tensor of ${model.source}; name a graph input, an initializer or a node output`);
    }
  }
  if (new Set(seeds).size !== seeds.length) throw new VjpError(`seeds contain duplicates: ${seeds.join(', ')}`);
  if (new Set(wrt).size !== wrt.length) throw new VjpError(`wrt contains duplicates: ${wrt.join(', ')}`);

  // Shapes of wrt graph inputs that pruning may drop (when the seeds do not need them).
  const inputTypes = new Map<string, TensorInfo>();
  for (const v of graph.realInputs()) {
    const vt = valueInfoType(v);
    const dims = options.inputDims?.[v.name] ?? vt?.dims;
    if (vt && dims && dims.every((d) => typeof d === 'number')) inputTypes.set(v.name, { elemType: vt.elemType, dims: dims as number[] });
  }
  graph.pruneTo([...seeds, ...wrt.filter((w) => !graph.isGraphInput(w))]);
  const infos = inferShapes(graph, { inputDims: options.inputDims });
  for (const [k, v] of inputTypes) if (!infos.has(k)) infos.set(k, v);

  for (const s of seeds) {
    const t = infos.get(s)?.elemType;
    if (t === undefined || !isFloatType(t)) {
      throw new VjpError(`seed '${s}' has element type ${t === undefined ? 'unknown' : dataTypeName(t)}: only floating-point tensors ` +
        'can be differentiated; seed the float tensor that this one is computed from (e.g. the logits before ArgMax)');
    }
  }
  for (const w of wrt) {
    const t = infos.get(w)?.elemType;
    if (t === undefined) throw new VjpError(`wrt tensor '${w}': shape unknown; pass its dims in inputDims`);
    if (!isFloatType(t)) {
      throw new VjpError(`wrt tensor '${w}' has element type ${dataTypeName(t)}: integer/bool tensors have no gradient ` +
        '(for token ids, differentiate with respect to the embedding lookup output instead)');
    }
  }

  simplifyForward(graph, infos, new Set([...seeds, ...wrt]));
  graph.pruneTo(seeds);
  // Static input shapes everywhere: rewrite the input value infos with the fixed dims.
  graph.proto.input = graph.proto.input.map((v) => {
    if (graph.isInitializer(v.name)) return v;
    const i = infos.get(v.name) as TensorInfo;
    return makeValueInfo(v.name, i.elemType, i.dims);
  });
  const inputs = graph.realInputs().map((v) => spec(v.name, infos));

  const order = graph.topologicalOrder();
  const forwardNodes = new Set(order);
  const active = new Set<string>(wrt);
  for (const n of order) {
    if (!n.input.some((i) => i && active.has(i))) continue;
    for (const o of n.output) {
      const t = o ? infos.get(o)?.elemType : undefined;
      if (o && t !== undefined && isFloatType(t)) active.add(o);
    }
  }
  const onPath = new Set<string>(seeds.filter((s) => active.has(s)));
  const backwardOrder: NodeProto[] = [];
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k];
    if (!n.output.some((o) => o && onPath.has(o))) continue;
    backwardOrder.push(n);
    for (const i of n.input) if (i && active.has(i)) onPath.add(i);
  }

  const emitter = new Emitter(graph, infos, opsetVersion(copy));
  const grads = new Map<string, string>();
  const parts = new Map<string, GradPart[]>();
  const cotangents: Record<string, string> = {};
  for (const s of seeds) {
    const name = `${s}${COTANGENT_SUFFIX}`;
    emitter.reserve(name);
    const i = infos.get(s) as TensorInfo;
    graph.addInput(name, i.elemType, i.dims);
    infos.set(name, { elemType: i.elemType, dims: [...i.dims] });
    cotangents[s] = name;
    if (onPath.has(s)) {
      grads.set(s, name);
      parts.set(s, [{ from: undefined, grad: name }]);
    }
  }
  let graphEdited = false;
  for (const node of backwardOrder) {
    if (node.domain !== '' && node.domain !== 'ai.onnx') {
      throw new UnsupportedOpError(`${node.domain}.${node.opType}`, node.name || node.output[0], 'custom-domain op');
    }
    const rule = (options.rules ?? rules).get(node.opType);
    if (!rule) throw new UnsupportedOpError(node.opType, node.name || node.output[0]);
    const ctx: RuleContext = {
      e: emitter,
      node,
      gradOut: (i) => {
        const o = node.output[i];
        return o && onPath.has(o) ? grads.get(o) : undefined;
      },
      gradOf: (t) => grads.get(t),
      gradParts: (t) => parts.get(t) ?? [],
      needsGrad: (i) => !!node.input[i] && onPath.has(node.input[i]),
      addForwardOutput: (dims, elemType, hint) => {
        const name = emitter.fresh(hint);
        while (node.output.length < 3) node.output.push('');
        const slot = node.output.findIndex((o, idx) => idx > 0 && o === '');
        node.output[slot] = name;
        infos.set(name, { elemType, dims: [...dims] });
        graphEdited = true;
        return name;
      },
    };
    const res = rule(ctx);
    if (graphEdited) {
      graph.reindex();
      graphEdited = false;
    }
    node.input.forEach((inp, i) => {
      if (!inp || !onPath.has(inp)) return;
      const gi = res[i];
      if (!gi) throw new VjpError(`internal: the ${node.opType} rule returned no gradient for input ${i} of node '${node.name}'`);
      const want = infos.get(inp)?.dims ?? [];
      if (!sameDims(emitter.dims(gi), want)) {
        throw new VjpError(`internal: the ${node.opType} rule gave a gradient of dims [${emitter.dims(gi)}] for input '${inp}' of dims [${want}] (node '${node.name}')`);
      }
      const prev = grads.get(inp);
      grads.set(inp, prev ? emitter.add(prev, gi) : gi);
      const list = parts.get(inp) ?? [];
      list.push({ from: node, grad: gi });
      parts.set(inp, list);
    });
  }

  const warnings: string[] = [];
  const gradients: Record<string, string> = {};
  for (const w of wrt) {
    const out = `${w}${GRADIENT_SUFFIX}`;
    const i = infos.get(w) as TensorInfo;
    const gw = grads.get(w);
    if (gw) {
      emitter.opNamed('Identity', [gw], out, i.dims, i.elemType);
    } else {
      warnings.push(`wrt tensor '${w}': none of the seeds (${seeds.join(', ')}) depends on it, so its gradient is all zeros`);
      emitter.opNamed('Identity', [emitter.zeros(i.dims, i.elemType)], out, i.dims, i.elemType);
    }
    gradients[w] = out;
  }
  graph.proto.output = [
    ...seeds.map((s) => makeValueInfo(s, infos.get(s)?.elemType, infos.get(s)?.dims)),
    ...wrt.map((w) => makeValueInfo(gradients[w], infos.get(w)?.elemType, infos.get(w)?.dims)),
  ];
  graph.reindex();
  const specs: Record<string, TensorSpec> = {};
  for (const n of [...seeds, ...wrt]) specs[n] = spec(n, infos);
  return {
    graph, emitter, infos, forwardNodes,
    result: {
      inputs, cotangents, gradients, specs, warnings,
      stats: { forwardNodes: forwardNodes.size, backwardNodes: emitter.emitted.length },
    },
  };
}

/**
 * One ONNX model computing the seeds and the vector–Jacobian products: feed the forward inputs plus a cotangent
 * `<seed>__cot` per seed; read the seeds and `<wrt>__grad` per wrt tensor.
 */
export function buildVjp(model: OnnxModel, options: VjpOptions): VjpModel {
  const d = differentiate(model, options);
  return { model: d.graph.model, ...d.result };
}

export interface SplitVjp {
  /** Forward: the VJP model's forward inputs → seeds, then the residuals it produces. */
  forward: OnnxModel;
  /** Backward: residuals (including forward inputs the rules need) and cotangents → gradients. */
  backward: OnnxModel;
  /** Residual tensors, in backward-input order. Those listed in `passThrough` are forward inputs, not forward outputs. */
  residuals: TensorSpec[];
  /** Residuals that are forward inputs: the runner hands the fed tensor to the backward unchanged. */
  passThrough: string[];
  inputs: TensorSpec[];
  cotangents: Record<string, string>;
  gradients: Record<string, string>;
  specs: Record<string, TensorSpec>;
  warnings: string[];
  /** `rematerialized`: residuals the backward recomputes instead of receiving (their bytes: `rematerializedBytes`). */
  stats: { forwardNodes: number; backwardNodes: number; residualBytes: number; rematerialized: string[]; rematerializedBytes: number };
}

/**
 * Two-phase VJP: a forward model that also outputs the residual tensors the backward rules reference, and a
 * backward model that takes those residuals and the cotangents. Lets the caller compute cotangents from the forward's
 * outputs (Attend-and-Excite's loss) and backpropagate without recomputing the forward.
 */
export function buildSplitVjp(model: OnnxModel, options: VjpOptions): SplitVjp {
  const d = differentiate(model, options);
  const { graph, emitter, infos, forwardNodes, result } = d;
  const backwardSet = new Set(emitter.emitted);
  const cotSet = new Set(Object.values(result.cotangents));
  const inputSet = new Set(result.inputs.map((i) => i.name));
  const producedForward = new Set<string>();
  for (const n of forwardNodes) for (const o of n.output) if (o) producedForward.add(o);

  const residualNames: string[] = [];
  const folded: string[] = [];
  const seen = new Set<string>();
  for (const n of emitter.emitted) {
    for (const i of n.input) {
      if (!i || seen.has(i)) continue;
      seen.add(i);
      if (producedForward.has(i)) {
        // Constants of the forward (folded shape plumbing, Constant nodes) are copied, not passed at runtime.
        if (infos.get(i)?.value) folded.push(i);
        else residualNames.push(i);
      } else if (inputSet.has(i)) {
        residualNames.push(i);
      }
    }
  }
  const seeds = Object.keys(result.cotangents);
  const remat = planRematerialization(graph, infos, forwardNodes, residualNames, {
    minBytes: options.rematerializeBytes ?? DEFAULT_REMATERIALIZE_BYTES,
    keep: new Set([...seeds, ...inputSet]),
  });
  residualNames.splice(0, residualNames.length, ...remat.residuals);
  folded.push(...remat.folded.filter((f) => !folded.includes(f)));
  const residuals = residualNames.map((r) => spec(r, infos));
  const passThrough = residualNames.filter((r) => inputSet.has(r));

  // Forward model: forward nodes only; outputs = seeds + produced residuals.
  const fwd = cloneModel(graph.model);
  const fg = new Graph(fwd);
  fg.proto.node = fg.proto.node.filter((_, k) => forwardNodes.has(graph.nodes[k]));
  fg.proto.input = fg.proto.input.filter((v) => !cotSet.has(v.name));
  const fwdOutputs = [...seeds, ...residualNames.filter((r) => !inputSet.has(r) && !seeds.includes(r))];
  fg.proto.output = fwdOutputs.map((o) => makeValueInfo(o, infos.get(o)?.elemType, infos.get(o)?.dims));
  keepUsedInitializers(fg);

  // Backward model: backward nodes; inputs = residuals + cotangents; folded forward constants become initializers.
  const bwd = cloneModel(graph.model);
  const bg = new Graph(bwd);
  // Recomputed residuals are emitted just before their first backward consumer, so each lives only as long as the
  // backward needs it (an SD 1.5 64×64 attention map: 512 MB for a few nodes instead of the whole pass).
  const clones = bg.proto.node;
  const indexOf = new Map(graph.nodes.map((n, k) => [n, k]));
  const backwardNodes: NodeProto[] = [];
  const recomputed = new Set<NodeProto>();
  graph.nodes.forEach((n, k) => {
    if (!backwardSet.has(n)) return;
    for (const i of n.input) {
      for (const c of remat.plans.get(i) ?? []) {
        if (recomputed.has(c)) continue;
        recomputed.add(c);
        backwardNodes.push(clones[indexOf.get(c) as number]);
      }
    }
    backwardNodes.push(clones[k]);
  });
  bg.proto.node = backwardNodes;
  bg.proto.input = [
    ...residuals.map((r) => makeValueInfo(r.name, r.elemType, r.dims)),
    ...seeds.map((s) => makeValueInfo(result.cotangents[s], infos.get(s)?.elemType, infos.get(s)?.dims)),
  ];
  bg.proto.output = bg.proto.output.filter((o) => !seeds.includes(o.name));
  bg.proto.valueInfo = [];
  bg.reindex();
  for (const f of folded) bg.addInitializer(f, infos.get(f)?.value as NonNullable<TensorInfo['value']>);
  keepUsedInitializers(bg);
  const residualBytes = residuals.reduce((s, r) => s + tensorBytes(r.elemType, r.dims), 0);
  return {
    forward: fwd, backward: bwd, residuals, passThrough,
    inputs: result.inputs, cotangents: result.cotangents, gradients: result.gradients, specs: result.specs, warnings: result.warnings,
    stats: { ...result.stats, residualBytes, rematerialized: [...remat.plans.keys()], rematerializedBytes: remat.savedBytes },
  };
}

function keepUsedInitializers(g: Graph): void {
  const used = new Set<string>();
  for (const n of g.proto.node) for (const i of n.input) if (i) used.add(i);
  for (const o of g.proto.output) used.add(o.name);
  g.proto.initializer = g.proto.initializer.filter((t) => used.has(t.name));
  g.proto.input = g.proto.input.filter((v) => !g.proto.initializer.some((t) => t.name === v.name) || used.has(v.name));
  const live = new Set<string>(used);
  for (const n of g.proto.node) for (const o of n.output) if (o) live.add(o);
  g.proto.valueInfo = g.proto.valueInfo.filter((v) => live.has(v.name));
  g.reindex();
}
