// The CLIP text encoder of an SD ONNX export: token ids in, `last_hidden_state` out (the conditioning the UNet's
// cross-attention reads). The ids' element type (int32 in diffusers' export, int64 in Optimum's) and whether the
// batch dim is free are read from the model.
import type * as ortTypes from 'onnxruntime-node';
import { openSessionFromPath, runSession, type SessionOptions } from '../onnx/session.js';
import { describeSpecs, fixedDim, fromModelTensor, isFeedType, sessionValues, toModelTensor, type FeedType, type ValueSpec } from './boundary.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** An ONNX model of the folder does not have the inputs/outputs Heed feeds: the model is at fault. */
export class ModelInputError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'ModelInputError';
  }
}

export interface Embeddings {
  /** Row-major [batch, sequence, hidden]. */
  data: Float32Array;
  dims: [number, number, number];
}

export class TextEncoder {
  private constructor(
    private session: ortTypes.InferenceSession | null,
    readonly path: string,
    private readonly ids: ValueSpec & { type: FeedType },
    private readonly mask: (ValueSpec & { type: FeedType }) | undefined,
    private readonly output: string,
    /** Every output the graph declares (SDXL reads `hidden_states.N` and the pooled output by name). */
    readonly outputNames: readonly string[],
  ) {}

  static async open(path: string, options: SessionOptions = {}): Promise<TextEncoder> {
    const session = await openSessionFromPath(path, options);
    try {
      const inputs = sessionValues(session, 'input');
      const ids = inputs.find((s) => s.name === 'input_ids');
      if (!ids || !isFeedType(ids.type) || ids.type.startsWith('float')) {
        throw new ModelInputError(`${path}: expected an integer input 'input_ids' [batch, 77] (CLIP text encoder), found inputs: ` +
          `${describeSpecs(inputs)}. Is this the text_encoder of an SD 1.x/2.x export?`);
      }
      const mask = inputs.find((s) => s.name === 'attention_mask');
      const unexpected = inputs.filter((s) => s !== ids && s !== mask);
      if (unexpected.length > 0) {
        throw new ModelInputError(`${path}: unexpected text-encoder input(s) ${describeSpecs(unexpected)}; ` +
          "an SD text encoder takes 'input_ids' (and optionally 'attention_mask').");
      }
      if (mask && (!isFeedType(mask.type) || mask.type.startsWith('float'))) {
        throw new ModelInputError(`${path}: 'attention_mask' has element type ${mask.type}; expected int32 or int64.`);
      }
      const outputs = sessionValues(session, 'output');
      // diffusers reads text_encoder(...)[0]; prefer the name when it is there.
      const output = outputs.find((o) => o.name === 'last_hidden_state') ?? outputs[0];
      if (!output) throw new ModelInputError(`${path}: the model has no outputs`);
      return new TextEncoder(session, path, ids as ValueSpec & { type: FeedType }, mask as (ValueSpec & { type: FeedType }) | undefined,
        output.name, outputs.map((o) => o.name));
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  /** Sequence length the model fixes, if it does (otherwise the tokenizer's). */
  get fixedSequenceLength(): number | null {
    return fixedDim(this.ids, 1);
  }

  /**
   * Encodes each id sequence (all of the same length). Runs them as one batch when the model's batch dim is free,
   * else one by one; the rows are independent either way.
   */
  async encode(sequences: readonly (readonly number[])[]): Promise<Embeddings> {
    const out = await this.encodeOutputs(sequences, [this.output]);
    const e = out[this.output];
    if (e.dims.length !== 3) {
      throw new ModelInputError(`${this.path}: output '${this.output}' has dims [${e.dims.join(', ')}], expected [batch, sequence, hidden]`);
    }
    return { data: e.data, dims: e.dims as [number, number, number] };
  }

  /**
   * SDXL's use of a text encoder (diffusers' StableDiffusionXLPipeline.encode_prompt): `hidden_states[-2]`, the
   * penultimate layer's output before the final layer norm, and the pooled output (`text_embeds` of
   * CLIPTextModelWithProjection, else `pooler_output`; the pipeline keeps only the second encoder's).
   */
  async encodeHiddenAndPooled(sequences: readonly (readonly number[])[]): Promise<{ hidden: Embeddings; pooled: { data: Float32Array; dims: [number, number] } }> {
    const layers = this.outputNames.filter((n) => /^hidden_states\.\d+$/.test(n)).map((n) => Number(n.slice('hidden_states.'.length)));
    if (layers.length < 2) {
      throw new ModelInputError(`${this.path}: SDXL reads the penultimate hidden state of each text encoder, but this graph has no ` +
        `'hidden_states.N' outputs (it declares ${this.outputNames.join(', ')}). Re-export it with the hidden states as outputs ` +
        '(Optimum\'s SDXL export does: optimum-cli export onnx --model <sdxl> <dir>).', 'model', 'model_invalid');
    }
    const penultimate = `hidden_states.${Math.max(...layers) - 1}`;
    if (!this.outputNames.includes(penultimate)) {
      throw new ModelInputError(`${this.path}: has hidden_states outputs but not '${penultimate}' (the penultimate layer)`);
    }
    const pooledName = ['text_embeds', 'pooler_output'].find((n) => this.outputNames.includes(n));
    if (!pooledName) {
      throw new ModelInputError(`${this.path}: no pooled output ('text_embeds' or 'pooler_output'); SDXL conditions the UNet on ` +
        `the second encoder's pooled projection. Outputs: ${this.outputNames.join(', ')}.`);
    }
    const out = await this.encodeOutputs(sequences, [penultimate, pooledName]);
    const h = out[penultimate];
    const p = out[pooledName];
    if (h.dims.length !== 3 || p.dims.length !== 2) {
      throw new ModelInputError(`${this.path}: '${penultimate}' has dims [${h.dims.join(', ')}] and '${pooledName}' [${p.dims.join(', ')}]; ` +
        'expected [batch, sequence, hidden] and [batch, dim]');
    }
    return { hidden: { data: h.data, dims: h.dims as [number, number, number] }, pooled: { data: p.data, dims: p.dims as [number, number] } };
  }

  /** Runs the encoder and returns the named outputs, batch-concatenated (see encode for the batching). */
  private async encodeOutputs(sequences: readonly (readonly number[])[], names: readonly string[]): Promise<Record<string, { data: Float32Array; dims: number[] }>> {
    if (!this.session) throw new Error(`text encoder ${this.path} was disposed`);
    if (sequences.length === 0) throw new RangeError('encode: no sequences');
    const seq = sequences[0].length;
    if (sequences.some((s) => s.length !== seq)) throw new RangeError('encode: sequences must have equal length (pad them)');
    const fixedSeq = this.fixedSequenceLength;
    if (fixedSeq !== null && fixedSeq !== seq) {
      throw new ModelInputError(`${this.path} takes sequences of ${fixedSeq} tokens, got ${seq}`);
    }
    const fixedBatch = fixedDim(this.ids, 0);
    const groups: (readonly number[])[][] = fixedBatch === null ? [sequences.slice()] : sequences.map((s) => [s]);
    if (fixedBatch !== null && fixedBatch !== 1) {
      throw new ModelInputError(`${this.path} has a fixed batch of ${fixedBatch}; only free or 1 is supported`);
    }
    const parts = new Map<string, { chunks: Float32Array[]; dims: number[] }>(names.map((n) => [n, { chunks: [], dims: [] }]));
    for (const group of groups) {
      const flat = group.flat();
      const feeds: Record<string, ortTypes.Tensor> = { [this.ids.name]: toModelTensor(this.ids.type, flat, [group.length, seq]) };
      // An all-ones mask is what the SD pipelines mean by passing no mask (they never mask the padding).
      if (this.mask) feeds[this.mask.name] = toModelTensor(this.mask.type, new Array<number>(flat.length).fill(1), [group.length, seq]);
      const out = await runSession(this.session, feeds, [...names]);
      for (const name of names) {
        const t = out[name];
        if (t.dims[0] !== group.length || (t.dims.length === 3 && t.dims[1] !== seq)) {
          throw new ModelInputError(`${this.path}: output '${name}' has dims [${t.dims.join(', ')}], expected [${group.length}, ${t.dims.length === 3 ? `${seq}, hidden` : 'dim'}]`);
        }
        const entry = parts.get(name) as { chunks: Float32Array[]; dims: number[] };
        entry.chunks.push(Float32Array.from(fromModelTensor(t, `${this.path} ${name}`)));
        entry.dims = [sequences.length, ...t.dims.slice(1)];
        t.dispose();
      }
    }
    const result: Record<string, { data: Float32Array; dims: number[] }> = {};
    for (const [name, { chunks, dims }] of parts) {
      const data = new Float32Array(chunks.reduce((a, c) => a + c.length, 0));
      let off = 0;
      for (const c of chunks) {
        data.set(c, off);
        off += c.length;
      }
      result[name] = { data, dims };
    }
    return result;
  }

  async dispose(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.release();
  }
}
