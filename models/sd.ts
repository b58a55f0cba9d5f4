// Stable Diffusion 1.x ONNX pipeline folders with deterministic random weights, in the layout of diffusers'
// `convert_stable_diffusion_checkpoint_to_onnx.py` (see ../shared/reference/sd-tiny-v1/onnx):
//   model_index.json, text_encoder/model.onnx, unet/model.onnx + unet/weights.pb (every UNet initializer of at
//   least 1 KiB as external data), vae_decoder/model.onnx, tokenizer/*, scheduler/scheduler_config.json.
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto } from 'onnx-buf';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DT, GraphBuilder } from './lib/graph-builder.js';
import { hashString } from './lib/rng.js';
import { clipTextTransformer, type ClipTextConfig } from './lib/clip-text.js';
import { buildUNet, crossAttnDownFlags, type UNetConfig } from './sd/unet.js';
import { buildVaeDecoder, type VaeDecoderConfig } from './sd/vae.js';
import { tinyTokenizer, writeTokenizerFiles, type BpeTokenizer } from './tokenizer.js';

export type { UNetConfig } from './sd/unet.js';
export type { VaeDecoderConfig } from './sd/vae.js';

export interface SdTextEncoderConfig extends Omit<ClipTextConfig, 'vocabSize' | 'eosTokenId'> {
  /** `input_ids` element type: int32 as diffusers' script exports it ("until the CLIP fix is released"), or int64. */
  inputIdsType: 'int32' | 'int64';
}

export interface SdPipelineConfig {
  seed: number;
  unet: UNetConfig;
  textEncoder: SdTextEncoderConfig;
  vae: VaeDecoderConfig;
  /** Also write `scheduler_ddim/scheduler_config.json` (the reference keeps a DDIM variant beside the folder). */
  ddimScheduler: boolean;
}

/** Tiny SD 1.x (the reference sd-tiny-v1 architecture): 64×64 latents, attention at 64, 32, 16 and 8. */
export function sdTinyConfig(seed = 0): SdPipelineConfig {
  return {
    seed,
    unet: {
      inChannels: 4, outChannels: 4, sampleSize: 64, blockOutChannels: [32, 64, 64, 64], layersPerBlock: 2, normGroups: 16,
      normEps: 1e-5, crossAttentionDim: 32, attentionHeadDim: 8, useLinearProjection: false, timestepType: 'float32', attn2QkScale: 2.5,
    },
    textEncoder: {
      hidden: 32, intermediate: 64, layers: 2, heads: 4, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
    },
    vae: { latentChannels: 4, outChannels: 3, blockOutChannels: [32, 64, 64, 64], layersPerBlock: 1, normGroups: 16, scalingFactor: 0.18215 },
    ddimScheduler: true,
  };
}

/** Full SD 1.5 widths (860 M UNet parameters, 3.4 GB of weights): for benchmarks only. */
export function sd15Config(seed = 0): SdPipelineConfig {
  return {
    seed,
    unet: {
      inChannels: 4, outChannels: 4, sampleSize: 64, blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2, normGroups: 32,
      normEps: 1e-5, crossAttentionDim: 768, attentionHeadDim: 8, useLinearProjection: false, timestepType: 'float32', attn2QkScale: 1,
    },
    textEncoder: {
      hidden: 768, intermediate: 3072, layers: 12, heads: 12, maxPositions: 77, layerNormEps: 1e-5, initializerFactor: 1, inputIdsType: 'int32',
    },
    vae: { latentChannels: 4, outChannels: 3, blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, normGroups: 32, scalingFactor: 0.18215 },
    ddimScheduler: true,
  };
}

export interface SdBuildResult {
  dir: string;
  vocabSize: number;
  parameterCounts: { textEncoder: number; unet: number; vae: number };
}

/** Per-component seed, so that changing one component's config never changes another's weights. */
export function componentSeed(seed: number, component: string): number {
  return hashString(component, seed >>> 0);
}

