// Finds the attention-probability tensors of an exported transformer/UNet graph. Exports never output them, so
// Heed recognises each attention Softmax by its neighbourhood — scores from a MatMul of two activations reached
// through scale/mask/cast/reshape ops, probabilities consumed by a MatMul with V — instead of one fixed node
// chain, because the chain differs between exporters (baddbmm's Mul+Add(0·ConstantOfShape), CLIP's masks, ViT's
// Div, upcast Casts, SDPA's split √scale).
import type { NodeProto } from 'onnx-buf';
import { Graph, attrInt } from '../onnx/graph.js';
import type { TensorInfo } from '../onnx/shapes.js';
import { cloneModel, type OnnxModel } from '../onnx/model.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

export type AttentionKind = 'cross' | 'self';
export type AttentionLayout = 'bh,q,k' | 'b,h,q,k';

export interface AttentionSite {
  /** Position among the sites in graph (topological) order. */
  index: number;
  softmaxNode: string;
  /** Tensor holding the softmax output (the probabilities). */
  probs: string;
  /** Module path, e.g. 'down_blocks.2.attentions.0.transformer_blocks.0.attn2'. */
  modulePath: string;
  block: 'down' | 'mid' | 'up' | 'encoder' | 'other';
  kind: AttentionKind;
  heads: number;
  queryLength: number;
  keyLength: number;
  /** Spatial size of the query grid, for UNet attention when the latent size is known. */
  height?: number;
  width?: number;
  layout: AttentionLayout;
  /** Dims of the probabilities tensor for the batch the shapes were inferred with. */
  dims: number[];
}

/** No attention layer Heed can expose in the model's graph: the model is at fault. */
export class AttentionDiscoveryError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'AttentionDiscoveryError';
  }
}

export interface DiscoverOptions {
  /**
   * Batch size the shapes were inferred with (to split batch·heads). A function gives it per module path, for
   * models whose towers run different batches (CLIP: texts vs images).
   */
  batch: number | ((modulePath: string) => number);
  latentHeight?: number;
  latentWidth?: number;
  /** Graph input carrying the text conditioning; cross-attention keys come from it (default 'encoder_hidden_states'). */
  encoderInput?: string;
}

// Ops that may sit between the score MatMul and the Softmax (scale, masks, dtype changes, head reshapes).
const SCORE_PATH = new Set(['Mul', 'Div', 'Add', 'Sub', 'Cast', 'Reshape', 'Where', 'Identity', 'Clip', 'Max', 'Min']);
// Ops that may sit between the Softmax and the MatMul with V.
const PROBS_PATH = new Set(['Cast', 'Identity', 'Dropout', 'Reshape']);
// Ops through which the key projection reaches the encoder states.
const KEY_PATH = new Set(['Transpose', 'Reshape', 'MatMul', 'Add', 'Mul', 'Cast', 'Identity', 'Gemm', 'Unsqueeze', 'Squeeze', 'Concat', 'Div', 'Sqrt']);

function isActivation(graph: Graph, name: string): boolean {
  return !graph.isInitializer(name) && graph.producer(name)?.opType !== 'Constant';
}

/** The Q·Kᵀ MatMul feeding a Softmax through scale/mask ops, if any. */
function scoreMatMul(graph: Graph, softmax: NodeProto): NodeProto | undefined {
  const stack: [string, number][] = [[softmax.input[0], 0]];
  while (stack.length > 0) {
    const [t, depth] = stack.pop() as [string, number];
    const p = graph.producer(t);
    if (!p || depth > 8) continue;
    if (p.opType === 'MatMul') {
      if (isActivation(graph, p.input[0]) && isActivation(graph, p.input[1])) return p;
      continue;
    }
    if (!SCORE_PATH.has(p.opType)) continue;
    // Follow only data operands; masks and scales are constants or come from elsewhere, the score is the big one.
    for (const i of p.input) if (i && isActivation(graph, i)) stack.push([i, depth + 1]);
  }
  return undefined;
}

/** The MatMul that applies the probabilities to V, if any. */
function valueMatMul(graph: Graph, softmax: NodeProto): NodeProto | undefined {
  const stack: [string, number][] = [[softmax.output[0], 0]];
  while (stack.length > 0) {
    const [t, depth] = stack.pop() as [string, number];
    if (depth > 4) continue;
    for (const c of graph.consumers(t)) {
      if (c.opType === 'MatMul' && c.input[0] === t) return c;
      if (PROBS_PATH.has(c.opType)) stack.push([c.output[0], depth + 1]);
    }
  }
  return undefined;
}

