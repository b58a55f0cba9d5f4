// Stable Diffusion XL ONNX pipeline folders with deterministic random weights, in Optimum's SDXL export layout and
// names (see test/fixtures/sdxl/README.md, a real export made with diffusers' own classes):
//   model_index.json (StableDiffusionXLPipeline, force_zeros_for_empty_prompt), text_encoder/ (CLIPTextModel:
//   last_hidden_state, pooler_output, hidden_states.0..N), text_encoder_2/ (CLIPTextModelWithProjection:
//   text_embeds, last_hidden_state, hidden_states.0..N), tokenizer/ (pads with <|endoftext|>), tokenizer_2/ (pads
//   with "!"), unet/model.onnx + model.onnx_data (inputs sample, timestep int64, encoder_hidden_states, text_embeds,
//   time_ids), vae_decoder/ (+ config.json: scaling_factor 0.13025, force_upcast), scheduler/ (Euler, leading).
import { join } from 'node:path';
import { DT, GraphBuilder } from './lib/graph-builder.js';
import { clipTextTransformer } from './lib/clip-text.js';
import { linear } from './lib/layers.js';
import { buildUNet, type UNetConfig } from './sd/unet.js';
import { buildVaeDecoder, type VaeDecoderConfig } from './sd/vae.js';
import { componentSeed, unetConfigJson, writeJson, writeModel, type SdTextEncoderConfig } from './sd.js';
import { EOT, tinyTokenizer, writeTokenizerFiles, type BpeTokenizer } from './tokenizer.js';

export interface SdxlTextEncoder2Config extends SdTextEncoderConfig {
  /** text_projection output size (SDXL: 1280). */
  projectionDim: number;
}

export interface SdxlPipelineConfig {
  seed: number;
  unet: UNetConfig & Required<Pick<UNetConfig, 'addition' | 'crossAttnDown' | 'transformerLayers'>>;
  textEncoder: SdTextEncoderConfig;
  textEncoder2: SdxlTextEncoder2Config;
  vae: VaeDecoderConfig;
}

/**
 * Tiny SDXL, the architecture of test/fixtures/sdxl/tiny: no attention at full latent resolution, cross-attention at
 * 1/2 (1 transformer layer) and 1/4 (2 layers, also the mid block), linear projections, text_time added embedding.
 */
export function sdxlTinyConfig(seed = 0): SdxlPipelineConfig {
  return {
    seed,
    unet: {
      inChannels: 4, outChannels: 4, sampleSize: 16, blockOutChannels: [8, 16, 16], layersPerBlock: 1, normGroups: 8, normEps: 1e-5,
      crossAttentionDim: 32 + 40, attentionHeadDim: [2, 2, 2], useLinearProjection: true, timestepType: 'int64', attn2QkScale: 2.5,
      crossAttnDown: [false, true, true], transformerLayers: [1, 1, 2], addition: { timeEmbedDim: 8, textEmbedDim: 24, timeIds: 6 },
    },
    textEncoder: {
      hidden: 32, intermediate: 48, layers: 2, heads: 4, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
      activation: 'quick_gelu',
    },
    textEncoder2: {
      hidden: 40, intermediate: 48, layers: 3, heads: 4, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
      activation: 'gelu', projectionDim: 24,
    },
    vae: { latentChannels: 4, outChannels: 3, blockOutChannels: [8, 8, 8, 8], layersPerBlock: 1, normGroups: 8, scalingFactor: 0.13025 },
  };
}

/**
 * SDXL base's widths (block channels 320/640/1280, 5/10/20 heads of 64, cross_attention_dim 2048 = 768 + 1280, pooled
 * projection 1280, add_time embedding 256 × 6) with reduced depth, for benchmarks: transformer layers (1, 2, 2) instead of
 * (1, 2, 10) and 2-layer text encoders (SDXL: 12 and 32). SDXL base's UNet has 2.6 B parameters; this one ≈ 0.9 B.
 */
export function sdxlWideConfig(seed = 0): SdxlPipelineConfig {
  return {
    seed,
    unet: {
      inChannels: 4, outChannels: 4, sampleSize: 128, blockOutChannels: [320, 640, 1280], layersPerBlock: 2, normGroups: 32, normEps: 1e-5,
      crossAttentionDim: 2048, attentionHeadDim: [5, 10, 20], useLinearProjection: true, timestepType: 'int64', attn2QkScale: 1,
      crossAttnDown: [false, true, true], transformerLayers: [1, 2, 2], addition: { timeEmbedDim: 256, textEmbedDim: 1280, timeIds: 6 },
    },
    textEncoder: {
      hidden: 768, intermediate: 3072, layers: 2, heads: 12, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
      activation: 'quick_gelu',
    },
    textEncoder2: {
      hidden: 1280, intermediate: 5120, layers: 2, heads: 20, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
      activation: 'gelu', projectionDim: 1280,
    },
    vae: { latentChannels: 4, outChannels: 3, blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, normGroups: 32, scalingFactor: 0.13025 },
  };
}

/** stabilityai/stable-diffusion-xl-base-1.0's scheduler config (EulerDiscreteScheduler, leading spacing). */
export function sdxlSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'EulerDiscreteScheduler', _diffusers_version: '0.21.4', beta_end: 0.012, beta_schedule: 'scaled_linear',
    beta_start: 0.00085, interpolation_type: 'linear', num_train_timesteps: 1000, prediction_type: 'epsilon', steps_offset: 1,
    timestep_spacing: 'leading', trained_betas: null, use_karras_sigmas: false,
  };
}

