// Forward-graph clean-up once every shape is fixed. Exports carry dynamic-shape plumbing (Shape → Gather →
// Unsqueeze → Concat → Reshape) and, in diffusers' torch-1.13 exports, a dead `x + 0·ConstantOfShape(shape)` term
// before every attention Softmax (from baddbmm with beta = 0). With static shapes both are constants: folding them
// here shrinks the graph, lets ORT plan memory statically, and removes three full passes over each attention-score
// tensor (at 64×64 latents, 512 MB each) from the forward the VJP has to run.
import type { NodeProto } from 'onnx-buf';
import { attrTensor, type Graph } from '../graph.js';
import { broadcastDims, type TensorInfo } from '../shapes.js';
import { toNumbers } from '../tensor.js';
import { sameDims } from './emitter.js';

export function simplifyForward(graph: Graph, infos: Map<string, TensorInfo>, protect: ReadonlySet<string>): void {
  const removed = new Set<NodeProto>();
  for (const n of graph.nodes) {
    if (n.output.length === 0 || n.output.some((o) => !o || protect.has(o))) continue;
    const values = n.output.map((o) => {
      const i = infos.get(o);
      return i?.value && i.value.dataType === i.elemType ? i.value : undefined;
    });
    if (values.some((v) => !v)) continue;
    n.output.forEach((o, k) => graph.addInitializer(o, values[k] as NonNullable<TensorInfo['value']>));
    removed.add(n);
  }
  graph.proto.node = graph.nodes.filter((n) => !removed.has(n));
  graph.reindex();

  const isFiniteFill = (t: string): boolean => {
    const p = graph.producer(t);
    if (p?.opType === 'ConstantOfShape') {
      const v = attrTensor(p, 'value');
      return !v || toNumbers(v).every(Number.isFinite);
    }
    const v = infos.get(t)?.value;
    return !!v && toNumbers(v).every(Number.isFinite);
  };
  const isZeroConst = (t: string): boolean => {
    const v = infos.get(t)?.value;
    return !!v && toNumbers(v).every((x) => x === 0);
  };
  const isZero = (t: string): boolean => {
    if (isZeroConst(t)) return true;
    const p = graph.producer(t);
    if (!p) return false;
    if (p.opType === 'ConstantOfShape') {
      const v = attrTensor(p, 'value');
      return !v || toNumbers(v).every((x) => x === 0);
    }
    if (p.opType === 'Mul') {
      const [a, b] = p.input;
      return (isZeroConst(a) && isFiniteFill(b)) || (isZeroConst(b) && isFiniteFill(a));
    }
    return false;
  };
  let changed = false;
  // No-op Cast/Identity (torch's `.to(v.dtype)` after the attention Softmax): consumers read the input directly, so
  // the backward never keeps two names (two residuals) for the same values.
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const alias = new Map<string, string>();
  for (const n of graph.nodes) {
    const [x] = n.input;
    const y = n.output[0];
    if (!x || !y || protect.has(y) || outputs.has(y)) continue;
    const noop = n.opType === 'Identity' || (n.opType === 'Cast' && infos.get(x)?.elemType === infos.get(y)?.elemType);
    if (noop && infos.get(x)?.elemType !== undefined) alias.set(y, alias.get(x) ?? x);
  }
  if (alias.size > 0) {
    for (const n of graph.nodes) n.input = n.input.map((i) => alias.get(i) ?? i);
    changed = true;
  }
  for (const n of graph.nodes) {
    if (n.opType !== 'Add' || protect.has(n.output[0])) continue;
    const [a, b] = n.input;
    const outDims = infos.get(n.output[0])?.dims;
    if (!outDims) continue;
    const keep = isZero(b) ? a : isZero(a) ? b : undefined;
    if (!keep) continue;
    const kd = infos.get(keep)?.dims;
    const other = infos.get(keep === a ? b : a)?.dims;
    if (!kd || !other || !sameDims(kd, outDims) || !sameDims(broadcastDims(kd, other), outDims)) continue;
    n.opType = 'Identity';
    n.input = [keep];
    n.attribute = [];
    changed = true;
  }
  if (changed) graph.reindex();
}
