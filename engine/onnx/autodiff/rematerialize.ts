// Rematerialisation for the split VJP: which residuals the backward recomputes instead of receiving.
//
// The forward of a split VJP outputs every tensor the backward rules read. Most are small, but an attention's
// softmax probabilities grow with the square of the query count: at SD 1.5's 64×64 latents each self-attention map is
// 8 × 4096 × 4096 floats = 512 MB, two of them half the A&E pass's 1.9 GB of residuals. They come from queries and keys
// of 5 MB each through one MatMul, a scale and a Softmax, so the backward can recompute them right before it needs
// them (checkpointing, as torch.utils.checkpoint does per block): the forward no longer keeps them alive to the end, the
// residual buffers shrink by the map sizes, and the recomputation costs one QKᵀ product per map, a few percent of the
// UNet's forward.
import type { NodeProto } from 'onnx-buf';
import type { Graph } from '../graph.js';
import type { TensorInfo } from '../shapes.js';
import type { DataTypeCode } from '../tensor.js';

/** Residuals of at least this size are recomputed when cheap ops compute them from small tensors. */
export const DEFAULT_REMATERIALIZE_BYTES = 64 * 2 ** 20;

/** Ops whose recomputation costs about what reading their output would: data movement, elementwise, softmax, and
 *  MatMul (the QKᵀ product whose output is the large tensor: recomputing it is the point). */
const CHEAP_OPS = new Set(['Softmax', 'MatMul', 'Mul', 'Div', 'Add', 'Sub', 'Neg', 'Exp', 'Sqrt', 'Cast', 'Transpose', 'Reshape',
  'Squeeze', 'Unsqueeze', 'Identity']);
/** A chain that needs more nodes than this is not worth recomputing. */
const MAX_CHAIN = 8;
/** Folded constants a recomputed node reads are copied into the backward graph, so only small ones. */
const MAX_FOLDED_CONSTANT_BYTES = 2 ** 20;

export function tensorBytes(elemType: DataTypeCode, dims: readonly number[]): number {
  const per = elemType === 11 || elemType === 7 ? 8 : elemType === 10 || elemType === 16 ? 2
    : elemType === 9 || elemType === 2 || elemType === 3 ? 1 : 4;
  return dims.reduce((p, q) => p * q, 1) * per;
}

export interface RematerializationPlan {
  /** The backward's residuals after the plan: recomputed ones removed, the small tensors they come from added. */
  residuals: string[];
  /** Folded forward constants the recomputed nodes read (the backward gets them as initializers). */
  folded: string[];
  /** Recomputed residual → the forward nodes that recompute it, in execution order. */
  plans: Map<string, NodeProto[]>;
  /** Bytes of residuals no longer passed minus bytes of the residuals added for them. */
  savedBytes: number;
}

/**
 * Plans which of `residuals` the backward recomputes. `keep`: tensors that stay residuals whatever their size (the
 * seeds, which the forward outputs anyway, and the forward inputs, which cost nothing to pass).
 */
export function planRematerialization(graph: Graph, infos: ReadonlyMap<string, TensorInfo>, forwardNodes: ReadonlySet<NodeProto>,
  residuals: readonly string[], options: { minBytes: number; keep: ReadonlySet<string> }): RematerializationPlan {
  const bytes = (t: string): number => {
    const i = infos.get(t);
    return i ? tensorBytes(i.elemType, i.dims) : Infinity;
  };
  const current = new Set(residuals);
  const plans = new Map<string, NodeProto[]>();
  const folded = new Set<string>();
  let savedBytes = 0;

  // The nodes recomputing `t` (inputs first) plus the leaves they read, or null when `t` is not cheap to recompute.
  const chainOf = (t: string, budget: { nodes: number }, leaves: Set<string>, constants: Set<string>): NodeProto[] | null => {
    const n = graph.producer(t);
    if (!n || !forwardNodes.has(n) || !CHEAP_OPS.has(n.opType) || n.domain && n.domain !== 'ai.onnx') return null;
    if (n.output.filter(Boolean).length !== 1) return null;
    if (++budget.nodes > MAX_CHAIN) return null;
    const nodes: NodeProto[] = [];
    for (const i of n.input) {
      if (!i || graph.isInitializer(i)) continue;
      const info = infos.get(i);
      const producer = graph.producer(i);
      if (info?.value && producer) {
        if (bytes(i) > MAX_FOLDED_CONSTANT_BYTES) return null;
        constants.add(i);
      } else if (!producer || current.has(i) || bytes(i) < options.minBytes) {
        leaves.add(i);
      } else {
        const sub = chainOf(i, budget, leaves, constants);
        if (!sub) return null;
        for (const s of sub) if (!nodes.includes(s)) nodes.push(s);
      }
    }
    nodes.push(n);
    return nodes;
  };

  for (const r of residuals) {
    if (options.keep.has(r) || bytes(r) < options.minBytes) continue;
    const leaves = new Set<string>();
    const constants = new Set<string>();
    const chain = chainOf(r, { nodes: 0 }, leaves, constants);
    if (!chain) continue;
    const added = [...leaves].filter((l) => !current.has(l));
    const cost = added.reduce((s, l) => s + bytes(l), 0);
    if (cost >= bytes(r)) continue;
    current.delete(r);
    for (const l of added) current.add(l);
    for (const c of constants) folded.add(c);
    plans.set(r, chain);
    savedBytes += bytes(r) - cost;
  }
  // Keep the original order for the residuals that stay; new leaves follow.
  const ordered = [...residuals.filter((r) => current.has(r)), ...[...current].filter((r) => !residuals.includes(r))];
  return { residuals: ordered, folded: [...folded], plans, savedBytes };
}