export interface SdxlBuildResult {
  dir: string;
  vocabSize: number;
  parameterCounts: { textEncoder: number; textEncoder2: number; unet: number; vae: number };
}

function textEncoder(path: string, seed: number, cfg: SdTextEncoderConfig, tok: BpeTokenizer, projectionDim?: number): number {
  const g = new GraphBuilder({ seed });
  const ids = g.input('input_ids', cfg.inputIdsType === 'int64' ? DT.INT64 : DT.INT32, ['batch_size', 'sequence_length']);
  const out = clipTextTransformer(g, { ...cfg, vocabSize: tok.vocab.size, eosTokenId: tok.eosId }, ids,
    { lastHiddenName: 'last_hidden_state', ...(projectionDim === undefined ? { pooledName: 'pooler_output' } : {}) });
  if (projectionDim !== undefined) {
    // CLIPTextModelWithProjection: text_projection (Linear, no bias) on the pooled output.
    const std = Math.pow(cfg.hidden, -0.5) * cfg.initializerFactor;
    const p = g.scope('text_projection', () => linear(g, out.pooled, cfg.hidden, projectionDim, { bias: false, weightInit: { kind: 'normal', std } }));
    g.op1('Identity', [p], {}, 'text_embeds');
    g.output('text_embeds', DT.FLOAT, ['batch_size', projectionDim]);
  } else {
    g.output('pooler_output', DT.FLOAT, ['batch_size', cfg.hidden]);
  }
  g.output('last_hidden_state', DT.FLOAT, ['batch_size', 'sequence_length', cfg.hidden]);
  out.hiddenStates.forEach((h, i) => {
    g.op1('Identity', [h], {}, `hidden_states.${i}`);
    g.output(`hidden_states.${i}`, DT.FLOAT, ['batch_size', 'sequence_length', cfg.hidden]);
  });
  const params = g.parameterCount;
  writeModel(path, g.finish());
  return params;
}

/** Writes a complete SDXL pipeline folder into `outDir`. */
export function buildSdxlPipeline(outDir: string, config: SdxlPipelineConfig, tokenizer: BpeTokenizer = tinyTokenizer()): SdxlBuildResult {
  const u = config.unet;
  if (config.textEncoder.hidden + config.textEncoder2.hidden !== u.crossAttentionDim) {
    throw new Error(`text encoder hidden sizes ${config.textEncoder.hidden} + ${config.textEncoder2.hidden} must add up to the UNet ` +
      `cross_attention_dim ${u.crossAttentionDim} (SDXL concatenates both encoders' hidden states)`);
  }
  if (config.textEncoder2.projectionDim !== u.addition.textEmbedDim) {
    throw new Error(`text_encoder_2 projection ${config.textEncoder2.projectionDim} must equal the UNet's text_embeds size ${u.addition.textEmbedDim}`);
  }
  writeTokenizerFiles(join(outDir, 'tokenizer'), tokenizer, 77, EOT);
  writeTokenizerFiles(join(outDir, 'tokenizer_2'), tokenizer, 77, '!');
  const te1 = textEncoder(join(outDir, 'text_encoder', 'model.onnx'), componentSeed(config.seed, 'text_encoder'), config.textEncoder, tokenizer);
  const te2 = textEncoder(join(outDir, 'text_encoder_2', 'model.onnx'), componentSeed(config.seed, 'text_encoder_2'), config.textEncoder2,
    tokenizer, config.textEncoder2.projectionDim);

  const unetDir = join(outDir, 'unet');
  const un = new GraphBuilder({ seed: componentSeed(config.seed, 'unet'), external: { dir: unetDir, fileName: 'model.onnx_data', minBytes: 1024 } });
  buildUNet(un, u);
  const unetParams = un.parameterCount;
  writeModel(join(unetDir, 'model.onnx'), un.finish());
  writeJson(join(unetDir, 'config.json'), { _class_name: 'UNet2DConditionModel', _diffusers_version: '0.21.4', ...unetConfigJson(u) });

  const va = new GraphBuilder({ seed: componentSeed(config.seed, 'vae') });
  buildVaeDecoder(va, config.vae);
  const vaeParams = va.parameterCount;
  writeModel(join(outDir, 'vae_decoder', 'model.onnx'), va.finish());
  writeJson(join(outDir, 'vae_decoder', 'config.json'), {
    _class_name: 'AutoencoderKL', _diffusers_version: '0.21.4', block_out_channels: config.vae.blockOutChannels,
    latent_channels: config.vae.latentChannels, layers_per_block: config.vae.layersPerBlock, norm_num_groups: config.vae.normGroups,
    out_channels: config.vae.outChannels, scaling_factor: config.vae.scalingFactor, force_upcast: true,
  });

  writeJson(join(outDir, 'model_index.json'), {
    _class_name: 'StableDiffusionXLPipeline', _diffusers_version: '0.21.4', force_zeros_for_empty_prompt: true,
    scheduler: ['diffusers', 'EulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], tokenizer: ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
  });
  writeJson(join(outDir, 'scheduler', 'scheduler_config.json'), sdxlSchedulerConfig());
  writeJson(join(outDir, 'heed_build.json'), {
    builder: 'heed/models/sdxl.ts', seed: config.seed, vocab_size: tokenizer.vocab.size,
    parameter_counts: { text_encoder: te1, text_encoder_2: te2, unet: unetParams, vae: vaeParams },
  });
  return { dir: outDir, vocabSize: tokenizer.vocab.size, parameterCounts: { textEncoder: te1, textEncoder2: te2, unet: unetParams, vae: vaeParams } };
}
