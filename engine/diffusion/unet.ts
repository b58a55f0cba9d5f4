// The denoising UNet of an SD ONNX export, plus a variant of it that also returns attention probabilities.
//
// Input names, element types (fp32/fp16 sample; float32/int64 timestep) and fixed dims are read from the model. One
// ORT session is held at a time: the plain graph, or a copy with the requested attention probabilities exposed as
// extra outputs (which computes the same noise prediction: exposing adds outputs, never changes a node). Holding
// both would double the weights in memory for no gain.
import type * as ortTypes from 'onnxruntime-node';
import { loadModel, type OnnxModel } from '../onnx/model.js';
import { Graph } from '../onnx/graph.js';
import { inferShapes } from '../onnx/shapes.js';
import { openSession, openSessionFromPath, runSession, type SessionOptions } from '../onnx/session.js';
import { exposeAttention, findAttentionSites, spatialGrid, type AttentionSite } from '../attention/discover.js';
import { describeSpecs, fixedDim, fromModelTensor, graphValues, isFeedType, toModelTensor, type FeedType, type ValueSpec } from './boundary.js';
import { ModelInputError } from './text-encoder.js';

type FeedSpec = ValueSpec & { type: FeedType };

export interface UnetIO {
  sample: FeedSpec;
  timestep: FeedSpec;
  encoderHiddenStates: FeedSpec;
  /** SDXL's added conditioning (`addition_embed_type: text_time`): the pooled text projection and the 6 size/crop ids. */
  textEmbeds: FeedSpec | null;
  timeIds: FeedSpec | null;
  output: string;
  /** 1 when the export fixes the batch to 1 (CFG then runs as two calls), else null. */
  fixedBatch: number | null;
  /** Latent channels (4 for SD 1.x/2.x), from the sample input when fixed. */
  channels: number;
}

export interface UnetInput {
  /** [batch, channels, height, width] row-major. */
  sample: Float32Array;
  batch: number;
  height: number;
  width: number;
  timestep: number;
  /** [batch, sequence, hidden] row-major. */
  encoderHiddenStates: Float32Array;
  sequence: number;
  hidden: number;
  /** SDXL only: [batch, textEmbedDim] pooled embeddings and [batch, timeIdsDim] time ids, rows matching the batch. */
  added?: AddedConditioning;
}

/** SDXL's `added_cond_kwargs` (diffusers' names `text_embeds`, `time_ids`), row-major with the batch first. */
export interface AddedConditioning {
  textEmbeds: Float32Array;
  timeIds: Float32Array;
}

export interface AttentionOutput {
  site: AttentionSite;
  /** Probabilities in the site's layout for the whole batch: [batch*heads, q, k] or [batch, heads, q, k]. */
  data: Float32Array;
  dims: number[];
}

export interface UnetOutput {
  /** [batch, channels, height, width]. */
  noise: Float32Array;
  /** Keyed by the site's probs tensor name; empty unless sites were requested. */
  attention: Map<string, AttentionOutput>;
}

function findInput(inputs: ValueSpec[], names: string[]): ValueSpec | undefined {
  return inputs.find((s) => names.includes(s.name));
}

