// transformers' CLIPTextTransformer (v4.33) as torch.onnx.export writes it: token + position embeddings, causal mask
// (and optionally the padding mask) added before the Softmax, q scaled by a Mul BEFORE MatMul(q, kᵀ), pre-LN blocks,
// quick_gelu MLP, final LayerNorm, and the pooled output taken at the FIRST eos token (ArgMax of Equal(ids, eos)).
// Shared by the SD text encoder and the CLIP model.
import { DT, tensorF32, tensorI64 as i64, type GraphBuilder, type Init } from './graph-builder.js';
import { cast, dim, geluErf, layerNorm, linear, quickGelu, reshape, shapeVec, torchExpand, transpose, unsq, ZEROS } from './layers.js';

export interface ClipTextConfig {
  vocabSize: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  maxPositions: number;
  eosTokenId: number;
  layerNormEps: number;
  /** transformers' `initializer_factor` (1.0 in SD's text encoder; the reference CLIP used 2.0). */
  initializerFactor: number;
  /** MLP activation: quick_gelu (CLIP ViT-L, SD 1.x) or exact gelu (OpenCLIP ViT-bigG, SDXL's text_encoder_2). */
  activation?: 'quick_gelu' | 'gelu';
}

/** float32 lowest value, which transformers uses as "minus infinity" in masks. */
export const F32_MIN = -3.4028234663852886e38;

export interface ClipTextOutputs {
  lastHiddenState: string;
  pooled: string;
  /** Embeddings output, then each layer's output (transformers' `hidden_states`, before the final layer norm). */
  hiddenStates: string[];
}

/**
 * Emits the text transformer under scope `text_model`. `inputIds` may be int32 (diffusers' SD export) or int64;
 * `attentionMask` (int64 [b, s], 1 = keep) adds transformers' expanded padding mask. `lastHiddenName` / `pooledName`
 * name the two result tensors when they are graph outputs.
 */
