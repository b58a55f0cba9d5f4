// Stable Diffusion XL's conditioning, as diffusers' StableDiffusionXLPipeline (v0.21.4) builds it:
//  - encode_prompt: each tokenizer pads to its own max length with its own pad token (tokenizer: <|endoftext|>,
//    tokenizer_2: "!"); each encoder contributes hidden_states[-2] (the penultimate layer, before the final layer norm),
//    concatenated along the feature axis; the pooled embedding is the second encoder's projection (`text_embeds`);
//  - no negative prompt and force_zeros_for_empty_prompt: the negative embeddings and pooled embeddings are zeros;
//  - add_time_ids = original_size + crops_coords_top_left + target_size, the same for both CFG branches;
//  - rescale_noise_cfg (guidance_rescale, arXiv 2305.08891 §3.4).
import type { ClipTokenizer, TokenizedPrompt } from '../text/tokenizer.js';
import { ModelInputError, type TextEncoder } from './text-encoder.js';
import type { UnetIO } from './unet.js';
import { HeedError } from '../errors.js';

export interface SdxlTextModels {
  tokenizer: ClipTokenizer;
  tokenizer2: ClipTokenizer;
  textEncoder: TextEncoder;
  textEncoder2: TextEncoder;
  forceZerosForEmptyPrompt: boolean;
}

export interface SdxlEncoded {
  /** Tokenised by the first tokenizer: its positions are the ones maps and A&E use. */
  prompt: TokenizedPrompt;
  negative: TokenizedPrompt;
  /** [1, seq, hidden1 + hidden2] each. */
  uncond: Float32Array;
  cond: Float32Array;
  dims: [number, number, number];
  pooled: { uncond: Float32Array; cond: Float32Array; dim: number };
  /** True when the negative branch is zeros (no negative prompt and force_zeros_for_empty_prompt). */
  zeroNegative: boolean;
}

/** Encodes [negative, prompt] with both encoders. `negativePrompt` undefined is diffusers' `negative_prompt=None`. */
export async function encodeSdxlPrompts(m: SdxlTextModels, prompt: string, negativePrompt: string | undefined): Promise<SdxlEncoded> {
  const seq = m.textEncoder.fixedSequenceLength ?? m.tokenizer.maxLength;
  const seq2 = m.textEncoder2.fixedSequenceLength ?? m.tokenizer2.maxLength;
  if (seq !== seq2) {
    throw new ModelInputError(`the SDXL text encoders take ${seq} and ${seq2} tokens; their hidden states are concatenated per ` +
      'token, so both must take the same length (77 for SDXL)');
  }
  const zeroNegative = negativePrompt === undefined && m.forceZerosForEmptyPrompt;
  const neg = negativePrompt ?? '';
  const p1 = m.tokenizer.encode(prompt, { maxLength: seq });
  const p2 = m.tokenizer2.encode(prompt, { maxLength: seq });
  // diffusers tokenizes the negative prompt with max_length = prompt_embeds.shape[1] (the same 77).
  const n1 = m.tokenizer.encode(neg, { maxLength: seq });
  const n2 = m.tokenizer2.encode(neg, { maxLength: seq });
  const rows1 = zeroNegative ? [p1.ids] : [n1.ids, p1.ids];
  const rows2 = zeroNegative ? [p2.ids] : [n2.ids, p2.ids];
  const e1 = await m.textEncoder.encodeHiddenAndPooled(rows1);
  const e2 = await m.textEncoder2.encodeHiddenAndPooled(rows2);
  const h1 = e1.hidden.dims[2];
  const h2 = e2.hidden.dims[2];
  const hidden = h1 + h2;
  const row = (k: number): Float32Array => {
    const out = new Float32Array(seq * hidden);
    for (let s = 0; s < seq; s++) {
      out.set(e1.hidden.data.subarray((k * seq + s) * h1, (k * seq + s + 1) * h1), s * hidden);
      out.set(e2.hidden.data.subarray((k * seq + s) * h2, (k * seq + s + 1) * h2), s * hidden + h1);
    }
    return out;
  };
  const dim = e2.pooled.dims[1];
  const condRow = zeroNegative ? 0 : 1;
  const cond = row(condRow);
  const pooledCond = e2.pooled.data.slice(condRow * dim, (condRow + 1) * dim);
  return {
    prompt: p1, negative: n1, cond, dims: [1, seq, hidden],
    uncond: zeroNegative ? new Float32Array(seq * hidden) : row(0),
    pooled: { cond: pooledCond, uncond: zeroNegative ? new Float32Array(dim) : e2.pooled.data.slice(0, dim), dim },
    zeroNegative,
  };
}

