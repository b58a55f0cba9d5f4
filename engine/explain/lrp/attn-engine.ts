// AttnLRP over an ONNX classifier, one backward pass (LXT's "efficient" form): the VJP builder runs with the AttnLRP
// registry (attn-rules.ts) from one_hot(class) on the logits to pixel_values, and the relevance of the input is
// pixel_values ⊙ ĝ. LXT's heatmap is its sum over colour channels ([H, W]); the per-patch sum of that heatmap is the
// map the other LRP methods are compared on. One onnxruntime session per input size and attention variant.
import type * as ortTypes from 'onnxruntime-node';
import { buildVjp, type VjpModel } from '../../onnx/autodiff/build.js';
import { openSession, runSession, ort } from '../../onnx/session.js';
import type { OnnxModel } from '../../onnx/model.js';
import { ExplainError } from '../errors.js';
import type { ExplainModel } from '../model.js';
import type { PreparedImage } from '../preprocess.js';
import type { GridMap } from '../tensor.js';
import { attnLrpRules, type AttnLrpAttention } from './attn-rules.js';

export interface AttnLrpBuildOptions {
  /** The tensor relevance starts from (the logits). */
  seed: string;
  /** The input whose relevance is wanted (pixel_values). */
  input: string;
  inputDims: Record<string, number[]>;
  attention: AttnLrpAttention;
}

/** Inputs: the forward inputs, then `<seed>__cot` (the relevance gradient put on the seed). Outputs: the seed, then
 * `<input>__grad` (ĝ of the input; its relevance is input ⊙ ĝ). */
export function buildAttnLrp(model: OnnxModel, o: AttnLrpBuildOptions): VjpModel {
  return buildVjp(model, { seeds: [o.seed], wrt: [o.input], inputDims: o.inputDims, rules: attnLrpRules(model, o.attention) });
}

export interface AttnLrpRelevance {
  logits: Float32Array;
  /** Relevance of every input value, [1, C, H, W] (pixel_values ⊙ ĝ). */
  input: Float32Array;
  inputDims: number[];
  /** LXT's heatmap: the input relevance summed over colour channels, H × W. */
  heatmap: GridMap;
}

/** Sum of an H×W map over each cell of a grid (a patch of ⌊H/rows⌋ × ⌊W/cols⌋ pixels; pixels past the last whole
 * patch, which a stride-p patch embedding never reads, are left out). */
export function poolToGrid(map: GridMap, rows: number, cols: number): GridMap {
  const ph = Math.floor(map.height / rows);
  const pw = Math.floor(map.width / cols);
  if (ph < 1 || pw < 1) throw new RangeError(`cannot pool a ${map.height}×${map.width} map to a ${rows}×${cols} grid`);
  const data = new Float32Array(rows * cols);
  for (let y = 0; y < rows * ph; y++) {
    const r = Math.floor(y / ph);
    for (let x = 0; x < cols * pw; x++) data[r * cols + Math.floor(x / pw)] += map.data[y * map.width + x];
  }
  return { height: rows, width: cols, data };
}

interface Compiled {
  vjp: VjpModel;
  session: ortTypes.InferenceSession;
}

export class AttnLrpEngine {
  private readonly cache = new Map<string, Promise<Compiled>>();

  constructor(readonly model: ExplainModel) {}

  private compiled(dims: number[], attention: AttnLrpAttention): Promise<Compiled> {
    const key = `${dims.join('x')}/${attention}`;
    let p = this.cache.get(key);
    if (!p) {
      p = this.compile(dims, attention);
      this.cache.set(key, p);
      p.catch(() => this.cache.delete(key));
    }
    return p;
  }

  private async compile(dims: number[], attention: AttnLrpAttention): Promise<Compiled> {
    const m = this.model;
    let vjp: VjpModel;
    try {
      vjp = buildAttnLrp(m.onnx, { seed: m.scoreOutput, input: 'pixel_values', inputDims: { pixel_values: dims }, attention });
    } catch (e) {
      throw new ExplainError(`cannot build the AttnLRP pass of ${m.info.onnxPath} for attn-lrp: ${(e as Error).message}`);
    }
    const session = await openSession(vjp.model, { intraOpThreads: m.options.intraOpThreads ?? 1 });
    return { vjp, session };
  }

  /** Builds the session for this image size ahead of time (so timings exclude it). */
  async prepare(image: PreparedImage, attention: AttnLrpAttention): Promise<void> {
    await this.compiled([1, image.dims[1], image.dims[2], image.dims[3]], attention);
  }

  async relevance(image: PreparedImage, classIndex: number, attention: AttnLrpAttention): Promise<AttnLrpRelevance> {
    const m = this.model;
    if (m.family !== 'vit' || !m.hasScores) throw new ExplainError('attn-lrp explains a class logit: it needs an image classifier with a logits output');
    const dims = [1, image.dims[1], image.dims[2], image.dims[3]];
    const { vjp, session } = await this.compiled(dims, attention);
    const score = m.scoreOutput;
    const seedDims = vjp.specs[score].dims;
    const classes = seedDims[seedDims.length - 1];
    if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes) {
      throw new ExplainError(`class ${classIndex} is out of range: the model has ${classes} classes (0..${classes - 1})`);
    }
    const feeds = m.feeds(image, undefined);
    // y_c.backward() in LXT: ĝ = one_hot(c) on the logits, so the relevance put on the logit is y_c itself.
    const oneHot = new Float32Array(seedDims.reduce((a, b) => a * b, 1));
    oneHot[classIndex] = 1;
    feeds[vjp.cotangents[score]] = new ort.Tensor('float32', oneHot, seedDims);
    const out = await runSession(session, feeds);
    const grad = out[vjp.gradients.pixel_values].data as Float32Array;
    const pixels = feeds.pixel_values.data as Float32Array;
    const [, c, h, w] = dims;
    const input = new Float32Array(grad.length);
    const heat = new Float32Array(h * w);
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < h * w; i++) {
        const r = pixels[ch * h * w + i] * grad[ch * h * w + i];
        input[ch * h * w + i] = r;
        heat[i] += r;
      }
    }
    return { logits: Float32Array.from(out[score].data as Float32Array), input, inputDims: dims, heatmap: { height: h, width: w, data: heat } };
  }

  async release(): Promise<void> {
    const all = [...this.cache.values()];
    this.cache.clear();
    for (const p of all) {
      try {
        await (await p).session.release();
      } catch {
        // a failed compile has nothing to release
      }
    }
  }
}