export function clipTextTransformer(g: GraphBuilder, cfg: ClipTextConfig, inputIds: string,
  opts: { attentionMask?: string; lastHiddenName?: string; pooledName?: string } = {}): ClipTextOutputs {
  const f = cfg.initializerFactor;
  const normal = (std: number): Init => ({ kind: 'normal', std });

  return g.scope('text_model', () => {
    const seq = dim(g, inputIds, 1);
    const ids = reshape(g, inputIds, shapeVec(g, [-1, unsq(g, seq)]));

    const hidden0 = g.scope('embeddings', () => {
      const s = dim(g, ids, 1);
      const positions = g.unscopedConstant(positionIds(cfg.maxPositions), 'Slice');
      const posIds = g.op1('Slice', [positions, g.constI64([0]), unsq(g, s), g.constI64([1]), g.constI64([1])]);
      const tok = g.scope('token_embedding', () => g.op1('Gather', [g.param('weight', [cfg.vocabSize, cfg.hidden], normal(0.02 * f)), ids]));
      const pos = g.scope('position_embedding', () => g.op1('Gather', [g.param('weight', [cfg.maxPositions, cfg.hidden], normal(0.02 * f)), posIds]));
      return g.op1('Add', [tok, pos]);
    });

    // Causal mask [b, 1, s, s]: 0 on and below the diagonal, float32 min above it.
    const bsz = dim(g, ids, 0);
    const full = g.op1('ConstantOfShape', [shapeVec(g, [unsq(g, seq), unsq(g, seq)])], { value: { t: f32Tensor1(F32_MIN) } });
    const range = g.op1('Range', [g.scalarI64(0), seq, g.scalarI64(1)]);
    const rangeCol = reshape(g, g.op1('Add', [range, g.scalarI64(1)]), shapeVec(g, [unsq(g, seq), 1]));
    const keep = g.op1('Less', [range, rangeCol]);
    const causal2d = g.op1('Where', [keep, g.scalarF32(0), full]);
    const c4 = g.op1('Unsqueeze', [g.op1('Unsqueeze', [causal2d, g.constI64([0])]), g.constI64([1])]);
    const maskShape = shapeVec(g, [unsq(g, bsz), 1, unsq(g, seq), unsq(g, seq)]);
    const causal = torchExpand(g, c4, maskShape);

    let padding: string | undefined;
    if (opts.attentionMask) {
      // transformers `_expand_mask`: inverted = 1 - mask[:, None, None, :]; masked_fill(inverted.bool(), min).
      const m4 = g.op1('Unsqueeze', [g.op1('Unsqueeze', [opts.attentionMask, g.constI64([1])]), g.constI64([2])]);
      const expanded = cast(g, torchExpand(g, m4, maskShape), DT.FLOAT);
      const inverted = g.op1('Sub', [g.scalarF32(1), expanded]);
      padding = g.op1('Where', [cast(g, inverted, DT.BOOL), g.scalarF32(F32_MIN), inverted]);
    }

    const hiddenStates = [hidden0];
    const h = clipEncoder(g, hidden0, cfg, [causal, ...(padding ? [padding] : [])], hiddenStates);

    const last = g.scope('final_layer_norm', () => layerNorm(g, h, cfg.hidden, cfg.layerNormEps, opts.lastHiddenName));

    // Pooled output at the first eos: ArgMax(Equal(ids, eos)) picks the first maximum (select_last_index=0).
    const batchIdx = g.op1('Range', [g.scalarI64(0), cast(g, dim(g, last, 0), DT.INT64), g.scalarI64(1)]);
    const isEos = g.op1('Equal', [cast(g, cast(g, ids, DT.INT32), DT.INT64), g.scalarI64(cfg.eosTokenId)]);
    const first = g.op1('ArgMax', [cast(g, isEos, DT.INT32)], { axis: { i: -1 }, keepdims: { i: 0 }, select_last_index: { i: 0 } });
    const flat = g.op1('Flatten', [last], { axis: { i: 2 } });
    const flatIdx = g.op1('Add', [first, g.op1('Mul', [batchIdx, dim(g, last, 1)])]);
    const pooled = g.op1('Gather', [flat, flatIdx], { axis: { i: 0 } }, opts.pooledName);
    return { lastHiddenState: last, pooled, hiddenStates };
  });
}

export interface ClipEncoderConfig {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  layerNormEps: number;
  initializerFactor: number;
  activation?: 'quick_gelu' | 'gelu';
}

/**
 * CLIPEncoder (pre-LN blocks: layer_norm1 → self_attn → residual, layer_norm2 → mlp(fc1, quick_gelu, fc2) →
 * residual) under scope `encoder`, with transformers' CLIP init (normal, stds scaled by `initializer_factor`).
 * `masks` are added to the attention logits before the Softmax, in order.
 */
export function clipEncoder(g: GraphBuilder, x: string, cfg: ClipEncoderConfig, masks: string[], layerOutputs?: string[]): string {
  const f = cfg.initializerFactor;
  const inProjStd = Math.pow(cfg.hidden, -0.5) * Math.pow(2 * cfg.layers, -0.5) * f;
  const outProjStd = Math.pow(cfg.hidden, -0.5) * f;
  const fcStd = Math.pow(2 * cfg.hidden, -0.5) * f;
  const normal = (std: number): Init => ({ kind: 'normal', std });
  if (!Number.isInteger(cfg.hidden / cfg.heads)) throw new Error(`CLIP: hidden ${cfg.hidden} is not divisible by ${cfg.heads} heads`);
  let h = x;
  g.scope('encoder', () => {
    for (let l = 0; l < cfg.layers; l++) {
      h = g.scope(`layers.${l}`, () => {
        const residual = h;
        const n1 = g.scope('layer_norm1', () => layerNorm(g, h, cfg.hidden, cfg.layerNormEps));
        const a = g.scope('self_attn', () => clipAttention(g, n1, cfg.hidden, cfg.heads, inProjStd, outProjStd, masks));
        const h1 = g.op1('Add', [residual, a]);
        const n2 = g.scope('layer_norm2', () => layerNorm(g, h1, cfg.hidden, cfg.layerNormEps));
        const m = g.scope('mlp', () => {
          const x1 = g.scope('fc1', () => linear(g, n2, cfg.hidden, cfg.intermediate, { weightInit: normal(fcStd), biasInit: ZEROS }));
          const act = g.scope('activation_fn', () => (cfg.activation === 'gelu' ? geluErf(g, x1) : quickGelu(g, x1)));
          return g.scope('fc2', () => linear(g, act, cfg.intermediate, cfg.hidden, { weightInit: normal(inProjStd), biasInit: ZEROS }));
        });
        return g.op1('Add', [h1, m]);
      });
      layerOutputs?.push(h);
    }
  });
  return h;
}

