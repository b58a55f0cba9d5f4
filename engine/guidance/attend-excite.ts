// Attend-and-Excite (Chefer et al., 2023) as diffusers' StableDiffusionAttendAndExcitePipeline runs it: during the
// first `maxIterToAlter` steps the latents move against ∂loss/∂latents, where the loss says how strongly the most
// neglected subject token is attended at 16×16; at steps 0/10/20 an iterative refinement repeats (score, update) passes
// until a pass's loss — taken before its update — meets the step's target, then scores once more for the plain update.
// The gradient comes from Heed's VJP graph of the UNet, pruned to the 16×16 cross-attention layers: one ORT forward
// gives the maps (and the residuals), the loss and its gradient w.r.t. the maps are computed here, and one backward run
// carries that to the latents — the forward is never recomputed.
// The same runner descends SynGen's binding loss (method 'syngen', ./syngen-loss.ts) on the same maps: only the loss,
// the step-size schedule and the refinement differ.
import { loadModel } from '../onnx/model.js';
import { ort } from '../onnx/session.js';
import { VjpRunner, type Residuals } from '../onnx/autodiff/index.js';
import { collectGarbage } from '../onnx/memory.js';
import type { AttentionSite } from '../attention/discover.js';
import { aeAggregate, type SiteProbs } from '../attention/aggregate.js';
import { CancelledError, type BeforeStepContext, type StableDiffusionPipeline } from '../diffusion/pipeline.js';
import { toModelTensor, fromModelTensor } from '../diffusion/boundary.js';
import { addedInputDims, type AddedConditioning } from '../diffusion/unet.js';
import { aeLoss, aeStepSizes, DEFAULT_AE_LOSS, type AeLossOptions } from './ae-loss.js';
import { synGenLoss, type Binding } from './syngen-loss.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

export interface AttendExciteOptions {
  /** Token positions of the subjects in the 77-token sequence (SOT = 0). */
  tokenIndices: number[];
  /** Steps (loop indices) that get a gradient update (diffusers default 25, half of 50 steps). */
  maxIterToAlter: number;
  /** Loop index → threshold: iterative refinement runs there while loss > 1 − threshold. */
  thresholds: Record<number, number>;
  scaleFactor: number;
  maxRefinementSteps: number;
  /** Side of the attention grid the loss reads (diffusers' default: 16 at every image size). */
  resolution: number;
  loss: AeLossOptions;
  /** Softmax over tokens [1, sliceEnd) instead of [1, 76): the original repo's SD 2.x variant passes the EOT position. */
  sliceEnd?: number;
  /**
   * The loss the latents descend: Attend-and-Excite's (the most neglected subject's 1 − max attention; step size
   * scaleFactor·sqrt(linspace(1, 0.5, T)), iterative refinement at the threshold steps) or SynGen's binding loss (each
   * modifier's map onto its noun's, both away from the other words'; constant step size scaleFactor, one update per
   * step, no refinement, as the SynGen pipeline). Default 'attend-excite'.
   */
  method?: GuidanceMethod;
  /** SynGen: nouns and their modifiers (token positions); `tokenIndices` stay the subjects A&E's scores are reported for. */
  bindings?: Binding[];
  /** SynGen: the prompt's content positions (1 … EOT−1), the words a binding is pushed away from. */
  promptTokens?: number[];
}

export const GUIDANCE_METHODS = ['attend-excite', 'syngen'] as const;
export type GuidanceMethod = (typeof GUIDANCE_METHODS)[number];

export const AE_DEFAULTS = {
  maxIterToAlter: 25,
  thresholds: { 0: 0.05, 10: 0.5, 20: 0.8 } as Record<number, number>,
  scaleFactor: 20,
  maxRefinementSteps: 20,
} as const;

/** Attend-and-Excite options this model or prompt cannot honour; the field names the option. */
export class AttendExciteError extends HeedError {
  constructor(message: string, field: string | undefined = 'excite', kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'AttendExciteError';
  }
}

/** One entry of the A&E log: every loss evaluation and every latent update, like the reference's events. */
export interface AeEvent {
  step: number;
  timestep: number;
  phase: 'main' | 'refine';
  kind: 'loss' | 'update';
  loss: number;
  /** Max attention per subject (after softmax and smoothing), for 'loss' events (SynGen runs report them too). */
  scores?: number[];
  /** SynGen: each binding's share of the loss, for 'loss' events. */
  bindingLosses?: number[];
  stepSize?: number;
  gradL2?: number;
  gradAbsMax?: number;
  iteration?: number;
}

interface Evaluation {
  latents: Float32Array;
  loss: number;
  scores: number[];
  gradMaps: Float32Array;
  residuals: Residuals;
  maps: Float32Array;
}