/** SDXL's micro-conditioning, in pixels, (height, width) / (top, left) order as diffusers takes them. */
export interface SdxlSizeConditioning {
  originalSize: [number, number];
  cropsCoordsTopLeft: [number, number];
  targetSize: [number, number];
}

/** A size-conditioning value that cannot be used. */
export class SdxlConditioningError extends HeedError {
  constructor(message: string, field = 'sdxl') {
    super('invalid_input', message, { field });
    this.name = 'SdxlConditioningError';
  }
}

/**
 * add_time_ids = original_size + crops_coords_top_left + target_size (defaults (h, w), (0, 0), (h, w)), checked against
 * the UNet's inputs the way diffusers checks addition_time_embed_dim · 6 + projection_dim against the add embedding.
 */
export function sdxlTimeIds(io: UnetIO, pooledDim: number, c: { height: number; width: number } & Partial<SdxlSizeConditioning>): Float32Array {
  const { textEmbeds, timeIds } = io;
  if (!textEmbeds || !timeIds) throw new ModelInputError('sdxlTimeIds: the UNet takes no added conditioning (not an SDXL UNet)');
  const idsDim = timeIds.shape[1];
  if (idsDim !== 6) {
    throw new ModelInputError(`the UNet's time_ids take ${idsDim} values; SDXL base takes 6 (original size, crop, target size)` +
      (idsDim === 5 ? ' — 5 is the SDXL refiner\'s (original size, crop, aesthetic score), an image-to-image model Heed does not run' : ''));
  }
  if (textEmbeds.shape[1] !== pooledDim) {
    throw new ModelInputError(`the UNet's text_embeds take ${String(textEmbeds.shape[1])} values but text_encoder_2's pooled projection ` +
      `has ${pooledDim}: text_encoder_2 and the UNet do not belong together`);
  }
  const original = c.originalSize ?? [c.height, c.width];
  const crop = c.cropsCoordsTopLeft ?? [0, 0];
  const target = c.targetSize ?? [c.height, c.width];
  const values = [...original, ...crop, ...target];
  for (const [name, v] of [['originalSize', original], ['cropsCoordsTopLeft', crop], ['targetSize', target]] as const) {
    if (v.length !== 2 || v.some((x) => !Number.isInteger(x) || x < 0 || x > 65536)) {
      throw new SdxlConditioningError(`${name} must be two non-negative integers (height, width / top, left); got ${JSON.stringify(v)}`, `sdxl.${name}`);
    }
  }
  return Float32Array.from(values);
}

/**
 * diffusers' rescale_noise_cfg for one sample: std (unbiased, over all values) of the text branch and of the guided
 * prediction; out = φ·guided·(std_text/std_cfg) + (1 − φ)·guided, in float32 like torch.
 */
export function rescaleNoiseCfg(guided: Float32Array, text: Float32Array, phi: number): Float32Array {
  const std = (x: Float32Array): number => {
    let mean = 0;
    for (let i = 0; i < x.length; i++) mean += x[i];
    mean /= x.length;
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += (x[i] - mean) ** 2;
    return Math.fround(Math.sqrt(ss / (x.length - 1)));
  };
  const ratio = Math.fround(std(text) / std(guided));
  const a = Math.fround(phi);
  const b = Math.fround(1 - phi);
  const out = new Float32Array(guided.length);
  for (let i = 0; i < out.length; i++) {
    const rescaled = Math.fround(guided[i] * ratio);
    out[i] = Math.fround(Math.fround(a * rescaled) + Math.fround(b * guided[i]));
  }
  return out;
}