/**
 * transformers CLIPAttention: q = q_proj(x)·scale; (b, s, h·d) → (b·h, s, d); MatMul(q, kᵀ); each mask is added on
 * the (b, h, s, s) view; Softmax on (b·h, s, s); MatMul with v; back to (b, s, h·d); out_proj. With no masks (the
 * vision tower) the Softmax follows the MatMul directly.
 */
export function clipAttention(g: GraphBuilder, x: string, hidden: number, heads: number, inStd: number, outStd: number, masks: string[]): string {
  const d = hidden / heads;
  const normal = (std: number): Init => ({ kind: 'normal', std });
  const b = dim(g, x, 0);
  const s = dim(g, x, 1);
  const q = g.op1('Mul', [g.scope('q_proj', () => linear(g, x, hidden, hidden, { weightInit: normal(inStd), biasInit: ZEROS })), g.scalarF32(Math.pow(d, -0.5))]);
  const k = g.scope('k_proj', () => linear(g, x, hidden, hidden, { weightInit: normal(inStd), biasInit: ZEROS }));
  const v = g.scope('v_proj', () => linear(g, x, hidden, hidden, { weightInit: normal(inStd), biasInit: ZEROS }));
  const split = (t: string): string => transpose(g, reshape(g, t, shapeVec(g, [unsq(g, b), -1, heads, d])), [0, 2, 1, 3]);
  const bh = g.op1('Mul', [b, g.scalarI64(heads)]);
  const flat3 = (t: string): string => reshape(g, t, shapeVec(g, [unsq(g, bh), -1, d]));
  const q3 = flat3(split(q));
  const k3 = flat3(split(k));
  const v3 = flat3(split(v));
  let w = g.op1('MatMul', [q3, transpose(g, k3, [0, 2, 1])]);
  for (const m of masks) {
    const w4 = reshape(g, w, shapeVec(g, [unsq(g, b), heads, unsq(g, s), unsq(g, s)]));
    w = reshape(g, g.op1('Add', [w4, m]), shapeVec(g, [unsq(g, bh), unsq(g, s), unsq(g, s)]));
  }
  const p = g.op1('Softmax', [w], { axis: { i: -1 } });
  const o = g.op1('MatMul', [p, v3]);
  const o4 = transpose(g, reshape(g, o, shapeVec(g, [unsq(g, b), heads, unsq(g, s), d])), [0, 2, 1, 3]);
  const o3 = reshape(g, o4, shapeVec(g, [unsq(g, b), unsq(g, s), hidden]));
  return g.scope('out_proj', () => linear(g, o3, hidden, hidden, { weightInit: normal(outStd), biasInit: ZEROS }));
}

export function positionIds(n: number) {
  return i64(Array.from({ length: n }, (_, i) => i), [1, n]);
}

function f32Tensor1(v: number) {
  return tensorF32(Float32Array.of(v), [1]);
}