/** The per-step hook plus its state. Create with `AttendExcite.create`, pass `hook` as the pipeline's beforeStep. */
export class AttendExcite {
  readonly events: AeEvent[] = [];
  /** ∂loss/∂latents of the first update and the latents after it (for --trace). */
  firstUpdate: { step: number; loss: number; grad: Float32Array; latentsAfter: Float32Array; stepSize: number } | null = null;
  /** Latents entering the denoising UNet call of step 0, after all A&E updates. */
  latentsAfterStep0: Float32Array | null = null;
  /** The 16×16 maps of the first evaluation (before any update), [res, res, keys]. */
  firstMaps: Float32Array | null = null;
  /** Called with each update's event and the latents after it (for conformance tests and traces). */
  onUpdate: ((event: AeEvent, latentsAfter: Float32Array) => void) | null = null;
  private stepSizes: number[] = [];
  private timing = { forwardMs: 0, backwardMs: 0, forwards: 0, backwards: 0 };

  private constructor(
    private readonly pipeline: StableDiffusionPipeline,
    private readonly runner: VjpRunner,
    readonly sites: AttentionSite[],
    readonly options: AttendExciteOptions,
    private readonly latentShape: [number, number, number, number],
    private readonly keys: number,
  ) {}

  /**
   * Builds the VJP runner for this UNet at this latent size: seeds = the cross-attention probabilities at
   * resolution×resolution, wrt = the latent input, batch 1 (the conditional embedding alone, as diffusers does).
   */
  static async create(pipeline: StableDiffusionPipeline, latentShape: [number, number, number, number], options: AttendExciteOptions,
    contextLength = 77): Promise<AttendExcite> {
    const [, , h, w] = latentShape;
    const res = options.resolution;
    const all = pipeline.attentionSites(h, w);
    const sites = all.filter((s) => s.kind === 'cross' && s.queryLength === res * res);
    if (sites.length === 0) {
      const available = [...new Set(all.filter((s) => s.kind === 'cross').map((s) => `${s.height ?? '?'}x${s.width ?? '?'}`))];
      throw new AttendExciteError(`this UNet has no cross-attention layer at ${res}x${res} for ${h}x${w} latents ` +
        `(cross-attention runs at ${available.join(', ') || 'no resolution'}). Pass --ae-res with one of those sides, ` +
        `or generate at a size whose /32 is ${res}.`, 'excite.res');
    }
    if (options.tokenIndices.length === 0) {
      throw new AttendExciteError('no subject to excite: name at least one prompt word (--excite cat,frog) or use --excite auto', 'excite.subjects');
    }
    if (options.method === 'syngen') {
      if (!options.bindings || options.bindings.length === 0 || !options.promptTokens) {
        throw new AttendExciteError('SynGen needs the subjects\' bindings and the prompt\'s token positions', 'excite.subjects', 'internal');
      }
      if (options.bindings.every((b) => b.modifiers.length === 0) && options.bindings.length < 2) {
        throw new AttendExciteError('SynGen has nothing to bind: the subject has no modifier in the prompt (e.g. "a red car") and there is no ' +
          'second subject to separate it from; name the modifiers (--ae-modifiers car=red) or use Attend-and-Excite', 'excite.modifiers');
      }
    }
    const keys = sites[0].keyLength;
    const end = options.sliceEnd ?? keys - 1;
    for (const t of options.tokenIndices) {
      if (!Number.isInteger(t) || t < 1 || t >= end) {
        throw new AttendExciteError(`subject token index ${t} is outside the prompt's scored tokens 1..${end - 1} ` +
          '(index 0 is the start token; the 77-token window ends at 76)', 'excite.subjects');
      }
    }
    const io = pipeline.unet.io;
    const model = loadModel(pipeline.unet.path);
    const timestepDims = io.timestep.shape.length === 0 ? [] : [1];
    const runner = await VjpRunner.create(model, {
      seeds: sites.map((s) => s.probs),
      wrt: [io.sample.name],
      inputDims: {
        [io.sample.name]: [1, latentShape[1], h, w],
        [io.timestep.name]: timestepDims,
        [io.encoderHiddenStates.name]: [1, contextLength, encoderHidden(pipeline)],
        ...addedInputDims(io, 1),
      },
      session: { ...pipeline.sessionOptions, memArena: false },
    });
    return new AttendExcite(pipeline, runner, sites, options, latentShape, keys);
  }

  /** The pipeline's beforeStep hook. */
  readonly hook = async (ctx: BeforeStepContext): Promise<Float32Array | void> => {
    try {
      return await this.step(ctx);
    } finally {
      // The denoising UNet call comes next: drop this step's residual buffers first (no evaluation of this step is
      // reachable any more), so its activations do not peak on top of them (SD 1.5 at 512²: ~1 GB; onnx/memory.ts).
      this.runner.releaseBuffers();
      collectGarbage();
    }
  };

