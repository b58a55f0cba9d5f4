// Text-to-image generation with an SD 1.x/2.x or SDXL ONNX folder, following diffusers' StableDiffusionPipeline /
// StableDiffusionXLPipeline step by step (so that the same latents, prompt and scheduler give the same numbers): encode
// [negative, prompt]; scale the initial latents by init_noise_sigma; per timestep run the UNet on [uncond, cond]
// (classifier-free guidance when guidance > 1), combine uncond + g·(cond − uncond) (SDXL: then the optional guidance
// rescale), scheduler step; decode latents / scaling_factor. SDXL's text conditioning is in sdxl-conditioning.ts.
//
// Attention maps ride along: the UNet session exposes the cross-attention probabilities the requested maps need,
// and an AttentionStore folds each call's conditional half into running aggregates (DAAM, per-step, per-layer).
// Attend-and-Excite plugs in through `beforeStep` (it may replace the latents before each step) and
// `unetWithAttention` (a batch-1, conditional-only UNet pass that returns attention probabilities).
import { performance } from 'node:perf_hooks';
import { ClipTokenizer, type TokenizedPrompt } from '../text/tokenizer.js';
import { resolveModelFolder, type JsonObject, type ModelFolder } from './folder.js';
import { ModelInputError, TextEncoder } from './text-encoder.js';
import { Unet, type AddedConditioning, type CfgBatching, type AttentionOutput, type UnetOutput } from './unet.js';
import { encodeSdxlPrompts, rescaleNoiseCfg, sdxlTimeIds, type SdxlSizeConditioning } from './sdxl-conditioning.js';
import { VaeDecoder, type FloatImage } from './vae.js';
import { latentShape, loadLatents, seededLatents, validateLatentData, LatentsError, type LatentShape } from './latents.js';
import { TorchGenerator } from './random.js';
import { createScheduler, schedulerNames, SchedulerConfigError, type Scheduler } from './schedulers/index.js';
import type { SessionOptions } from '../onnx/session.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import type { AttentionSite } from '../attention/discover.js';
import { AttentionStore } from '../attention/store.js';
import { siteGrid } from '../attention/aggregate.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

export { schedulerNames, SchedulerConfigError };

/** Thrown when a generation is cancelled through its AbortSignal (checked between steps). */
export class CancelledError extends HeedError {
  constructor(readonly step: number, readonly total: number) {
    super('cancelled', `generation cancelled before step ${step + 1} of ${total}`);
    this.name = 'CancelledError';
  }
}

/** Maps were asked for but this UNet's attention cannot be collected (generation works without maps). */
export class AttentionMapsError extends HeedError {
  constructor(message: string, field: string | undefined = 'maps', kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'AttentionMapsError';
  }
}

/** A generate option out of range; the field names it. */
export class GenerationOptionsError extends HeedError {
  constructor(message: string, field?: string, kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'GenerationOptionsError';
  }
}

export interface MapsOptions {
  /** DAAM global/word heat maps (default true). */
  daam?: boolean;
  /**
   * Grid heights at which to keep, per UNet call, the head/layer mean of the conditional cross-attention
   * (default: the Attend-and-Excite grid, 16 as diffusers' attn_res, or the nearest the UNet has at this size).
   */
  perStepResolutions?: number[];
  /** Grid heights at which to keep per-layer maps (default none); 'all': every cross-attention layer. */
  perLayerResolutions?: number[] | 'all';
  /** DAAM's own fixed output grid (64 or 96; see AttentionStoreOptions.daamGrid). Default: the latent size. */
  daamGrid?: number;
}

export interface StepInfo {
  /** 0-based index of the UNet call (= scheduler step). */
  step: number;
  total: number;
  timestep: number;
  stepMs: number;
  elapsedMs: number;
  /** Latents after this step (a live buffer: copy it to keep it). */
  latents: Float32Array;
  latentShape: LatentShape;
  /** The scheduler's x0 estimate at this step, when it computes one (a sharper preview than `latents`). */
  predOriginal: Float32Array | null;
}

