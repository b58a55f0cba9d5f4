// diffusers' UNet2DConditionModel (SD 1.x layout) as diffusers v0.21 + torch 1.13 export it at opset 14:
// CrossAttnDownBlock2D ×(n−1) + DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D + CrossAttnUpBlock2D ×(n−1).
// Attention reproduces `AttnProcessor` + `get_attention_scores` (baddbmm): Q/K/V reshaped to (batch·heads, seq, d)
// through dynamic Shape→Gather→Unsqueeze→Concat chains, then MatMul(Q, Kᵀ) → Mul(scale) → Add(0·ConstantOfShape)
// → Softmax → Cast → MatMul(·, V), with nodes named `/down_blocks.2/attentions.0/transformer_blocks.0/attn2/Softmax`.
import { DT, tensorF32, type GraphBuilder } from '../lib/graph-builder.js';
import {
  cast, conv2d, dim, gemm, geluErf, groupNorm, layerNorm, linear, reshape, shapeVec, silu, torchExpand, transpose, unsq, upsampleNearest2x,
} from '../lib/layers.js';

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  /** Latent size the model is meant for (config only; the graph accepts any multiple of 8). */
  sampleSize: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  normGroups: number;
  normEps: number;
  crossAttentionDim: number;
  /**
   * diffusers `attention_head_dim`, with SD 1.x semantics: the NUMBER OF HEADS (a diffusers naming quirk); a list
   * gives one value per down block (reversed for the up blocks, the last for the mid block).
   */
  attentionHeadDim: number | number[];
  /** SD 2.x style `proj_in`/`proj_out` as Linear instead of 1×1 Conv. */
  useLinearProjection: boolean;
  /** Element type of the `timestep` input: float32 (diffusers' script) or int64 (some other exports). */
  timestepType: 'float32' | 'int64';
  /**
   * Multiplier on every attn2 to_q/to_k weight, as the reference export did (2.5): with torch's default init the
   * cross-attention logits have std ≈ 0.3, every map is nearly uniform (max prob ≈ 1/77) and Attend-and-Excite's
   * loss does not move; ×2.5 gives logit std ≈ 2 and informative maps.
   */
  attn2QkScale: number;
  /**
   * Which down blocks are CrossAttnDownBlock2D (the up blocks mirror them). Default: all but the last (SD 1.x/2.x);
   * SDXL: [false, true, true] (no attention at full latent resolution).
   */
  crossAttnDown?: boolean[];
  /** diffusers `transformer_layers_per_block`, per down block (mid: the last; up: reversed). Default 1 each; SDXL (1, 2, 10). */
  transformerLayers?: number[];
  /**
   * SDXL's `addition_embed_type: "text_time"`: inputs `text_embeds` [b, textEmbedDim] and `time_ids` [b, timeIds];
   * add_time_proj (sinusoidal, timeEmbedDim per id) → concat → add_embedding (Linear, SiLU, Linear) added to the
   * time embedding.
   */
  addition?: { timeEmbedDim: number; textEmbedDim: number; timeIds: number };
}

/** Down-block attention flags with the SD 1.x/2.x default. */
export function crossAttnDownFlags(cfg: UNetConfig): boolean[] {
  return cfg.crossAttnDown ?? cfg.blockOutChannels.map((_, i) => i < cfg.blockOutChannels.length - 1);
}

function transformerDepth(cfg: UNetConfig, block: number): number {
  const t = cfg.transformerLayers;
  return t ? t[Math.min(block, t.length - 1)] : 1;
}

/** diffusers Timesteps(dim, flip_sin_to_cos=True, freq_shift=0) on a 1-D tensor, as torch exports it. */
function timestepProjection(g: GraphBuilder, t: string, dimOut: number): string {
  const half = dimOut / 2;
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp(-Math.log(10000) * i / half));
  const arg = g.op1('Mul', [cast(g, g.op1('Unsqueeze', [t, g.constI64([1])]), DT.FLOAT), g.constF32(freqs, [1, half])]);
  const emb = g.op1('Concat', [g.op1('Sin', [arg]), g.op1('Cos', [arg])], { axis: { i: -1 } });
  const cosPart = g.op1('Slice', [emb, g.constI64([half]), g.constI64([Number.MAX_SAFE_INTEGER]), g.constI64([1]), g.constI64([1])]);
  const sinPart = g.op1('Slice', [emb, g.constI64([0]), g.constI64([half]), g.constI64([1]), g.constI64([1])]);
  return g.op1('Concat', [cosPart, sinPart], { axis: { i: -1 } });
}