/** Reads and checks the UNet's declared inputs/outputs. */
export function unetIO(path: string, inputs: ValueSpec[], outputs: ValueSpec[]): UnetIO {
  const expected = "an SD 1.x/2.x UNet takes 'sample' [batch, 4, h, w], 'timestep' ([batch], [1] or scalar; float or int) " +
    "and 'encoder_hidden_states' [batch, 77, hidden]";
  const sample = findInput(inputs, ['sample']);
  const timestep = findInput(inputs, ['timestep', 'timesteps']);
  const ehs = findInput(inputs, ['encoder_hidden_states']);
  const textEmbeds = findInput(inputs, ['text_embeds']) ?? null;
  const timeIds = findInput(inputs, ['time_ids']) ?? null;
  if ((textEmbeds === null) !== (timeIds === null)) {
    throw new ModelInputError(`${path}: the UNet declares '${textEmbeds ? 'text_embeds' : 'time_ids'}' without ` +
      `'${textEmbeds ? 'time_ids' : 'text_embeds'}'; an SDXL UNet (addition_embed_type "text_time") takes both.`);
  }
  for (const s of [textEmbeds, timeIds]) {
    if (s && ((s.type !== 'float32' && s.type !== 'float16') || s.shape.length !== 2 || typeof s.shape[1] !== 'number')) {
      throw new ModelInputError(`${path}: input '${s.name}' is ${s.type} [${s.shape.join(', ')}]; expected float [batch, fixed size].`);
    }
  }
  const missing = [!sample && 'sample', !timestep && 'timestep', !ehs && 'encoder_hidden_states'].filter(Boolean);
  if (!sample || !timestep || !ehs) {
    throw new ModelInputError(`${path}: missing UNet input(s) ${missing.join(', ')}; the model declares ${describeSpecs(inputs)}. ${expected}.`);
  }
  const unexpected = inputs.filter((s) => s !== sample && s !== timestep && s !== ehs && s !== textEmbeds && s !== timeIds);
  if (unexpected.length > 0) {
    throw new ModelInputError(`${path}: unexpected UNet input(s) ${describeSpecs(unexpected)} (ControlNet-style exports need ` +
      `inputs Heed does not provide); ${expected} (SDXL UNets also 'text_embeds' and 'time_ids').`);
  }
  for (const s of [sample, ehs]) {
    if (s.type !== 'float32' && s.type !== 'float16') {
      throw new ModelInputError(`${path}: input '${s.name}' has element type ${s.type}; expected float32 or float16.`);
    }
  }
  if (!isFeedType(timestep.type)) {
    throw new ModelInputError(`${path}: input '${timestep.name}' has element type ${timestep.type}; expected a float or integer type.`);
  }
  if (sample.shape.length !== 4) throw new ModelInputError(`${path}: input 'sample' has rank ${sample.shape.length}; expected [batch, 4, h, w].`);
  if (ehs.shape.length !== 3) throw new ModelInputError(`${path}: input 'encoder_hidden_states' has rank ${ehs.shape.length}; expected [batch, 77, hidden].`);
  if (timestep.shape.length > 1) throw new ModelInputError(`${path}: input '${timestep.name}' has rank ${timestep.shape.length}; expected a scalar or [batch].`);
  const output = outputs.find((o) => o.name === 'out_sample') ?? outputs[0];
  if (!output) throw new ModelInputError(`${path}: the UNet declares no outputs`);
  const fixedBatch = fixedDim(sample, 0);
  if (fixedBatch !== null && fixedBatch !== 1) {
    throw new ModelInputError(`${path}: the UNet's batch is fixed to ${fixedBatch}; Heed runs batch 2 (CFG) or 1, so re-export with a free batch dim.`);
  }
  return {
    sample: sample as FeedSpec, timestep: timestep as FeedSpec, encoderHiddenStates: ehs as FeedSpec,
    textEmbeds: textEmbeds as FeedSpec | null, timeIds: timeIds as FeedSpec | null, output: output.name,
    fixedBatch, channels: fixedDim(sample, 1) ?? 4,
  };
}

/**
 * How a CFG batch [uncond, cond] runs: 'batched' as one batch-2 call (diffusers' way), 'split' as two batch-1 calls,
 * 'auto' split on the CPU when the UNet has attention over 4096 or more queries at this size (SD 1.x/2.x from 512²:
 * its 64×64 self-attention; SDXL from 1024², which has no attention at the full latent resolution). The two give the
 * same noise (same kernels per row, float32 rounding); splitting halves the quadratic activations — SD 1.5 at 512²:
 * a CFG step's anonymous memory 3.8 → 2.2 GB at 0.95× the batch-2 time — while where the attention is small it only
 * costs time (SDXL widths at 512²: 0.85 → 0.70 GB at 1.10×; bench `--only memory`).
 */