export interface BeforeStepContext {
  step: number;
  total: number;
  timestep: number;
  /** Latents entering this step (a copy the hook may modify or replace). */
  latents: Float32Array;
  latentShape: LatentShape;
  /** Conditional text embeddings [1, seq, hidden]. */
  cond: Float32Array;
  embeddingDims: [number, number, number];
  /** SDXL: the conditional row of the added conditioning (pooled embedding, time ids); absent for SD 1.x/2.x. */
  added?: AddedConditioning;
  pipeline: StableDiffusionPipeline;
  signal?: AbortSignal;
}

/** Runs before each step; returns replacement latents (same shape) or nothing to keep them. */
export type BeforeStepHook = (ctx: BeforeStepContext) => Float32Array | void | Promise<Float32Array | void>;

export interface GenerateOptions {
  prompt: string;
  /**
   * Negative prompt: the unconditional branch of CFG. Absent: "" for SD 1.x/2.x; for SDXL folders whose
   * model_index says force_zeros_for_empty_prompt (the SDXL base does), zero embeddings, as diffusers does when
   * negative_prompt is None. An explicit "" is encoded.
   */
  negativePrompt?: string;
  /** SDXL: guidance rescale φ (diffusers' guidance_rescale, default 0 = off; 0.7 in the paper it comes from). */
  guidanceRescale?: number;
  /** SDXL micro-conditioning (diffusers' original_size, crops_coords_top_left, target_size); default (h, w), (0, 0), (h, w). */
  sdxl?: Partial<SdxlSizeConditioning>;
  /** Inference steps (default 50). */
  steps?: number;
  /** Guidance scale (default 7.5); CFG runs when > 1, as in diffusers. */
  guidance?: number;
  /** Scheduler name (see schedulerNames()); default: the folder's scheduler class. */
  scheduler?: string;
  /** DDIM's eta (default 0). */
  eta?: number;
  /** Replaces the folder's scheduler_config.json (e.g. another scheduler's saved config). */
  schedulerConfig?: JsonObject;
  /** Image size in pixels (multiples of 8; default the UNet's sample_size × 8, or 512). */
  width?: number;
  height?: number;
  /** Seed of the torch-compatible generator for the initial latents (and per-step noise of stochastic samplers). */
  seed?: number;
  /** Initial latents [1, C, h/8, w/8]: data or a .npy path. Takes precedence over the seed for the latents. */
  latents?: Float32Array | string;
  /** Attention maps to collect (false or absent: none). */
  maps?: MapsOptions | boolean;
  signal?: AbortSignal;
  onStep?: (info: StepInfo) => void | Promise<void>;
  beforeStep?: BeforeStepHook;
  /** Keep the noise predictions of the first N calls (default 2; the trace needs them). */
  keepNoisePredictions?: number;
}

export interface NoisePrediction {
  step: number;
  timestep: number;
  cond: Float32Array;
  uncond: Float32Array | null;
  guided: Float32Array;
}

export interface GenerateResult {
  image: FloatImage;
  /** Final latents [1, C, h, w] (before the VAE scaling). */
  latents: Float32Array;
  /** Initial latents as drawn or loaded, before init_noise_sigma scaling. */
  initLatents: Float32Array;
  latentShape: LatentShape;
  seed: number | null;
  promptText: string;
  negativePromptText: string;
  prompt: TokenizedPrompt;
  negativePrompt: TokenizedPrompt;
  /** [uncond; cond] text embeddings, each [1, seq, hidden]. */
  textEmbeddings: { uncond: Float32Array; cond: Float32Array; dims: [number, number, number] };
  /** SDXL only: the added conditioning of each branch (pooled embeddings [1, d], time ids [1, 6]). */
  added: { uncond: AddedConditioning; cond: AddedConditioning } | null;
  timesteps: number[];
  noisePredictions: NoisePrediction[];
  /** The store with the collected maps, or null when maps were not requested. */
  attention: AttentionStore | null;
  /** Sites whose probabilities were captured. */
  attentionSites: AttentionSite[];
  /** Grid height of the Attend-and-Excite map (defaultAttentionGrid: 16, or the nearest the UNet has). */
  aeResolution: number;
  settings: { steps: number; guidance: number; scheduler: string; width: number; height: number; predictionType: string; cfg: boolean;
    guidanceRescale: number; architecture: 'sd' | 'sdxl';
    /** SDXL: add_time_ids (original size, crop top-left, target size; (h, w) and (top, left)). */
    timeIds?: number[] };
  /** prepareMs: opening the UNet session (first generation, or when the exposed attention sites change). */
  timings: { encodeMs: number; prepareMs: number; denoiseMs: number; stepMs: number[]; decodeMs: number; totalMs: number };
  warnings: string[];
}

