// Head fusion (mean / max / min over the head axis) run by onnxruntime on maps already in memory. The exposing
// forward computes these reductions in-graph; a forward that comes from the gradient runner has only the per-head
// maps, and fusing 12 heads × 197² values per layer in JS costs more than the rest of rollout together, so a tiny
// ORT session (input [heads, q, k] → three [q, k] reductions) does it vectorised.
import { create } from '@bufbuild/protobuf';
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import type * as ortTypes from 'onnxruntime-node';
import { Graph, makeValueInfo } from '../onnx/graph.js';
import { DataType } from '../onnx/tensor.js';
import { openSession, runSession, ort } from '../onnx/session.js';
import type { OnnxModel } from '../onnx/model.js';
import type { HeadFusion } from './rollout.js';
import type { LayerTensor } from './tensor.js';

const OPS: Record<HeadFusion, string> = { mean: 'ReduceMean', max: 'ReduceMax', min: 'ReduceMin' };

function fuserModel(): OnnxModel {
  const proto = create(ModelProtoSchema, {
    irVersion: 7n,
    producerName: 'heed',
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 14n })],
    graph: create(GraphProtoSchema, {
      name: 'heed_head_fusion',
      input: [makeValueInfo('attention', DataType.FLOAT, ['heads', 'queries', 'keys'])],
      output: (Object.keys(OPS) as HeadFusion[]).map((f) => makeValueInfo(f, DataType.FLOAT, ['queries', 'keys'])),
    }),
  });
  const model: OnnxModel = { proto, baseDir: undefined, source: '<head fusion>' };
  const g = new Graph(model);
  for (const [f, op] of Object.entries(OPS)) g.addNode(op, ['attention'], [f], { axes: [0], keepdims: 0 });
  return model;
}

export class HeadFuser {
  private session?: Promise<ortTypes.InferenceSession>;

  /** Every fusion of every layer: result[fusion][layer] is the N×N fused map. */
  async fuse(layers: readonly LayerTensor[]): Promise<Record<HeadFusion, Float32Array[]>> {
    this.session ??= openSession(fuserModel(), { intraOpThreads: 1 });
    const session = await this.session;
    const out: Record<HeadFusion, Float32Array[]> = { mean: [], max: [], min: [] };
    for (const l of layers) {
      const r = await runSession(session, { attention: new ort.Tensor('float32', l.data, [l.heads, l.queries, l.keys]) });
      for (const f of Object.keys(OPS) as HeadFusion[]) out[f].push(r[f].data as Float32Array);
    }
    return out;
  }

  async release(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    if (s) await (await s).release();
  }
}