interface Skip {
  name: string;
  channels: number;
}

function headsFor(cfg: UNetConfig, block: number): number {
  const a = cfg.attentionHeadDim;
  return Array.isArray(a) ? a[Math.min(block, a.length - 1)] : a;
}

/** Builds the UNet graph into `g` (inputs `sample`, `timestep`, `encoder_hidden_states`; output `out_sample`). */
export function buildUNet(g: GraphBuilder, cfg: UNetConfig): void {
  const nBlocks = cfg.blockOutChannels.length;
  const c0 = cfg.blockOutChannels[0];
  const tembDim = 4 * c0;
  const sample = g.input('sample', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  const timestep = g.input('timestep', cfg.timestepType === 'int64' ? DT.INT64 : DT.FLOAT, ['batch']);
  const ehs = g.input('encoder_hidden_states', DT.FLOAT, ['batch', 'sequence', cfg.crossAttentionDim]);

  // timesteps.expand(sample.shape[0]), then Timesteps(flip_sin_to_cos=True, freq_shift=0).
  const t = torchExpand(g, timestep, shapeVec(g, [unsq(g, dim(g, sample, 0))]));
  const add = cfg.addition;
  const textEmbeds = add ? g.input('text_embeds', DT.FLOAT, ['batch', add.textEmbedDim]) : undefined;
  const timeIds = add ? g.input('time_ids', DT.FLOAT, ['batch', add.timeIds]) : undefined;
  const tproj = g.scope('time_proj', () => timestepProjection(g, t, c0));
  let temb = g.scope('time_embedding', () => {
    const x = g.scope('linear_1', () => gemm(g, cast(g, tproj, DT.FLOAT), c0, tembDim));
    const a = g.scope('act', () => silu(g, x));
    return g.scope('linear_2', () => gemm(g, a, tembDim, tembDim));
  });
  if (add && textEmbeds && timeIds) {
    // time_embeds = add_time_proj(time_ids.flatten()).reshape((text_embeds.shape[0], -1)); concat; add_embedding.
    const flat = reshape(g, timeIds, g.constI64([-1]));
    const tp = g.scope('add_time_proj', () => timestepProjection(g, flat, add.timeEmbedDim));
    const te = reshape(g, tp, shapeVec(g, [unsq(g, dim(g, textEmbeds, 0)), -1]));
    const cat = g.op1('Concat', [textEmbeds, te], { axis: { i: -1 } });
    const inDim = add.textEmbedDim + add.timeIds * add.timeEmbedDim;
    const aug = g.scope('add_embedding', () => {
      const x = g.scope('linear_1', () => gemm(g, cat, inDim, tembDim));
      const a = g.scope('act', () => silu(g, x));
      return g.scope('linear_2', () => gemm(g, a, tembDim, tembDim));
    });
    temb = g.op1('Add', [temb, aug]);
  }

  // torch's exporter merges the identical SiLU(temb) of every resnet into the first one's.
  let tembAct: string | undefined;
  const sharedTembAct = (): string => {
    tembAct ??= g.scope('nonlinearity_1', () => silu(g, temb));
    return tembAct;
  };

  const resnet = (x: string, inC: number, outC: number): string =>
    resnetBlock(g, x, inC, outC, cfg.normGroups, cfg.normEps, { temb: { act: sharedTembAct, dim: tembDim } });

  const attention = (x: string, channels: number, heads: number, depth: number): string =>
    transformer2d(g, x, channels, heads, depth, ehs, cfg);
  const crossDown = crossAttnDownFlags(cfg);

  let h = g.scope('conv_in', () => conv2d(g, sample, cfg.inChannels, c0, 3));
  const skips: Skip[] = [{ name: h, channels: c0 }];
  let ch = c0;
  for (let i = 0; i < nBlocks; i++) {
    const out = cfg.blockOutChannels[i];
    const cross = crossDown[i];
    g.scope(`down_blocks.${i}`, () => {
      for (let j = 0; j < cfg.layersPerBlock; j++) {
        h = g.scope(`resnets.${j}`, () => resnet(h, ch, out));
        ch = out;
        if (cross) h = g.scope(`attentions.${j}`, () => attention(h, out, headsFor(cfg, i), transformerDepth(cfg, i)));
        skips.push({ name: h, channels: out });
      }
      if (i < nBlocks - 1) {
        h = g.scope('downsamplers.0', () => g.scope('conv', () => conv2d(g, h, out, out, 3, { stride: 2, pad: 1 })));
        skips.push({ name: h, channels: out });
      }
    });
  }

  g.scope('mid_block', () => {
    h = g.scope('resnets.0', () => resnet(h, ch, ch));
    h = g.scope('attentions.0', () => attention(h, ch, headsFor(cfg, nBlocks - 1), transformerDepth(cfg, nBlocks - 1)));
    h = g.scope('resnets.1', () => resnet(h, ch, ch));
  });

  const reversed = [...cfg.blockOutChannels].reverse();
  for (let i = 0; i < nBlocks; i++) {
    const out = reversed[i];
    const headsIdx = nBlocks - 1 - i;
    const cross = crossDown[headsIdx];
    g.scope(`up_blocks.${i}`, () => {
      for (let j = 0; j <= cfg.layersPerBlock; j++) {
        const skip = skips.pop();
        if (!skip) throw new Error('UNet builder: skip connections exhausted (block layout bug)');
        const cat = g.op1('Concat', [h, skip.name], { axis: { i: 1 } });
        h = g.scope(`resnets.${j}`, () => resnet(cat, ch + skip.channels, out));
        ch = out;
        if (cross) h = g.scope(`attentions.${j}`, () => attention(h, out, headsFor(cfg, headsIdx), transformerDepth(cfg, headsIdx)));
      }
      if (i < nBlocks - 1) {
        h = g.scope('upsamplers.0', () => {
          const up = upsampleNearest2x(g, h);
          return g.scope('conv', () => conv2d(g, up, out, out, 3));
        });
      }
    });
  }

  h = g.scope('conv_norm_out', () => groupNorm(g, h, c0, cfg.normGroups, cfg.normEps));
  h = g.scope('conv_act', () => silu(g, h));
  g.scope('conv_out', () => {
    const w = g.param('weight', [cfg.outChannels, c0, 3, 3], { kind: 'uniform', bound: 1 / Math.sqrt(c0 * 9) });
    const b = g.param('bias', [cfg.outChannels], { kind: 'uniform', bound: 1 / Math.sqrt(c0 * 9) });
    g.op1('Conv', [h, w, b], {
      dilations: { ints: [1, 1] }, group: { i: 1 }, kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [1, 1] },
    }, 'out_sample');
  });
  g.output('out_sample', DT.FLOAT, ['batch', cfg.outChannels, 'height', 'width']);
}