export type CfgBatching = 'auto' | 'batched' | 'split';

/** Query count of the largest attention from which 'auto' runs a CFG batch row by row (a 64×64 self-attention). */
export const SPLIT_BATCH_QUERY_LENGTH = 64 * 64;

export class Unet {
  private session: ortTypes.InferenceSession | null = null;
  /** Probs tensor names exposed by the current session ('' = the plain graph). */
  private sessionKey = '';
  private sessionSites: AttentionSite[] = [];
  private siteCache = new Map<string, AttentionSite[]>();
  private disposed = false;

  private constructor(readonly path: string, readonly io: UnetIO, private readonly options: SessionOptions, private model: OnnxModel | null,
    private readonly batching: CfgBatching) {}

  /**
   * Reads the UNet's declared inputs/outputs from the graph (the weights stay on disk). The ORT session is opened
   * on the first run, as the plain graph or with attention exposed, whichever that run needs, so a generation with
   * maps never pays for opening both.
   */
  static open(path: string, options: SessionOptions = {}, batching: CfgBatching = 'auto'): Unet {
    const model = loadModel(path);
    const graph = new Graph(model);
    const io = unetIO(path, graphValues(graph, 'input'), graphValues(graph, 'output'));
    return new Unet(path, io, options, model, batching);
  }

  /** Whether a batch runs as one call per row (see CfgBatching). */
  private runsRowByRow(input: UnetInput): boolean {
    if (input.batch === 1) return false;
    if (this.io.fixedBatch === 1 || this.batching === 'split') return true;
    // On a GPU a batch-2 call is cheaper than two batch-1 calls and the activations live in device memory.
    if (this.batching !== 'auto' || (this.options.device ?? 'cpu') !== 'cpu') return false;
    let longest: number;
    try {
      longest = Math.max(0, ...this.attentionSites(input.height, input.width, input.sequence, input.hidden).map((s) => s.queryLength));
    } catch {
      return false; // no attention found: nothing quadratic to halve
    }
    return longest >= SPLIT_BATCH_QUERY_LENGTH;
  }

  /** The graph, for attention discovery and exposure. */
  private graphModel(): OnnxModel {
    if (this.disposed) throw new Error(`UNet ${this.path} was disposed`);
    if (!this.model) this.model = loadModel(this.path);
    return this.model;
  }

  /**
   * Every attention site of the UNet (cross and self) with its module path, kind, heads and, for this latent
   * size, its query grid. Cached per latent size.
   */
  attentionSites(latentHeight: number, latentWidth: number, sequence = 77, hidden?: number): AttentionSite[] {
    const key = `${latentHeight}x${latentWidth}x${sequence}`;
    const cached = this.siteCache.get(key);
    if (cached) return cached;
    const graph = new Graph(this.graphModel());
    const io = this.io;
    const hiddenDim = hidden ?? fixedDim(io.encoderHiddenStates, 2);
    if (hiddenDim === null) throw new ModelInputError(`${this.path}: encoder_hidden_states has a symbolic hidden size; pass it`);
    const inputDims: Record<string, number[]> = {
      [io.sample.name]: [1, io.channels, latentHeight, latentWidth],
      [io.timestep.name]: io.timestep.shape.length === 0 ? [] : [1],
      [io.encoderHiddenStates.name]: [1, sequence, hiddenDim],
      ...addedInputDims(io, 1),
    };
    const infos = inferShapes(graph, { inputDims });
    const sites = findAttentionSites(graph, infos, {
      batch: 1, latentHeight, latentWidth, encoderInput: io.encoderHiddenStates.name,
    });
    this.siteCache.set(key, sites);
    return sites;
  }