export interface PipelineLoadOptions {
  /** Threads per ORT op (default DEFAULT_THREADS). */
  threads?: number;
  /** Extra ORT session options for all three models. */
  session?: SessionOptions;
  /** How a CFG batch runs (default 'auto': two batch-1 calls where the UNet has a 4096-query attention, to halve the activation peak). */
  cfgBatching?: CfgBatching;
}

function positiveInt(v: number, name: string, hint: string): number {
  if (!Number.isInteger(v) || v < 1) throw new GenerationOptionsError(`${name} must be a positive integer (got ${v}); ${hint}`, name);
  return v;
}

/** fl(fl(u + g·fl(c − u))): CFG as torch evaluates it in float32. */
function guide(uncond: Float32Array, cond: Float32Array, g: number): Float32Array {
  const out = new Float32Array(cond.length);
  const gf = Math.fround(g);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(uncond[i] + Math.fround(gf * Math.fround(cond[i] - uncond[i])));
  return out;
}

/** diffusers' StableDiffusionAttendAndExcitePipeline default `attn_res=(16, 16)`: the grid A&E reads at any size. */
export const DIFFUSERS_AE_GRID = 16;

export class StableDiffusionPipeline {
  private constructor(
    readonly folder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: TextEncoder,
    readonly unet: Unet,
    readonly vae: VaeDecoder,
    /** SDXL's second tokenizer and text encoder (null for SD 1.x/2.x). Token positions (maps, A&E) use the first. */
    readonly tokenizer2: ClipTokenizer | null,
    readonly textEncoder2: TextEncoder | null,
    /** Session options of its sessions (threads, device); sessions opened later for this pipeline (A&E's gradient) use
     *  the same. */
    readonly sessionOptions: SessionOptions,
  ) {}

  /** ORT intra-op threads of its sessions. */
  get threads(): number {
    return this.sessionOptions.intraOpThreads ?? DEFAULT_THREADS;
  }

  /** Opens a model folder: checks the layout, loads the tokenizer and opens the text encoder and VAE sessions. */
  static async load(dir: string, options: PipelineLoadOptions = {}): Promise<StableDiffusionPipeline> {
    const folder = resolveModelFolder(dir);
    const threads = options.threads ?? DEFAULT_THREADS;
    const session: SessionOptions = { intraOpThreads: threads, memArena: false, ...options.session };
    const tokenizer = await ClipTokenizer.fromFolder(folder.tokenizer);
    const tokenizer2 = folder.tokenizer2 ? await ClipTokenizer.fromFolder(folder.tokenizer2) : null;
    const unet = Unet.open(folder.unet, session, options.cfgBatching ?? 'auto');
    const xlUnet = unet.io.textEmbeds !== null;
    if (xlUnet !== (folder.architecture === 'sdxl')) {
      throw new ModelInputError(xlUnet
        ? `${folder.unet} takes text_embeds/time_ids (an SDXL UNet) but ${folder.root} has no text_encoder_2: an SDXL folder ` +
          'needs text_encoder_2/ and tokenizer_2/ (and model_index.json naming StableDiffusionXLPipeline).'
        : `${folder.root} is laid out as SDXL (text_encoder_2) but ${folder.unet} takes no text_embeds/time_ids.`);
    }
    const opened: { dispose(): Promise<void> }[] = [];
    try {
      const textEncoder = await TextEncoder.open(folder.textEncoder, session);
      opened.push(textEncoder);
      const textEncoder2 = folder.textEncoder2 ? await TextEncoder.open(folder.textEncoder2, session) : null;
      if (textEncoder2) opened.push(textEncoder2);
      const vae = await VaeDecoder.open(folder.vaeDecoder, session);
      return new StableDiffusionPipeline(folder, tokenizer, textEncoder, unet, vae, tokenizer2, textEncoder2, session);
    } catch (e) {
      await Promise.all(opened.map((o) => o.dispose()));
      throw e;
    }
  }