  private async step(ctx: BeforeStepContext): Promise<Float32Array> {
    const i = ctx.step;
    if (this.stepSizes.length === 0) {
      this.stepSizes = this.options.method === 'syngen'
        ? Array.from({ length: ctx.total }, () => this.options.scaleFactor)
        : aeStepSizes(this.options.scaleFactor, ctx.total);
    }
    const refineThreshold = this.options.thresholds[i];
    let latents = ctx.latents;
    // The SynGen pipeline runs its forward only at the steps it updates; A&E scores every step.
    if (this.options.method === 'syngen' && i >= this.options.maxIterToAlter) return latents;
    // Like diffusers, score every step (also after max_iter_to_alter): the loss trace is part of the output.
    let ev = await this.evaluate(latents, ctx, 'main');
    if (this.firstMaps === null) this.firstMaps = ev.maps;
    if (refineThreshold !== undefined && exceeds(ev.loss, 1 - refineThreshold)) {
      // diffusers' _perform_iterative_refinement_step: each pass scores the CURRENT latents, updates them with that
      // loss's gradient (unless it is 0), and only then does `while loss > target` test the loss — the one from before
      // the update. So the pass whose loss already meets the target still applies its update, and the loop ends one
      // update after the target was reached (or after maxRefinementSteps updates).
      const target = Math.max(0, 1 - refineThreshold);
      let iteration = 0;
      let loss = ev.loss;
      while (exceeds(loss, target)) {
        iteration++;
        if (iteration === 1) {
          // diffusers re-runs the forward on the same latents here; it computes exactly `ev`, so log it and reuse it.
          this.events.push({ ...this.events[this.events.length - 1], phase: 'refine', iteration: 1 });
        } else {
          if (ctx.signal?.aborted) throw new CancelledError(ctx.step, ctx.total);
          ev = await this.evaluate(latents, ctx, 'refine', iteration);
        }
        loss = ev.loss;
        if (ev.loss !== 0) latents = await this.update(ev, ctx, 'refine', iteration);
        if (iteration >= this.options.maxRefinementSteps) break;
      }
      // Then it scores the refined latents once more; the step's plain update below uses that loss and its gradient.
      ev = await this.evaluate(latents, ctx, 'refine', iteration + 1);
    }
    if (i < this.options.maxIterToAlter && ev.loss !== 0) latents = await this.update(ev, ctx, 'main');
    if (i === 0) this.latentsAfterStep0 = latents.slice();
    return latents;
  }

  /** Forward pass on batch 1 (conditional) → maps → loss and ∂loss/∂maps. */
  private async evaluate(latents: Float32Array, ctx: BeforeStepContext, phase: 'main' | 'refine', iteration?: number): Promise<Evaluation> {
    const io = this.pipeline.unet.io;
    const [, c, h, w] = this.latentShape;
    const feeds: Record<string, ort.Tensor> = {
      [io.sample.name]: toModelTensor(io.sample.type, latents, [1, c, h, w]),
      [io.timestep.name]: toModelTensor(io.timestep.type, [ctx.timestep], io.timestep.shape.length === 0 ? [] : [1]),
      [io.encoderHiddenStates.name]: toModelTensor(io.encoderHiddenStates.type, ctx.cond, ctx.embeddingDims),
    };
    // SDXL: the conditional row of the added conditioning, as the batch-1 pass of the SDXL A&E ports feeds it.
    if (io.textEmbeds && io.timeIds) {
      if (!ctx.added) throw new AttendExciteError('this SDXL UNet needs text_embeds/time_ids for the A&E pass', undefined, 'internal');
      feeds[io.textEmbeds.name] = toModelTensor(io.textEmbeds.type, ctx.added.textEmbeds, [1, ctx.added.textEmbeds.length]);
      feeds[io.timeIds.name] = toModelTensor(io.timeIds.type, ctx.added.timeIds, [1, ctx.added.timeIds.length]);
    }
    const t0 = performance.now();
    const { seeds, residuals } = await this.runner.forward(feeds);
    this.timing.forwardMs += performance.now() - t0;
    this.timing.forwards++;
    const probs: SiteProbs[] = this.sites.map((site) => ({ site, data: fromModelTensor(seeds[site.probs], site.probs), dims: [...seeds[site.probs].dims] }));
    const res = this.options.resolution;
    const maps = aeAggregate(probs, res, res, 1, 0).data;
    const r = aeLoss(maps, res, res, this.keys, this.options.tokenIndices, { ...this.options.loss, sliceEnd: this.options.sliceEnd });
    if (this.options.method === 'syngen') {
      const b = synGenLoss(maps, res, res, this.keys, this.options.bindings!, this.options.promptTokens!);
      this.events.push({ step: ctx.step, timestep: ctx.timestep, phase, kind: 'loss', loss: b.loss, scores: r.scores, bindingLosses: b.perBinding, iteration });
      return { latents, loss: b.loss, scores: r.scores, gradMaps: b.gradMaps, residuals, maps };
    }
    this.events.push({ step: ctx.step, timestep: ctx.timestep, phase, kind: 'loss', loss: r.loss, scores: r.scores, iteration });
    return { latents, loss: r.loss, scores: r.scores, gradMaps: r.gradMaps, residuals, maps };
  }

