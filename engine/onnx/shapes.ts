// Static shape inference with constant propagation. Once the graph inputs have fixed dims, every tensor of the
// graphs Heed meets gets a static shape; the small integer tensors of torch's dynamic-shape plumbing
// (Shape → Gather → Unsqueeze → Concat → Reshape) are evaluated on the host so that Reshape/Expand/Slice targets
// become known. We do this ourselves rather than exposing every tensor to ORT because (a) the VJP builder needs the
// *values* of those shape tensors, not only shapes, and (b) exposing all activations of a 64×64 UNet costs gigabytes.
// The per-op rules live in shape-rules/ (one registry entry per op); this file walks the graph.
import type { NodeProto } from 'onnx-buf';
import { Graph, describeNode, valueInfoType } from './graph.js';
import { numel, tensorFromProto, isExternal } from './tensor.js';
import { ShapeInferenceError, makeShapeContext, type TensorInfo } from './shape-rules/rule.js';
import { shapeRules } from './shape-rules/index.js';

export { ShapeInferenceError, broadcastDims, type TensorInfo, type ShapeRule } from './shape-rules/rule.js';
export { strides, sliceSpec, broadcastTo, type SliceAxisSpec } from './shape-rules/values.js';
export { shapeSupportedOps } from './shape-rules/index.js';

const FOLD_LIMIT = 4096;

export interface InferOptions {
  /** Fixed dims for graph inputs; symbolic input dims must all be given here. */
  inputDims?: Record<string, number[]>;
  /** Element count up to which constant tensors are folded (default 4096). */
  foldLimit?: number;
}

export function inferShapes(graph: Graph, options: InferOptions = {}): Map<string, TensorInfo> {
  const limit = options.foldLimit ?? FOLD_LIMIT;
  const infos = new Map<string, TensorInfo>();
  for (const t of graph.proto.initializer) {
    const dims = t.dims.map(Number);
    const info: TensorInfo = { elemType: t.dataType, dims };
    if (numel(dims) <= limit && !isExternal(t)) info.value = tensorFromProto(t, graph.model.baseDir);
    infos.set(t.name, info);
  }
  for (const v of graph.realInputs()) {
    const vt = valueInfoType(v);
    if (!vt) throw new ShapeInferenceError(`graph input '${v.name}' has no tensor type`);
    const given = options.inputDims?.[v.name];
    let dims: number[];
    if (given) {
      if (vt.dims && vt.dims.length !== given.length) {
        throw new ShapeInferenceError(`input '${v.name}' has rank ${vt.dims.length} (dims [${vt.dims.join(', ')}]) but dims [${given.join(', ')}] were given`);
      }
      vt.dims?.forEach((d, i) => {
        if (typeof d === 'number' && d !== given[i]) {
          throw new ShapeInferenceError(`input '${v.name}' dim ${i} is fixed to ${d} by the model but ${given[i]} was given`);
        }
      });
      dims = given;
    } else {
      if (!vt.dims || vt.dims.some((d) => typeof d !== 'number')) {
        throw new ShapeInferenceError(`input '${v.name}' has symbolic dims [${vt.dims?.join(', ')}]: pass inputDims['${v.name}']`);
      }
      dims = vt.dims as number[];
    }
    infos.set(v.name, { elemType: vt.elemType, dims });
  }
  for (const node of graph.topologicalOrder()) {
    const ins = node.input.map((name) => {
      if (!name) return undefined;
      const info = infos.get(name);
      if (!info) throw new ShapeInferenceError(`${describeNode(node)}: input '${name}' is unknown (no producer, initializer or graph input)`);
      return info;
    });
    let outs: TensorInfo[];
    try {
      outs = inferNode(node, ins, limit);
    } catch (e) {
      if (e instanceof ShapeInferenceError) throw e;
      throw new ShapeInferenceError(`${describeNode(node)}: ${(e as Error).message}`);
    }
    node.output.forEach((name, i) => {
      if (name && outs[i]) infos.set(name, outs[i]);
    });
  }
  return infos;
}

function inferNode(node: NodeProto, ins: readonly (TensorInfo | undefined)[], limit: number): TensorInfo[] {
  if (node.domain !== '' && node.domain !== 'ai.onnx') {
    throw new ShapeInferenceError(`${describeNode(node)}: operator domain '${node.domain}' is not supported by Heed's shape inference ` +
      '(fused com.microsoft ops hide intermediate tensors; use an unfused export)');
  }
  const rule = shapeRules.get(node.opType);
  if (!rule) {
    throw new ShapeInferenceError(`${describeNode(node)}: operator '${node.opType}' is not supported by Heed's shape inference. ` +
      'Report the model and the op; exports of SD, ViT and CLIP need only standard ai.onnx ops.');
  }
  return rule(makeShapeContext(node, ins, limit));
}