  get architecture(): 'sd' | 'sdxl' {
    return this.folder.architecture;
  }

  /**
   * Tokenises and encodes [negative, prompt]. SDXL: both encoders' penultimate hidden states concatenated, and the
   * second encoder's pooled projections; `negativePrompt` undefined means diffusers' None (zeros when the folder says so).
   */
  async encodePrompts(prompt: string, negativePrompt: string | undefined): Promise<{
    prompt: TokenizedPrompt; negative: TokenizedPrompt; uncond: Float32Array; cond: Float32Array; dims: [number, number, number];
    pooled: { uncond: Float32Array; cond: Float32Array; dim: number } | null;
  }> {
    if (this.tokenizer2 && this.textEncoder2) {
      return encodeSdxlPrompts({
        tokenizer: this.tokenizer, tokenizer2: this.tokenizer2, textEncoder: this.textEncoder, textEncoder2: this.textEncoder2,
        forceZerosForEmptyPrompt: this.folder.forceZerosForEmptyPrompt,
      }, prompt, negativePrompt);
    }
    negativePrompt = negativePrompt ?? '';
    const seq = this.textEncoder.fixedSequenceLength ?? this.tokenizer.maxLength;
    const p = this.tokenizer.encode(prompt, { maxLength: seq });
    const n = this.tokenizer.encode(negativePrompt, { maxLength: seq });
    const emb = await this.textEncoder.encode([n.ids, p.ids]);
    const [, s, hidden] = emb.dims;
    const half = s * hidden;
    return {
      prompt: p, negative: n, uncond: emb.data.slice(0, half), cond: emb.data.slice(half, 2 * half), dims: [1, s, hidden], pooled: null,
    };
  }

  /**
   * The cross-attention grid (rows) Attend-and-Excite and the per-step maps read by default for an image size:
   * diffusers' pipeline reads the 16×16 maps at every size (`attn_res=(16, 16)`, v0.21.4 to today); where this UNet
   * has no cross-attention with 16 rows at this size (diffusers would fail), the grid nearest to 16, with a warning.
   * SDXL (no A&E pipeline in diffusers): the coarsest cross-attention grid, latent/4, as the SDXL A&E ports read
   * (attn_res 32×32 at 1024 px): it holds most of SDXL's transformer layers (down_blocks.2, mid, up_blocks.0).
   */
  defaultAttentionGrid(width: number, height: number): { res: number; warning?: string } {
    const shape = latentShape(width, height, this.unet.io.channels);
    const grids = [...new Set(this.attentionSites(shape[2], shape[3]).filter((s) => s.kind === 'cross' && s.height !== undefined).map((s) => s.height as number))];
    if (this.architecture === 'sdxl' && grids.length > 0) return { res: Math.min(...grids) };
    if (grids.length === 0 || grids.includes(DIFFUSERS_AE_GRID)) return { res: DIFFUSERS_AE_GRID };
    const res = grids.reduce((best, g) => (Math.abs(Math.log2(g / DIFFUSERS_AE_GRID)) < Math.abs(Math.log2(best / DIFFUSERS_AE_GRID)) ? g : best));
    return {
      res,
      warning: `no cross-attention layer has ${DIFFUSERS_AE_GRID} rows at ${width}x${height} (diffusers' default attn_res); ` +
        `using ${res} (grids here: ${grids.sort((a, b) => b - a).join(', ')}; choose with --ae-res)`,
    };
  }

  /** Every attention site of the UNet at this latent size (cross and self; see discover.ts). */
  attentionSites(latentHeight: number, latentWidth: number): AttentionSite[] {
    return this.unet.attentionSites(latentHeight, latentWidth, this.textEncoder.fixedSequenceLength ?? this.tokenizer.maxLength);
  }