  /** ∂loss/∂latents through the VJP graph; the maps are a mean over (layer, head), so each gets gradMaps / count. */
  async gradient(ev: Evaluation): Promise<Float32Array> {
    const count = this.sites.reduce((s, site) => s + site.heads, 0);
    const res = this.options.resolution;
    const plane = res * res * this.keys;
    const cot: Record<string, ort.Tensor> = {};
    for (const site of this.sites) {
      const data = new Float32Array(site.heads * plane);
      for (let hd = 0; hd < site.heads; hd++) {
        for (let j = 0; j < plane; j++) data[hd * plane + j] = ev.gradMaps[j] / count;
      }
      const spec = this.runner.specs[site.probs];
      if (!spec) throw new AttendExciteError(`the VJP graph has no seed '${site.probs}'`, undefined, 'internal');
      cot[site.probs] = toModelTensor(spec.elemType === 10 ? 'float16' : 'float32', data, spec.dims);
    }
    const t0 = performance.now();
    const grads = await this.runner.backward(ev.residuals, cot);
    this.timing.backwardMs += performance.now() - t0;
    this.timing.backwards++;
    return Float32Array.from(fromModelTensor(grads[this.pipeline.unet.io.sample.name], 'A&E gradient'));
  }

  private async update(ev: Evaluation, ctx: BeforeStepContext, phase: 'main' | 'refine', iteration?: number): Promise<Float32Array> {
    const grad = await this.gradient(ev);
    const stepSize = this.stepSizes[ctx.step];
    // z − α·g in float32, as torch evaluates `latents - step_size * grad`.
    const a = Math.fround(stepSize);
    const out = new Float32Array(ev.latents.length);
    let l2 = 0;
    let absMax = 0;
    for (let k = 0; k < out.length; k++) {
      out[k] = Math.fround(ev.latents[k] - Math.fround(a * grad[k]));
      l2 += grad[k] * grad[k];
      absMax = Math.max(absMax, Math.abs(grad[k]));
    }
    const event: AeEvent = { step: ctx.step, timestep: ctx.timestep, phase, kind: 'update', loss: ev.loss, stepSize, gradL2: Math.sqrt(l2), gradAbsMax: absMax, iteration };
    this.events.push(event);
    this.onUpdate?.(event, out);
    if (!this.firstUpdate) this.firstUpdate = { step: ctx.step, loss: ev.loss, grad, latentsAfter: out.slice(), stepSize };
    return out;
  }

  /** Loss and ∂loss/∂latents at given latents (for tests and traces). */
  async lossAndGradient(latents: Float32Array, timestep: number, cond: Float32Array, embeddingDims: [number, number, number],
    added?: AddedConditioning): Promise<{ loss: number; scores: number[]; grad: Float32Array; maps: Float32Array }> {
    const ctx = { step: -1, total: 1, timestep, latents, latentShape: this.latentShape, cond, embeddingDims, pipeline: this.pipeline, added } as BeforeStepContext;
    const ev = await this.evaluate(latents, ctx, 'main');
    this.events.pop();
    const grad = await this.gradient(ev);
    return { loss: ev.loss, scores: ev.scores, grad, maps: ev.maps };
  }

  get timings(): { forwardMs: number; backwardMs: number; forwards: number; backwards: number } {
    return { ...this.timing };
  }

  async dispose(): Promise<void> {
    await this.runner.dispose();
  }
}

/**
 * `loss > bound` as torch evaluates it in diffusers: the loss is a float32 tensor and the Python float bound is
 * promoted to float32 (1 − 0.2 becomes 0.800000011920929), so compare both rounded to float32.
 */
function exceeds(loss: number, bound: number): boolean {
  return Math.fround(loss) > Math.fround(bound);
}

function encoderHidden(pipeline: StableDiffusionPipeline): number {
  const d = pipeline.unet.io.encoderHiddenStates.shape[2];
  if (typeof d === 'number' && d > 0) return d;
  throw new AttendExciteError(`${pipeline.unet.path}: encoder_hidden_states has a symbolic hidden size`, 'model', 'model_invalid');
}
