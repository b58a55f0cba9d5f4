// Test helper: an exported ViT with every decomposed LayerNorm chain replaced by the opset-17 LayerNormalization op, so
// rules for the native op can be checked against the rules for the chain on the same weights.
import assert from 'node:assert/strict';
import type { NodeProto } from 'onnx-buf';
import { cloneModel, type OnnxModel } from '../../engine/onnx/model.js';
import { Graph } from '../../engine/onnx/graph.js';

/** Rewrites every exported LayerNorm chain (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β) into one opset-17 LayerNormalization. */
export function withNativeLayerNorm(model: OnnxModel, eps: number): { model: OnnxModel; replaced: number } {
  const copy = cloneModel(model);
  const g = new Graph(copy);
  const drop = new Set<NodeProto>();
  const only = (t: string, op: string): NodeProto => {
    const c = g.consumers(t).filter((n) => n.opType === op);
    assert.equal(c.length, 1, `one ${op} consumer of ${t}`);
    return c[0];
  };
  let replaced = 0;
  for (const sub of [...g.nodes]) {
    const mean = sub.opType === 'Sub' ? g.producer(sub.input[1]) : undefined;
    if (!mean || mean.opType !== 'ReduceMean' || mean.input[0] !== sub.input[0]) continue;
    const pow = only(sub.output[0], 'Pow');
    const var_ = only(pow.output[0], 'ReduceMean');
    const addEps = only(var_.output[0], 'Add');
    const sqrt = only(addEps.output[0], 'Sqrt');
    const div = only(sub.output[0], 'Div');
    const mul = only(div.output[0], 'Mul');
    const addB = only(mul.output[0], 'Add');
    const gamma = mul.input.find((i) => i !== div.output[0]) as string;
    const beta = addB.input.find((i) => i !== mul.output[0]) as string;
    for (const n of [mean, sub, pow, var_, addEps, sqrt, div, mul, addB]) drop.add(n);
    const out = addB.output[0];
    copy.proto.graph!.node = copy.proto.graph!.node.filter((n) => n !== addB);
    g.reindex();
    g.addNode('LayerNormalization', [sub.input[0], gamma, beta], [out], { axis: -1, epsilon: eps }, `${addB.name}/native`);
    replaced++;
  }
  copy.proto.graph!.node = copy.proto.graph!.node.filter((n) => !drop.has(n));
  for (const o of copy.proto.opsetImport) if (o.domain === '' || o.domain === 'ai.onnx') o.version = 17n;
  g.reindex();
  g.sortNodes();
  return { model: copy, replaced };
}