  /** Probs tensors the held session exposes. */
  get exposedSites(): string[] {
    return this.sessionKey === '' ? [] : this.sessionKey.split('\n');
  }

  /**
   * Opens (or keeps) a session exposing at least `sites`. A session that already exposes a superset is kept, since
   * a run fetches only the outputs it asks for; otherwise the new session exposes the union, so alternating calls
   * (e.g. Attend-and-Excite's 16×16 pass and a DAAM-traced denoising pass) never reopen the model back and forth.
   */
  async prepare(sites: readonly AttentionSite[]): Promise<void> {
    await this.ensureSession(sites);
  }

  private async ensureSession(sites: readonly AttentionSite[]): Promise<ortTypes.InferenceSession> {
    if (this.disposed) throw new Error(`UNet ${this.path} was disposed`);
    const have = new Set(this.exposedSites);
    if (this.session && sites.every((s) => have.has(s.probs))) return this.session;
    const want = new Map<string, AttentionSite>();
    for (const s of this.sessionSites) want.set(s.probs, s);
    for (const s of sites) want.set(s.probs, s);
    const list = [...want.values()];
    if (this.session) {
      const old = this.session;
      this.session = null;
      await old.release();
    }
    this.session = list.length === 0
      ? await openSessionFromPath(this.path, this.options)
      : await openSession(exposeAttention(this.graphModel(), list), this.options);
    this.sessionSites = list;
    this.sessionKey = list.map((s) => s.probs).sort().join('\n');
    return this.session;
  }

  /** Releases the ORT session but keeps the object usable (the next run reopens it). */
  async releaseSession(): Promise<void> {
    const s = this.session;
    this.session = null;
    this.sessionKey = '';
    this.sessionSites = [];
    if (s) await s.release();
  }

  private timestepTensor(t: number, batch: number): ortTypes.Tensor {
    const spec = this.io.timestep;
    if (spec.shape.length === 0) return toModelTensor(spec.type, [t], []);
    const n = fixedDim(spec, 0) ?? batch;
    return toModelTensor(spec.type, new Array<number>(n).fill(t), [n]);
  }