  /**
   * One batch-1 UNet pass on the conditional embedding that also returns the given sites' probabilities
   * (Attend-and-Excite's attention pass). `latents` is [1, C, h, w]; the scheduler's input scaling is the
   * caller's business (A&E feeds the raw latents, as diffusers does).
   */
  async unetWithAttention(latents: Float32Array, shape: LatentShape, timestep: number, cond: Float32Array,
    embeddingDims: [number, number, number], sites: readonly AttentionSite[], added?: AddedConditioning): Promise<UnetOutput> {
    return this.unet.run({
      sample: latents, batch: 1, height: shape[2], width: shape[3], timestep,
      encoderHiddenStates: cond, sequence: embeddingDims[1], hidden: embeddingDims[2], added,
    }, sites);
  }

  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const t0 = performance.now();
    const warnings = [...this.folder.warnings];
    const { signal } = options;
    if (typeof options.prompt !== 'string') throw new GenerationOptionsError('prompt must be a string', 'prompt');
    if (options.prompt.trim() === '') {
      throw new GenerationOptionsError('the prompt is empty: give a prompt to generate from (maps are computed per prompt word)', 'prompt');
    }
    const steps = positiveInt(options.steps ?? 50, 'steps', 'e.g. 20-50');
    const guidance = options.guidance ?? (this.architecture === 'sdxl' ? 5 : 7.5);
    if (!Number.isFinite(guidance) || guidance < 0) throw new GenerationOptionsError(`guidance must be a finite number >= 0 (got ${guidance}); SD's usual value is 7.5`, 'guidance');
    const guidanceRescale = options.guidanceRescale ?? 0;
    if (!Number.isFinite(guidanceRescale) || guidanceRescale < 0 || guidanceRescale > 1) {
      throw new GenerationOptionsError(`guidance rescale must be in [0, 1] (got ${guidanceRescale}); 0 turns it off, 0.7 is the paper's value`, 'guidanceRescale');
    }
    if (guidanceRescale > 0 && this.architecture !== 'sdxl') {
      throw new GenerationOptionsError('guidance rescale is implemented for SDXL folders only (as diffusers\' StableDiffusionXLPipeline applies it)', 'guidanceRescale');
    }
    if (options.sdxl && this.architecture !== 'sdxl') {
      throw new GenerationOptionsError('original/crop/target size conditioning applies to SDXL folders only', 'sdxl');
    }
    const width = options.width ?? this.folder.defaultImageSize;
    const height = options.height ?? this.folder.defaultImageSize;
    const shape = (() => {
      try {
        return latentShape(width, height, this.unet.io.channels);
      } catch (e) {
        throw new GenerationOptionsError((e as Error).message, e instanceof HeedError ? e.field : undefined);
      }
    })();
    const keepNoise = options.keepNoisePredictions ?? 2;

    // Validate everything cheap before running any model.
    let seed: number | null = options.seed ?? null;
    if (seed !== null && (!Number.isSafeInteger(seed) || seed < 0)) throw new GenerationOptionsError(`seed must be a non-negative integer (got ${seed})`, 'seed');
    let initLatents: Float32Array;
    let generator: TorchGenerator;
    if (options.latents !== undefined) {
      initLatents = typeof options.latents === 'string'
        ? loadLatents(options.latents, shape)
        : validateLatentData(options.latents, shape, 'the given latents');
      generator = new TorchGenerator(seed ?? 0);
    } else {
      if (seed === null) seed = Math.floor(Math.random() * 2 ** 32);
      const drawn = seededLatents(seed, shape);
      initLatents = drawn.latents;
      generator = drawn.generator;
    }
    const scheduler: Scheduler = (() => {
      try {
        return createScheduler(options.scheduler, options.schedulerConfig ?? this.folder.schedulerConfig, {
          eta: options.eta, source: options.schedulerConfig ? 'the given scheduler config' : this.folder.schedulerConfigPath,
        });
      } catch (e) {
        // A scheduler the caller chose that the folder's config cannot drive is the caller's choice to change; with
        // no choice made, the folder's own scheduler config is at fault (the error's default).
        if (e instanceof SchedulerConfigError && options.scheduler !== undefined) throw new SchedulerConfigError(e.message, 'scheduler', 'invalid_input');
        throw e;
      }
    })();
    try {
      scheduler.setTimesteps(steps);
    } catch (e) {
      // e.g. LCM above its original_inference_steps, PNDM's Runge-Kutta warm-up below 4 steps: the caller's step count.
      if (e instanceof RangeError) throw new GenerationOptionsError(`steps ${steps} do not fit the ${scheduler.kind} scheduler: ${e.message}`, 'steps');
      throw e;
    }
    const cfg = guidance > 1;
    const mapsOpt: MapsOptions | null = options.maps === true ? {} : options.maps ? options.maps : null;
    const aeResolution = this.defaultAttentionGrid(width, height).res;