/**
 * diffusers ResnetBlock2D: GroupNorm → SiLU → conv1 (+ time_emb_proj(SiLU(temb))[:, :, None, None]) → GroupNorm →
 * SiLU → conv2, plus the (1×1 conv) shortcut, divided by output_scale_factor (1.0, kept as a Div like the export).
 * Call inside the block's scope (`resnets.j`). Without `temb` this is the VAE's resnet.
 */
export function resnetBlock(g: GraphBuilder, x: string, inC: number, outC: number, groups: number, eps: number,
  opts: { temb?: { act: () => string; dim: number } } = {}): string {
  let act = 0;
  const nonlinearity = (v: string): string => g.scope(act++ === 0 ? 'nonlinearity' : `nonlinearity_${act - 1}`, () => silu(g, v));
  let h = g.scope('norm1', () => groupNorm(g, x, inC, groups, eps));
  h = nonlinearity(h);
  h = g.scope('conv1', () => conv2d(g, h, inC, outC, 3));
  if (opts.temb) {
    const te = opts.temb.act();
    act++; // the temb SiLU is `nonlinearity_1` of every resnet (shared by the exporter's CSE)
    let p = g.scope('time_emb_proj', () => gemm(g, te, opts.temb!.dim, outC));
    p = g.op1('Unsqueeze', [g.op1('Unsqueeze', [p, g.constI64([2])]), g.constI64([3])]);
    h = g.op1('Add', [h, p]);
  }
  h = g.scope('norm2', () => groupNorm(g, h, outC, groups, eps));
  h = nonlinearity(h);
  h = g.scope('conv2', () => conv2d(g, h, outC, outC, 3));
  const shortcut = inC !== outC ? g.scope('conv_shortcut', () => conv2d(g, x, inC, outC, 1)) : x;
  return g.op1('Div', [g.op1('Add', [shortcut, h]), g.scalarF32(1)]);
}