  /**
   * One UNet evaluation. With `sites`, also returns their probabilities (float32) for the whole batch. When the
   * export fixes batch 1, or the batching policy splits this size (CfgBatching), a batch-2 input runs as two calls
   * whose outputs are concatenated along the batch axis (for 'bh,q,k' that is the batch·heads axis, as in a batch-2
   * run).
   */
  async run(input: UnetInput, sites: readonly AttentionSite[] = []): Promise<UnetOutput> {
    const { batch, height, width, sequence, hidden } = input;
    const c = this.io.channels;
    if (input.sample.length !== batch * c * height * width) {
      throw new RangeError(`UNet sample has ${input.sample.length} values, expected ${batch}x${c}x${height}x${width}`);
    }
    if (input.encoderHiddenStates.length !== batch * sequence * hidden) {
      throw new RangeError(`encoder_hidden_states has ${input.encoderHiddenStates.length} values, expected ${batch}x${sequence}x${hidden}`);
    }
    const added = this.checkAdded(input);
    const session = await this.ensureSession(sites);
    const splits = this.runsRowByRow(input) ? batch : 1;
    const per = batch / splits;
    const noise = new Float32Array(input.sample.length);
    const parts = new Map<string, { chunks: Float32Array[]; dims: number[] }>();
    const outputs = [this.io.output, ...sites.map((s) => s.probs)];
    for (let k = 0; k < splits; k++) {
      const sampleChunk = input.sample.subarray(k * per * c * height * width, (k + 1) * per * c * height * width);
      const ehsChunk = input.encoderHiddenStates.subarray(k * per * sequence * hidden, (k + 1) * per * sequence * hidden);
      const feeds: Record<string, ortTypes.Tensor> = {
        [this.io.sample.name]: toModelTensor(this.io.sample.type, sampleChunk, [per, c, height, width]),
        [this.io.timestep.name]: this.timestepTensor(input.timestep, per),
        [this.io.encoderHiddenStates.name]: toModelTensor(this.io.encoderHiddenStates.type, ehsChunk, [per, sequence, hidden]),
      };
      if (added) {
        for (const { spec, data, dim } of added) feeds[spec.name] = toModelTensor(spec.type, data.subarray(k * per * dim, (k + 1) * per * dim), [per, dim]);
      }
      const out = await runSession(session, feeds, outputs);
      const o = out[this.io.output];
      if (o.dims.length !== 4 || o.dims[0] !== per || o.dims[1] !== c || o.dims[2] !== height || o.dims[3] !== width) {
        throw new ModelInputError(`${this.path}: output '${this.io.output}' has dims [${o.dims.join(', ')}], expected [${per}, ${c}, ${height}, ${width}]`);
      }
      noise.set(fromModelTensor(o, `${this.path} ${this.io.output}`), k * per * c * height * width);
      o.dispose();
      for (const s of sites) {
        const t = out[s.probs];
        let entry = parts.get(s.probs);
        if (!entry) parts.set(s.probs, (entry = { chunks: [], dims: [...t.dims] }));
        entry.chunks.push(Float32Array.from(fromModelTensor(t, `${this.path} ${s.probs}`)));
        t.dispose();
      }
    }
    const attention = new Map<string, AttentionOutput>();
    for (const s of sites) {
      const entry = parts.get(s.probs);
      if (!entry) continue;
      const dims = [...entry.dims];
      dims[0] *= splits;
      const data = entry.chunks.length === 1 ? entry.chunks[0] : concat(entry.chunks);
      const grid = spatialGrid(s.queryLength, height, width);
      attention.set(s.probs, { site: grid ? { ...s, height: grid[0], width: grid[1] } : s, data, dims });
    }
    return { noise, attention };
  }

  /** The added-conditioning feeds this UNet needs (none for SD 1.x/2.x), checked against the batch. */
  private checkAdded(input: UnetInput): { spec: FeedSpec; data: Float32Array; dim: number }[] | null {
    const { textEmbeds, timeIds } = this.io;
    if (!textEmbeds || !timeIds) {
      if (input.added) throw new RangeError(`${this.path}: this UNet takes no text_embeds/time_ids (not an SDXL UNet)`);
      return null;
    }
    if (!input.added) {
      throw new ModelInputError(`${this.path}: this SDXL UNet needs 'text_embeds' and 'time_ids' (added conditioning); ` +
        'open the folder as an SDXL pipeline (model_index.json with text_encoder_2).');
    }
    const out = [
      { spec: textEmbeds, data: input.added.textEmbeds, dim: textEmbeds.shape[1] as number },
      { spec: timeIds, data: input.added.timeIds, dim: timeIds.shape[1] as number },
    ];
    for (const o of out) {
      if (o.data.length !== input.batch * o.dim) {
        throw new RangeError(`${o.spec.name} has ${o.data.length} values, expected ${input.batch}x${o.dim}`);
      }
    }
    return out;
  }

  /** Releases the ORT session (the object cannot run afterwards). */
  async dispose(): Promise<void> {
    this.disposed = true;
    const s = this.session;
    this.session = null;
    this.model = null;
    this.siteCache.clear();
    if (s) await s.release();
  }
}

/** Input dims of the added-conditioning inputs at a batch size (empty for an SD 1.x/2.x UNet). */
export function addedInputDims(io: UnetIO, batch: number): Record<string, number[]> {
  const dims: Record<string, number[]> = {};
  for (const s of [io.textEmbeds, io.timeIds]) if (s) dims[s.name] = [batch, s.shape[1] as number];
  return dims;
}

function concat(chunks: Float32Array[]): Float32Array {
  const out = new Float32Array(chunks.reduce((a, c) => a + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