    checkAbort(signal, 0, scheduler.timesteps.length);
    const tEnc = performance.now();
    const enc = await this.encodePrompts(options.prompt, options.negativePrompt);
    let added: { uncond: AddedConditioning; cond: AddedConditioning } | null = null;
    if (enc.pooled) {
      const ids = sdxlTimeIds(this.unet.io, enc.pooled.dim, { height, width, ...options.sdxl });
      added = { uncond: { textEmbeds: enc.pooled.uncond, timeIds: ids }, cond: { textEmbeds: enc.pooled.cond, timeIds: ids } };
      if (this.folder.vaeForceUpcast && this.vae.inputType === 'float16') {
        warnings.push(`${this.folder.vaeDecoder} is float16 while the VAE config says force_upcast (diffusers decodes SDXL's VAE in ` +
          'float32 because it overflows in float16): the image may come out black or NaN; use a float32 vae_decoder or an fp16-fixed SDXL VAE.');
      }
    }
    if (enc.prompt.warning) warnings.push(enc.prompt.warning);
    if (enc.negative.warning) warnings.push(`negative prompt: ${enc.negative.warning}`);
    const encodeMs = performance.now() - tEnc;
    const [, seq, hidden] = enc.dims;

    let store: AttentionStore | null = null;
    let sites: AttentionSite[] = [];
    if (mapsOpt) {
      let all: AttentionSite[];
      try {
        all = this.attentionSites(shape[2], shape[3]);
      } catch (e) {
        const err = new AttentionMapsError(`cannot collect attention maps from ${this.folder.unet}: ${(e as Error).message} ` +
          '(generation itself works without maps).');
        err.cause = e;
        throw err;
      }
      const perLayer = mapsOpt.perLayerResolutions ?? [];
      store = new AttentionStore({
        latentHeight: shape[2], latentWidth: shape[3], tokenRows: enc.prompt.length, contextLength: seq,
        daam: mapsOpt.daam ?? true, daamGrid: mapsOpt.daamGrid ?? null,
        perStepResolutions: mapsOpt.perStepResolutions ?? [aeResolution],
        perLayerResolutions: perLayer === 'all'
          ? [...new Set(all.filter((s) => s.kind === 'cross').map((s) => siteGrid(s, shape[2], shape[3])[0]))]
          : perLayer,
      });
      sites = store.requiredSites(all);
      if (sites.length === 0) warnings.push('no cross-attention layer matches the requested maps; no maps were collected');
    }

    // Batch [uncond, cond] as diffusers concatenates it; without CFG only cond.
    const ehs = cfg ? concat2(enc.uncond, enc.cond) : enc.cond;
    const addedBatch: AddedConditioning | undefined = added
      ? (cfg
        ? { textEmbeds: concat2(added.uncond.textEmbeds, added.cond.textEmbeds), timeIds: concat2(added.uncond.timeIds, added.cond.timeIds) }
        : added.cond)
      : undefined;
    const batch = cfg ? 2 : 1;
    const n = initLatents.length;
    let latents = scheduler.scaleInitialNoise(initLatents);

    // Open the UNet session (plain, or exposing the maps' sites) before the loop so step 0's time is a step's.
    checkAbort(signal, 0, scheduler.timesteps.length);
    const tPrep = performance.now();
    await this.unet.prepare(sites);
    const prepareMs = performance.now() - tPrep;

