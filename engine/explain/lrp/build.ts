// Relevance propagation (LRP) over an ONNX graph, emitted as ONNX — the VJP builder's structure
// (engine/onnx/autodiff/build.ts) with relevance rules in place of derivative rules:
//   1. fix the input dims, infer every shape, fold shape plumbing (shared with the VJP builder),
//   2. recognise composite ops the rules treat as one (GELU's erf chain, fuse.ts),
//   3. mark the tensors on a path from a target to the seed (`logits`): relevance flows only there,
//   4. walk those nodes in reverse topological order; each op's rule (rules.ts) turns its output relevance into input
//      relevance; a tensor used by several nodes combines its parts with Chefer's Clone rule
//      R = x · Σᵢ safe_divide(Rᵢ, x),
//   5. expose the seed and `<target>__rel` for each target (e.g. every block's attention probabilities).
// The model takes the forward inputs plus `<seed>__rel` (the relevance put on the seed, a one-hot class vector) and
// runs as one onnxruntime session.
import type { NodeProto } from 'onnx-buf';
import { cloneModel, opsetVersion, type OnnxModel } from '../../onnx/model.js';
import { Graph, makeValueInfo } from '../../onnx/graph.js';
import { inferShapes, type TensorInfo } from '../../onnx/shapes.js';
import { isFloatType } from '../../onnx/tensor.js';
import { Emitter, sameDims } from '../../onnx/autodiff/emitter.js';
import { simplifyForward } from '../../onnx/autodiff/simplify.js';
import { LrpError, LrpUnsupportedOpError } from './errors.js';
import { findGelus } from './fuse.js';
import { lrpRules } from './rules.js';
import type { LrpContext, LrpOptions } from './rule.js';
import { safeDivide } from './safe.js';

/** Suffix of the relevance input of the seed and of the relevance outputs of the targets. */
export const RELEVANCE_SUFFIX = '__rel';

export interface LrpBuildOptions {
  /** The tensor relevance starts from (a graph output, e.g. `logits`). */
  seed: string;
  /** Tensors whose relevance is wanted (e.g. each block's attention probabilities). */
  targets: string[];
  /** Fixed dims of the graph inputs. */
  inputDims: Record<string, number[]>;
  /** α of LRP-αβ for linear layers (default 1, β = α − 1 = 0). */
  alpha?: number;
}

export interface LrpModel {
  /** Inputs: the forward inputs, then `<seed>__rel`. Outputs: the seed, then `<target>__rel` per target. */
  model: OnnxModel;
  seedRelevance: string;
  /** Static dims of the seed (and of its relevance input). */
  seedDims: number[];
  relevances: Record<string, string>;
  dims: Record<string, number[]>;
  stats: { forwardNodes: number; relevanceNodes: number };
}

