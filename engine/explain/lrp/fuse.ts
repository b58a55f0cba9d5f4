// Recognises composite activations that exporters spell out op by op, so that a rule can treat them as one op.
// GELU (erf form), as torch.onnx exports nn.GELU / transformers' "gelu":
//   d = x / √2 (Div or Mul by a constant);  e = Erf(d);  a = e + 1;  then either
//   m = x · a;  y = m · 0.5          (transformers, torch 1.13)   or
//   h = x · 0.5;  y = h · a          (other exporters)
// Chefer et al.'s GELU passes relevance unchanged, which an op-by-op walk cannot express (x · a multiplies two computed
// tensors), so the chain becomes one virtual `Gelu` node from x to y.
import type { NodeProto } from 'onnx-buf';
import type { Graph } from '../../onnx/graph.js';

export interface FusedOp {
  opType: string;
  input: string;
  output: string;
  /** The exported nodes the fused op replaces, including the one producing `output`. */
  nodes: NodeProto[];
}

function soleConsumer(g: Graph, t: string): NodeProto | undefined {
  const c = g.consumers(t);
  return c.length === 1 ? c[0] : undefined;
}

function otherInput(n: NodeProto, t: string): string | undefined {
  if (n.input.length !== 2) return undefined;
  if (n.input[0] === t) return n.input[1];
  if (n.input[1] === t) return n.input[0];
  return undefined;
}

/** All erf-GELU chains of the graph, keyed by the node producing their output. */
export function findGelus(g: Graph, isConstant: (t: string) => boolean): Map<NodeProto, FusedOp> {
  const out = new Map<NodeProto, FusedOp>();
  for (const erf of g.nodes) {
    if (erf.opType !== 'Erf') continue;
    const d = g.producer(erf.input[0]);
    if (!d || (d.opType !== 'Div' && d.opType !== 'Mul') || !isConstant(d.input[1])) continue;
    const x = d.input[0];
    const add = soleConsumer(g, erf.output[0]);
    if (!add || add.opType !== 'Add') continue;
    const one = otherInput(add, erf.output[0]);
    if (!one || !isConstant(one)) continue;
    const m = soleConsumer(g, add.output[0]);
    if (!m || m.opType !== 'Mul') continue;
    const other = otherInput(m, add.output[0]);
    if (other === x) {
      const half = soleConsumer(g, m.output[0]);
      const c = half && otherInput(half, m.output[0]);
      if (!half || half.opType !== 'Mul' || !c || !isConstant(c)) continue;
      out.set(half, { opType: 'Gelu', input: x, output: half.output[0], nodes: [d, erf, add, m, half] });
    } else if (other) {
      const h = g.producer(other);
      const c = h && otherInput(h, x);
      if (!h || h.opType !== 'Mul' || !c || !isConstant(c)) continue;
      out.set(m, { opType: 'Gelu', input: x, output: m.output[0], nodes: [d, erf, add, h, m] });
    }
  }
  return out;
}