/** Whether `tensor` is computed from graph input `input` through projection/reshape ops only (a few hops). */
function reachesInput(graph: Graph, tensor: string, input: string, maxDepth = 10): boolean {
  const stack: [string, number][] = [[tensor, 0]];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const [t, depth] = stack.pop() as [string, number];
    if (t === input) return true;
    if (seen.has(t) || depth > maxDepth) continue;
    seen.add(t);
    const p = graph.producer(t);
    if (!p || !KEY_PATH.has(p.opType)) continue;
    for (const i of p.input) if (i && isActivation(graph, i)) stack.push([i, depth + 1]);
  }
  return false;
}

export function modulePathOf(nodeName: string): string {
  const parts = nodeName.split('/').filter((s) => s.length > 0);
  parts.pop(); // the op's own name, e.g. 'Softmax'
  return parts.join('.');
}

function blockOf(path: string): AttentionSite['block'] {
  if (/(^|\.)down_blocks\./.test(path)) return 'down';
  if (/(^|\.)mid_block\./.test(path)) return 'mid';
  if (/(^|\.)up_blocks\./.test(path)) return 'up';
  if (/encoder/.test(path)) return 'encoder';
  return 'other';
}

export function findAttentionSites(graph: Graph, infos: Map<string, TensorInfo>, options: DiscoverOptions): AttentionSite[] {
  const encoderInput = options.encoderInput ?? 'encoder_hidden_states';
  const hasEncoder = graph.isGraphInput(encoderInput);
  const sites: AttentionSite[] = [];
  for (const node of graph.topologicalOrder()) {
    if (node.opType !== 'Softmax') continue;
    const score = scoreMatMul(graph, node);
    const value = valueMatMul(graph, node);
    if (!score || !value) continue;
    const info = infos.get(node.output[0]);
    if (!info) throw new AttentionDiscoveryError(`no shape for '${node.output[0]}': run inferShapes on the same graph first`);
    const dims = info.dims;
    const axis = attrInt(node, 'axis', -1);
    if (axis !== -1 && axis !== dims.length - 1) continue; // softmax over something other than keys
    let layout: AttentionLayout;
    let heads: number;
    const modulePath = modulePathOf(node.name) || node.output[0];
    if (dims.length === 3) {
      layout = 'bh,q,k';
      const batch = typeof options.batch === 'number' ? options.batch : options.batch(modulePath);
      if (dims[0] % batch !== 0) {
        throw new AttentionDiscoveryError(`${node.name}: leading dim ${dims[0]} is not a multiple of batch ${batch}`);
      }
      heads = dims[0] / batch;
    } else if (dims.length === 4) {
      layout = 'b,h,q,k';
      heads = dims[1];
    } else {
      continue;
    }
    const queryLength = dims[dims.length - 2];
    const keyLength = dims[dims.length - 1];
    const kind: AttentionKind = hasEncoder && reachesInput(graph, score.input[1], encoderInput) ? 'cross' : 'self';
    const site: AttentionSite = {
      index: sites.length, softmaxNode: node.name, probs: node.output[0], modulePath, block: blockOf(modulePath),
      kind, heads, queryLength, keyLength, layout, dims: [...dims],
    };
    if (options.latentHeight && options.latentWidth) {
      const grid = spatialGrid(queryLength, options.latentHeight, options.latentWidth);
      if (grid) {
        site.height = grid[0];
        site.width = grid[1];
      }
    }
    sites.push(site);
  }
  if (sites.length === 0) {
    const fused = graph.nodes.filter((n) => n.domain === 'com.microsoft' && /Attention/.test(n.opType));
    if (fused.length > 0) {
      throw new AttentionDiscoveryError(`${graph.model.source} uses ${fused.length} fused ${fused[0].opType} (com.microsoft) nodes, which compute ` +
        'attention internally and never materialise the probabilities. Export the model without ORT transformer ' +
        'fusion (e.g. the plain diffusers/Optimum export, not the ORT-optimised or Olive one).');
    }
  }
  return sites;
}

/** The (h, w) grid obtained by downsampling the latent by a power of two that gives `queryLength` positions. */
export function spatialGrid(queryLength: number, latentHeight: number, latentWidth: number): [number, number] | undefined {
  for (let f = 1; f <= 64; f *= 2) {
    const h = Math.ceil(latentHeight / f);
    const w = Math.ceil(latentWidth / f);
    if (h * w === queryLength) return [h, w];
  }
  return undefined;
}

/** A copy of the model with the sites' probabilities added as graph outputs (named as the tensors are). */
export function exposeAttention(model: OnnxModel, sites: readonly AttentionSite[]): OnnxModel {
  const copy = cloneModel(model);
  const graph = new Graph(copy);
  for (const s of sites) graph.addOutput(s.probs);
  return copy;
}