/** Writes a complete pipeline folder into `outDir` (created if needed). */
export function buildSdPipeline(outDir: string, config: SdPipelineConfig, tokenizer: BpeTokenizer = tinyTokenizer()): SdBuildResult {
  mkdirSync(outDir, { recursive: true });
  const u = config.unet;
  if (config.textEncoder.hidden !== u.crossAttentionDim) {
    throw new Error(`text encoder hidden size ${config.textEncoder.hidden} must equal the UNet cross_attention_dim ${u.crossAttentionDim}`);
  }

  writeTokenizerFiles(join(outDir, 'tokenizer'), tokenizer);

  // text encoder
  const te = new GraphBuilder({ seed: componentSeed(config.seed, 'text_encoder') });
  const ids = te.input('input_ids', config.textEncoder.inputIdsType === 'int64' ? DT.INT64 : DT.INT32, ['batch', 'sequence']);
  clipTextTransformer(te, { ...config.textEncoder, vocabSize: tokenizer.vocab.size, eosTokenId: tokenizer.eosId }, ids,
    { lastHiddenName: 'last_hidden_state', pooledName: 'pooler_output' });
  te.output('last_hidden_state', DT.FLOAT, ['batch', 'sequence', config.textEncoder.hidden]);
  te.output('pooler_output', DT.FLOAT, ['batch', config.textEncoder.hidden]);
  const teParams = te.parameterCount;
  writeModel(join(outDir, 'text_encoder', 'model.onnx'), te.finish());

  // UNet: weights streamed into weights.pb while the graph is built.
  const unetDir = join(outDir, 'unet');
  const un = new GraphBuilder({ seed: componentSeed(config.seed, 'unet'), external: { dir: unetDir, fileName: 'weights.pb', minBytes: 1024 } });
  buildUNet(un, u);
  const unetParams = un.parameterCount;
  writeModel(join(unetDir, 'model.onnx'), un.finish());

  // VAE decoder
  const va = new GraphBuilder({ seed: componentSeed(config.seed, 'vae') });
  buildVaeDecoder(va, config.vae);
  const vaeParams = va.parameterCount;
  writeModel(join(outDir, 'vae_decoder', 'model.onnx'), va.finish());

  writeJson(join(outDir, 'model_index.json'), {
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: '0.21.4',
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', 'PNDMScheduler'],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: [null, null],
  });
  writeJson(join(outDir, 'scheduler', 'scheduler_config.json'), pndmSchedulerConfig());
  if (config.ddimScheduler) writeJson(join(outDir, 'scheduler_ddim', 'scheduler_config.json'), ddimSchedulerConfig());
  // Not part of diffusers' ONNX layout, but handy for loaders that want the architecture without parsing graphs.
  writeJson(join(outDir, 'heed_build.json'), {
    builder: 'heed/models/sd.ts',
    seed: config.seed,
    vocab_size: tokenizer.vocab.size,
    unet_config: unetConfigJson(u),
    text_config: config.textEncoder,
    vae_config: config.vae,
    parameter_counts: { text_encoder: teParams, unet: unetParams, vae: vaeParams },
  });
  return { dir: outDir, vocabSize: tokenizer.vocab.size, parameterCounts: { textEncoder: teParams, unet: unetParams, vae: vaeParams } };
}

/** SD 1.5's scheduler: PNDM, scaled_linear betas 0.00085..0.012, skip_prk_steps, steps_offset 1, epsilon, leading. */
export function pndmSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'PNDMScheduler', _diffusers_version: '0.21.4', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
    num_train_timesteps: 1000, prediction_type: 'epsilon', set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1,
    timestep_spacing: 'leading', trained_betas: null,
  };
}

export function ddimSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'DDIMScheduler', _diffusers_version: '0.21.4', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
    clip_sample: false, clip_sample_range: 1.0, dynamic_thresholding_ratio: 0.995, num_train_timesteps: 1000, prediction_type: 'epsilon',
    rescale_betas_zero_snr: false, sample_max_value: 1.0, set_alpha_to_one: false, steps_offset: 1, thresholding: false,
    timestep_spacing: 'leading', trained_betas: null,
  };
}

/** diffusers' config.json keys for the UNet architecture. */
export function unetConfigJson(u: UNetConfig): Record<string, unknown> {
  const cross = crossAttnDownFlags(u);
  const down = cross.map((c) => (c ? 'CrossAttnDownBlock2D' : 'DownBlock2D'));
  return {
    sample_size: u.sampleSize, in_channels: u.inChannels, out_channels: u.outChannels, flip_sin_to_cos: true, freq_shift: 0,
    down_block_types: down,
    mid_block_type: 'UNetMidBlock2DCrossAttn',
    up_block_types: [...cross].reverse().map((c) => (c ? 'CrossAttnUpBlock2D' : 'UpBlock2D')),
    ...(u.transformerLayers ? { transformer_layers_per_block: u.transformerLayers } : {}),
    ...(u.addition ? {
      addition_embed_type: 'text_time', addition_time_embed_dim: u.addition.timeEmbedDim,
      projection_class_embeddings_input_dim: u.addition.textEmbedDim + u.addition.timeIds * u.addition.timeEmbedDim,
    } : {}),
    block_out_channels: u.blockOutChannels, layers_per_block: u.layersPerBlock, norm_num_groups: u.normGroups, norm_eps: u.normEps,
    cross_attention_dim: u.crossAttentionDim, attention_head_dim: u.attentionHeadDim, use_linear_projection: u.useLinearProjection,
    timestep_type: u.timestepType, attn2_qk_weight_scale: u.attn2QkScale,
  };
}

export function writeModel(path: string, model: ModelProto): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, toBinary(ModelProtoSchema, model));
}

export function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n');
}
