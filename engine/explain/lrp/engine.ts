// Runs the relevance pass of an explain model: one onnxruntime session per input size, built on first use. A run
// takes the image and a class, puts relevance one_hot(class) on the logits (as Chefer's generate_LRP does) and returns
// the relevance of every block's attention probabilities (their `attn_cam`).
import type * as ortTypes from 'onnxruntime-node';
import { openSession, runSession, ort } from '../../onnx/session.js';
import { ExplainError } from '../errors.js';
import { siteItem, type ExplainModel } from '../model.js';
import type { PreparedImage } from '../preprocess.js';
import type { LayerTensor } from '../tensor.js';
import { buildLrp, type LrpModel } from './build.js';

export interface ClassRelevance {
  logits: Float32Array;
  /** Relevance of each vision block's attention probabilities, [heads, tokens, tokens]. */
  cams: LayerTensor[];
}

interface Compiled {
  lrp: LrpModel;
  session: ortTypes.InferenceSession;
}

export class LrpEngine {
  private readonly cache = new Map<string, Promise<Compiled>>();

  constructor(readonly model: ExplainModel, readonly alpha = 1) {}

  private compiled(dims: number[]): Promise<Compiled> {
    const key = dims.join('x');
    let p = this.cache.get(key);
    if (!p) {
      p = this.compile(dims);
      this.cache.set(key, p);
      p.catch(() => this.cache.delete(key));
    }
    return p;
  }

  private async compile(dims: number[]): Promise<Compiled> {
    const m = this.model;
    let lrp: LrpModel;
    try {
      lrp = buildLrp(m.onnx, { seed: m.scoreOutput, targets: m.visionSites.map((s) => s.probs), inputDims: { pixel_values: dims }, alpha: this.alpha });
    } catch (e) {
      throw new ExplainError(`cannot build the relevance (LRP) pass of ${m.info.onnxPath} for the LRP methods (transformer-attribution, partial-lrp): ${(e as Error).message}`);
    }
    const session = await openSession(lrp.model, { intraOpThreads: m.options.intraOpThreads ?? 1 });
    return { lrp, session };
  }

  /** Builds the session for this image size ahead of time (so timings exclude it). */
  async prepare(image: PreparedImage): Promise<void> {
    await this.compiled([1, image.dims[1], image.dims[2], image.dims[3]]);
  }

  async relevance(image: PreparedImage, classIndex: number): Promise<ClassRelevance> {
    const m = this.model;
    if (m.family !== 'vit' || !m.hasScores) throw new ExplainError('LRP methods explain a class logit: they need an image classifier with a logits output');
    const { lrp, session } = await this.compiled([1, image.dims[1], image.dims[2], image.dims[3]]);
    const score = m.scoreOutput;
    const feeds = m.feeds(image, undefined);
    const classes = lrp.seedDims[lrp.seedDims.length - 1];
    if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes) {
      throw new ExplainError(`class ${classIndex} is out of range: the model has ${classes} classes (0..${classes - 1})`);
    }
    const oneHot = new Float32Array(classes);
    oneHot[classIndex] = 1;
    feeds[lrp.seedRelevance] = new ort.Tensor('float32', oneHot, lrp.seedDims);
    const out = await runSession(session, feeds);
    return {
      logits: Float32Array.from(out[score].data as Float32Array),
      cams: m.visionSites.map((s) => siteItem(out[lrp.relevances[s.probs]], s, 0)),
    };
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