    const timesteps = [...scheduler.timesteps];
    const total = timesteps.length;
    const stepMs: number[] = [];
    const noisePredictions: NoisePrediction[] = [];
    const tDen = performance.now();
    for (let i = 0; i < total; i++) {
      checkAbort(signal, i, total);
      const t = timesteps[i];
      const tStep = performance.now();
      if (options.beforeStep) {
        const replaced = await options.beforeStep({
          step: i, total, timestep: t, latents: latents.slice(), latentShape: shape, cond: enc.cond, embeddingDims: enc.dims, pipeline: this, signal,
          ...(added ? { added: added.cond } : {}),
        });
        if (replaced) {
          latents = validateLatentData(replaced, shape, `the latents returned by beforeStep at step ${i}`);
        }
        checkAbort(signal, i, total);
      }
      const modelInput = scheduler.scaleModelInput(latents, i);
      const sample = cfg ? concat2(modelInput, modelInput) : modelInput;
      const out = await this.unet.run({ sample, batch, height: shape[2], width: shape[3], timestep: t, encoderHiddenStates: ehs, sequence: seq, hidden, added: addedBatch }, sites);
      if (store) store.add(i, t, out.attention.values() as IterableIterator<AttentionOutput>, batch, cfg ? 1 : 0);
      const uncond = cfg ? out.noise.subarray(0, n) : null;
      const cond = cfg ? out.noise.subarray(n, 2 * n) : out.noise;
      let guided = uncond ? guide(uncond, cond, guidance) : cond;
      if (uncond && guidanceRescale > 0) guided = rescaleNoiseCfg(guided, cond, guidanceRescale);
      if (i < keepNoise) noisePredictions.push({ step: i, timestep: t, cond: cond.slice(), uncond: uncond ? uncond.slice() : null, guided: guided.slice() });
      latents = scheduler.step(guided, i, latents, generator);
      const ms = performance.now() - tStep;
      stepMs.push(ms);
      if (options.onStep) {
        await options.onStep({
          step: i, total, timestep: t, stepMs: ms, elapsedMs: performance.now() - t0, latents, latentShape: shape,
          predOriginal: scheduler.predOriginalSample,
        });
      }
    }
    const denoiseMs = performance.now() - tDen;
    checkAbort(signal, total, total);
    const tDec = performance.now();
    const image = await this.decodeLatents(latents, shape);
    const decodeMs = performance.now() - tDec;
    return {
      image, latents, initLatents, latentShape: shape, seed,
      promptText: options.prompt, negativePromptText: options.negativePrompt ?? '',
      prompt: enc.prompt, negativePrompt: enc.negative,
      textEmbeddings: { uncond: enc.uncond, cond: enc.cond, dims: enc.dims }, added,
      timesteps, noisePredictions, attention: store, attentionSites: sites, aeResolution,
      settings: {
        steps, guidance, scheduler: scheduler.kind, width, height, predictionType: scheduler.config.predictionType, cfg, guidanceRescale,
        architecture: this.architecture, ...(added ? { timeIds: [...added.cond.timeIds] } : {}),
      },
      timings: { encodeMs, prepareMs, denoiseMs, stepMs, decodeMs, totalMs: performance.now() - t0 },
      warnings,
    };
  }

  /** Decodes latents [1, C, h, w] with the VAE (e.g. a preview from StepInfo.latents or predOriginal). */
  async decodeLatents(latents: Float32Array, shape: LatentShape): Promise<FloatImage> {
    return this.vae.decode(latents, shape, this.folder.vaeScalingFactor);
  }

  /** Releases every ORT session. */
  async dispose(): Promise<void> {
    await Promise.all([this.textEncoder.dispose(), this.textEncoder2?.dispose(), this.unet.dispose(), this.vae.dispose()]);
  }
}

function checkAbort(signal: AbortSignal | undefined, step: number, total: number): void {
  if (signal?.aborted) throw new CancelledError(step, total);
}

function concat2(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export { LatentsError };