/** Transformer2DModel with `depth` BasicTransformerBlocks (self-attn, cross-attn, GEGLU FF). Call inside `attentions.j`. */
function transformer2d(g: GraphBuilder, x: string, channels: number, heads: number, depth: number, ehs: string, cfg: UNetConfig): string {
  const b = dim(g, x, 0);
  const hh = dim(g, x, 2);
  const ww = dim(g, x, 3);
  const n = g.scope('norm', () => groupNorm(g, x, channels, cfg.normGroups, 1e-6));
  let tokens: string;
  let inner: string;
  if (!cfg.useLinearProjection) {
    const p = g.scope('proj_in', () => conv2d(g, n, channels, channels, 1));
    inner = dim(g, p, 1);
    const tr = transpose(g, p, [0, 2, 3, 1]);
    tokens = reshape(g, tr, shapeVec(g, [unsq(g, b), unsq(g, g.op1('Mul', [hh, ww])), unsq(g, inner)]));
  } else {
    inner = dim(g, n, 1);
    const tr = transpose(g, n, [0, 2, 3, 1]);
    const flat = reshape(g, tr, shapeVec(g, [unsq(g, b), unsq(g, g.op1('Mul', [hh, ww])), unsq(g, inner)]));
    tokens = g.scope('proj_in', () => linear(g, flat, channels, channels));
  }
  for (let d = 0; d < depth; d++) {
    const inTokens = tokens;
    tokens = g.scope(`transformer_blocks.${d}`, () => basicTransformerBlock(g, inTokens, channels, heads, ehs, cfg));
  }
  let out: string;
  if (!cfg.useLinearProjection) {
    const r = reshape(g, tokens, shapeVec(g, [unsq(g, b), unsq(g, hh), unsq(g, ww), unsq(g, inner)]));
    out = g.scope('proj_out', () => conv2d(g, transpose(g, r, [0, 3, 1, 2]), channels, channels, 1));
  } else {
    const p = g.scope('proj_out', () => linear(g, tokens, channels, channels));
    const r = reshape(g, p, shapeVec(g, [unsq(g, b), unsq(g, hh), unsq(g, ww), unsq(g, inner)]));
    out = transpose(g, r, [0, 3, 1, 2]);
  }
  return g.op1('Add', [out, x]);
}

function basicTransformerBlock(g: GraphBuilder, x: string, channels: number, heads: number, ehs: string, cfg: UNetConfig): string {
  const n1 = g.scope('norm1', () => layerNorm(g, x, channels, 1e-5));
  const a1 = g.scope('attn1', () => attention(g, n1, n1, channels, channels, heads, { bias: false, qkScale: 1, upcastSoftmax: false }));
  const h1 = g.op1('Add', [a1, x]);
  const n2 = g.scope('norm2', () => layerNorm(g, h1, channels, 1e-5));
  const a2 = g.scope('attn2', () => attention(g, n2, ehs, channels, cfg.crossAttentionDim, heads, { bias: false, qkScale: cfg.attn2QkScale, upcastSoftmax: false }));
  const h2 = g.op1('Add', [a2, h1]);
  const n3 = g.scope('norm3', () => layerNorm(g, h2, channels, 1e-5));
  const f = g.scope('ff', () => geglu(g, n3, channels));
  return g.op1('Add', [f, h2]);
}

/** FeedForward with GEGLU: proj → split (Slice with a dynamic half) → hidden · gelu(gate) → net.2. */
function geglu(g: GraphBuilder, x: string, channels: number): string {
  const innerFf = 4 * channels;
  const y = g.scope('net.0', () => {
    const p = g.scope('proj', () => linear(g, x, channels, 2 * innerFf));
    const last = g.op1('Gather', [g.op1('Shape', [p]), g.constI64([-1])], { axis: { i: 0 } });
    const half = g.op1('Div', [g.op1('Add', [last, g.constI64([1])]), g.constI64([2])]);
    const axes = g.constI64([-1]);
    const end1 = g.op1('Mul', [half, g.constI64([1])]);
    const hidden = g.op1('Slice', [p, g.constI64([0]), end1, axes]);
    const end2 = g.op1('Mul', [half, g.constI64([2])]);
    const gate = g.op1('Slice', [p, end1, end2, axes]);
    return g.op1('Mul', [hidden, geluErf(g, gate)]);
  });
  return g.scope('net.2', () => linear(g, y, innerFf, channels));
}