export function buildLrp(model: OnnxModel, options: LrpBuildOptions): LrpModel {
  const { seed, targets } = options;
  const alpha = options.alpha ?? 1;
  if (!Number.isFinite(alpha) || alpha < 1) throw new LrpError(`LRP-αβ needs α ≥ 1 (β = α − 1 ≥ 0); got α = ${alpha}`);
  if (targets.length === 0) throw new LrpError('buildLrp: no target tensors given; name the tensors whose relevance you want');
  const graph = new Graph(cloneModel(model));
  for (const t of [seed, ...targets]) {
    if (!graph.hasTensor(t)) throw new LrpError(`'${t}' is not a tensor of ${model.source}; name a graph output or a node output`);
  }
  graph.pruneTo([seed]);
  const infos = inferShapes(graph, { inputDims: options.inputDims });
  simplifyForward(graph, infos, new Set([seed, ...targets]));
  graph.pruneTo([seed]);
  graph.proto.input = graph.proto.input.map((v) => {
    if (graph.isInitializer(v.name)) return v;
    const i = infos.get(v.name) as TensorInfo;
    return makeValueInfo(v.name, i.elemType, i.dims);
  });
  const order = graph.topologicalOrder();
  const forwardNodes = order.length;

  // Constants: tensors no graph input reaches (weights, biases, LayerNorm γ/β through Identity, folded scales).
  const dynamic = new Set<string>(graph.realInputs().map((v) => v.name));
  for (const n of order) if (n.input.some((i) => i && dynamic.has(i))) for (const o of n.output) if (o) dynamic.add(o);
  const isConstant = (t: string): boolean => !dynamic.has(t);

  const active = new Set<string>(targets);
  for (const n of order) {
    if (!n.input.some((i) => i && active.has(i))) continue;
    for (const o of n.output) {
      const t = o ? infos.get(o)?.elemType : undefined;
      if (o && t !== undefined && isFloatType(t)) active.add(o);
    }
  }
  if (!active.has(seed)) throw new LrpError(`the seed '${seed}' does not depend on any target (${targets.join(', ')})`);

  const gelus = findGelus(graph, isConstant);
  const fusedInner = new Set<NodeProto>();
  for (const [final, f] of gelus) for (const n of f.nodes) if (n !== final) fusedInner.add(n);

  const emitter = new Emitter(graph, infos, opsetVersion(graph.model), 'lrp');
  const seedInfo = infos.get(seed) as TensorInfo;
  const seedRelevance = `${seed}${RELEVANCE_SUFFIX}`;
  emitter.reserve(seedRelevance);
  graph.addInput(seedRelevance, seedInfo.elemType, seedInfo.dims);
  infos.set(seedRelevance, { elemType: seedInfo.elemType, dims: [...seedInfo.dims] });

  const parts = new Map<string, string[]>([[seed, [seedRelevance]]]);
  const combined = new Map<string, string>();
  const relevanceOf = (t: string): string | undefined => {
    const done = combined.get(t);
    if (done) return done;
    const p = parts.get(t);
    if (!p || p.length === 0) return undefined;
    let r = p[0];
    if (p.length > 1) {
      // Chefer's Clone.relprop: x · Σ safe_divide(Rᵢ, x).
      let sum = safeDivide(emitter, p[0], t);
      for (const q of p.slice(1)) sum = emitter.add(sum, safeDivide(emitter, q, t));
      r = emitter.mul(t, sum);
    }
    combined.set(t, r);
    return r;
  };

  for (let k = order.length - 1; k >= 0; k--) {
    const orig = order[k];
    if (fusedInner.has(orig)) continue;
    if (!orig.output.some((o) => o && parts.has(o))) continue;
    const fused = gelus.get(orig);
    // A fused op is presented to its rule as a plain node of its own op type, named after its last exported node.
    const node: NodeProto = fused
      ? ({ name: orig.name, domain: orig.domain, attribute: [], opType: fused.opType, input: [fused.input], output: [fused.output] } as unknown as NodeProto)
      : orig;
    if (node.domain !== '' && node.domain !== 'ai.onnx') throw new LrpUnsupportedOpError(`${node.domain}.${node.opType}`, node.name || node.output[0], 'custom-domain op');
    const rule = lrpRules.get(node.opType);
    if (!rule) throw new LrpUnsupportedOpError(node.opType, node.name || node.output[0]);
    const needs = (i: number): boolean => !!node.input[i] && active.has(node.input[i]);
    const ctx: LrpContext = {
      e: emitter, node, options: { alpha },
      relOut: (i) => (node.output[i] ? relevanceOf(node.output[i]) : undefined),
      needsRel: needs,
      isConstant,
      producer: (t) => graph.producer(t),
    };
    const res = rule(ctx);
    node.input.forEach((inp, i) => {
      if (!needs(i) || !res[i]) return;
      const r = res[i] as string;
      const want = infos.get(inp)?.dims ?? [];
      if (!sameDims(emitter.dims(r), want)) {
        throw new LrpError(`internal: the ${node.opType} rule gave relevance of dims [${emitter.dims(r)}] for input '${inp}' of dims [${want}] (node '${node.name}')`);
      }
      const list = parts.get(inp) ?? [];
      list.push(r);
      parts.set(inp, list);
    });
  }

  const relevances: Record<string, string> = {};
  const dims: Record<string, number[]> = {};
  for (const t of targets) {
    const out = `${t}${RELEVANCE_SUFFIX}`;
    const i = infos.get(t) as TensorInfo;
    const r = relevanceOf(t);
    emitter.opNamed('Identity', [r ?? emitter.zeros(i.dims, i.elemType)], out, i.dims, i.elemType);
    relevances[t] = out;
    dims[t] = [...i.dims];
  }
  graph.proto.output = [
    makeValueInfo(seed, seedInfo.elemType, seedInfo.dims),
    ...targets.map((t) => makeValueInfo(relevances[t], infos.get(t)?.elemType, infos.get(t)?.dims)),
  ];
  graph.reindex();
  return { model: graph.model, seedRelevance, seedDims: [...seedInfo.dims], relevances, dims, stats: { forwardNodes, relevanceNodes: emitter.emitted.length } };
}