/**
 * diffusers Attention + AttnProcessor (torch 1.13 has no SDPA). Call inside `attn1`/`attn2` (or the VAE's
 * `attentions.0`). `xkv` is the key/value source (encoder_hidden_states for cross-attention).
 */
export function attention(g: GraphBuilder, xq: string, xkv: string, queryDim: number, kvDim: number, heads: number,
  opts: { bias: boolean; qkScale: number; upcastSoftmax: boolean; noRescale?: boolean }): string {
  const inner = queryDim;
  const headDim = inner / heads;
  if (!Number.isInteger(headDim)) throw new Error(`attention: ${inner} channels are not divisible by ${heads} heads`);
  const lin = (name: string, x: string, inF: number, scale?: number): string =>
    g.scope(name, () => linear(g, x, inF, inner, { bias: opts.bias, scale }));
  const q = lin('to_q', xq, queryDim, opts.qkScale !== 1 ? opts.qkScale : undefined);
  const k = lin('to_k', xkv, kvDim, opts.qkScale !== 1 ? opts.qkScale : undefined);
  const v = lin('to_v', xkv, kvDim);
  const q3 = headToBatch(g, q, heads);
  const k3 = headToBatch(g, k, heads);
  const v3 = headToBatch(g, v, heads);
  // baddbmm(empty, Q, Kᵀ, beta=0, alpha=scale): the empty tensor is a ConstantOfShape multiplied by beta = 0.
  const zeros = g.op1('ConstantOfShape', [shapeVec(g, [unsq(g, dim(g, q3, 0)), unsq(g, dim(g, q3, 1)), unsq(g, dim(g, k3, 1))])],
    { value: { t: f32One(0) } });
  const scores = g.op1('MatMul', [q3, transpose(g, k3, [0, 2, 1])]);
  const scaled = g.op1('Mul', [scores, g.scalarF32(Math.pow(headDim, -0.5))]);
  let logits = g.op1('Add', [scaled, g.op1('Mul', [zeros, g.scalarF32(0)])]);
  if (opts.upcastSoftmax) logits = cast(g, logits, DT.FLOAT);
  const probs = g.op1('Softmax', [logits], { axis: { i: -1 } });
  const o = g.op1('MatMul', [cast(g, probs, DT.FLOAT), v3]);
  const o3 = batchToHead(g, o, heads);
  const out = g.scope('to_out.0', () => linear(g, o3, inner, queryDim));
  // rescale_output_factor (1.0), kept as a Div like the export; the VAE applies it after its residual instead.
  return opts.noRescale ? out : g.op1('Div', [out, g.scalarF32(1)]);
}

/** (b, s, h·d) → (b·h, s, d) as `Attention.head_to_batch_dim` exports: dims from Shape/Gather, d = dim // heads. */
function headToBatch(g: GraphBuilder, x: string, heads: number): string {
  const b = dim(g, x, 0);
  const s = dim(g, x, 1);
  const c = dim(g, x, 2);
  const d = cast(g, cast(g, g.op1('Div', [c, g.scalarI64(heads)]), DT.INT64), DT.INT64);
  const r = reshape(g, x, shapeVec(g, [unsq(g, b), unsq(g, s), heads, unsq(g, d)]));
  const tr = transpose(g, r, [0, 2, 1, 3]);
  // torch folds b·1 away, so single-head attention (the VAE) has no Mul here.
  const bh = heads === 1 ? b : g.op1('Mul', [b, g.scalarI64(heads)]);
  return reshape(g, tr, shapeVec(g, [unsq(g, bh), unsq(g, s), unsq(g, d)]));
}

/** (b·h, s, d) → (b, s, h·d) as `Attention.batch_to_head_dim` exports. */
function batchToHead(g: GraphBuilder, x: string, heads: number): string {
  const bh = dim(g, x, 0);
  const s = dim(g, x, 1);
  const d = dim(g, x, 2);
  const b = cast(g, cast(g, g.op1('Div', [bh, g.scalarI64(heads)]), DT.INT64), DT.INT64);
  const r = reshape(g, x, shapeVec(g, [unsq(g, b), heads, unsq(g, s), unsq(g, d)]));
  const tr = transpose(g, r, [0, 2, 1, 3]);
  const hd = heads === 1 ? d : g.op1('Mul', [d, g.scalarI64(heads)]);
  return reshape(g, tr, shapeVec(g, [unsq(g, b), unsq(g, s), unsq(g, hd)]));
}

function f32One(v: number) {
  return tensorF32(Float32Array.of(v), [1]);
}
