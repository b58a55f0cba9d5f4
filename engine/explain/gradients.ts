// Gradients of a score with respect to every attention probability tensor, by a VJP graph (engine/onnx/autodiff):
// onnxruntime-node cannot differentiate, so the model is differentiated as ONNX and run as one session whose
// outputs are the score, the attention probabilities (exposed, so the maps and their gradients come from the same
// run) and `<probs>__grad`.
//   ViT:  K classes at once — the image is repeated K times and the cotangent of `logits` is one-hot per row, so
//         one run gives the gradients for every requested class.
//   CLIP: as the Chefer notebook's `interpret`: the image is repeated once per text, the cotangent of
//         `logits_per_image` [T, T] is the identity (one_hot = Σ_b logits[b, b]); batch item b then carries the
//         gradients of the pair (image, text b) in both towers.
import type * as ortTypes from 'onnxruntime-node';
import { buildVjp, VjpRunner, type VjpModel } from '../onnx/autodiff/index.js';
import { Graph, valueInfoType } from '../onnx/graph.js';
import { openSession, runSession, ort } from '../onnx/session.js';
import { ExplainError } from './errors.js';
import type { ExplainModel, TokenizedTexts } from './model.js';
import { siteItem } from './sites.js';
import type { PreparedImage } from './preprocess.js';
import type { LayerTensor } from './tensor.js';
import { LrpEngine } from './lrp/engine.js';
import { AttnLrpEngine } from './lrp/attn-engine.js';

export interface AttentionGradients {
  /** Scores of this batch item (ViT logits row, or CLIP logits_per_image row). */
  scores: Float32Array;
  vision: LayerTensor[];
  visionGrads: LayerTensor[];
  text?: LayerTensor[];
  textGrads?: LayerTensor[];
}

/** A ViT forward pass that keeps what the backward needs: gradients for any class then cost one backward run each. */
export interface ClassForward {
  logits: Float32Array;
  vision: LayerTensor[];
  gradients(classIndex: number): Promise<AttentionGradients>;
}

interface CompiledVjp {
  vjp: VjpModel;
  session: ortTypes.InferenceSession;
}

/** VJP sessions of one model, keyed by the fixed input dims they were built for. */
export class GradientEngine {
  private readonly cache = new Map<string, Promise<CompiledVjp>>();
  private readonly runners = new Map<string, Promise<VjpRunner>>();

  /** The relevance (LRP) pass of the same model, released with these sessions. */
  readonly lrp: LrpEngine;
  /** The AttnLRP pass (one modified backward to the pixels), released with these sessions. */
  readonly attnLrp: AttnLrpEngine;

  constructor(readonly model: ExplainModel) {
    this.lrp = new LrpEngine(model);
    this.attnLrp = new AttnLrpEngine(model);
  }

  private compiled(inputDims: Record<string, number[]>): Promise<CompiledVjp> {
    const key = JSON.stringify(inputDims);
    let p = this.cache.get(key);
    if (!p) {
      p = this.compile(inputDims);
      this.cache.set(key, p);
      p.catch(() => this.cache.delete(key));
    }
    return p;
  }

  private async compile(inputDims: Record<string, number[]>): Promise<CompiledVjp> {
    const m = this.model;
    const sites = [...m.visionSites, ...m.textSites];
    let vjp: VjpModel;
    try {
      vjp = buildVjp(m.onnx, { seeds: [m.scoreOutput], wrt: sites.map((s) => s.probs), inputDims });
    } catch (e) {
      throw new ExplainError(`cannot differentiate ${m.info.onnxPath} for the gradient methods (grad-rollout, chefer): ${(e as Error).message}. ` +
        'The non-gradient methods (heads, rollout, distance) still work.');
    }
    const graph = new Graph(vjp.model);
    for (const s of sites) graph.addOutput(s.probs);
    const session = await openSession(vjp.model, { intraOpThreads: m.options.intraOpThreads ?? 1, device: m.options.device });
    return { vjp, session };
  }

  private runner(dims: number[]): Promise<VjpRunner> {
    const key = dims.join('x');
    let p = this.runners.get(key);
    if (!p) {
      const m = this.model;
      p = VjpRunner.create(m.onnx, {
        seeds: [m.scoreOutput], wrt: m.visionSites.map((s) => s.probs), inputDims: { pixel_values: dims },
        session: { intraOpThreads: m.options.intraOpThreads ?? 1, device: m.options.device },
      }).catch((e: unknown) => {
        this.runners.delete(key);
        throw new ExplainError(`cannot differentiate ${m.info.onnxPath} for the gradient methods (grad-rollout, chefer): ${(e as Error).message}. ` +
          'The non-gradient methods (heads, rollout, distance) still work.');
      });
      this.runners.set(key, p);
    }
    return p;
  }

  /** Builds the two-phase VJP for this image size ahead of time (so a timed forward excludes it). */
  async prepareClassForward(image: PreparedImage): Promise<void> {
    await this.runner([1, image.dims[1], image.dims[2], image.dims[3]]);
  }

  /**
   * ViT: one forward pass (batch 1) that returns the logits and attention maps and keeps the residuals, so that each
   * class's gradients cost only a backward run — "latency after the forward pass" is the backward, not a second forward.
   */
  async classForward(image: PreparedImage): Promise<ClassForward> {
    const m = this.model;
    if (m.familyRules.scores !== 'classes') throw new ExplainError('class gradients need an image classifier (ViT/DeiT/DINO with a head)');
    const runner = await this.runner([1, image.dims[1], image.dims[2], image.dims[3]]);
    const score = m.scoreOutput;
    const { seeds, residuals } = await runner.forward(m.feeds(image, undefined));
    const logitsTensor = seeds[score];
    const logits = Float32Array.from(logitsTensor.data as Float32Array);
    // The attention probabilities are residuals of the backward (Softmax and MatMul rules read them); if an exporter's
    // graph ever makes one unnecessary, fall back to the exposing forward for the maps.
    const all = m.visionSites.every((s) => residuals.tensors[s.probs] !== undefined);
    const vision = all ? m.visionSites.map((s) => siteItem(residuals.tensors[s.probs], s, 0)) : (await m.forward(image)).vision;
    const numClasses = logits.length;
    return {
      logits, vision,
      gradients: async (classIndex: number): Promise<AttentionGradients> => {
        if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= numClasses) {
          throw new ExplainError(`class ${classIndex} is out of range: the model has ${numClasses} classes (0..${numClasses - 1})`, { field: 'classIndex' });
        }
        const cot = new Float32Array(numClasses);
        cot[classIndex] = 1;
        const grads = await runner.backward(residuals, { [score]: new ort.Tensor('float32', cot, logitsTensor.dims.map(Number)) });
        return { scores: logits, vision, visionGrads: m.visionSites.map((s) => siteItem(grads[s.probs], s, 0)) };
      },
    };
  }

  /** Whether every graph input has a free batch dim (exports usually do); otherwise items run one at a time. */
  private get batchable(): boolean {
    const g = new Graph(this.model.onnx);
    return g.realInputs().every((v) => {
      const d = valueInfoType(v)?.dims?.[0];
      return typeof d !== 'number';
    });
  }

  /** ViT: gradients of logits[c] for each class c (one batched run when the batch dim is free). */
  async forClasses(image: PreparedImage, classes: readonly number[]): Promise<AttentionGradients[]> {
    if (this.model.familyRules.scores !== 'classes') throw new ExplainError('class gradients need an image classifier (ViT/DeiT/DINO with a head)');
    if (classes.length === 0) return [];
    if (this.batchable || classes.length === 1) return this.classRun(image, classes);
    const out: AttentionGradients[] = [];
    for (const c of classes) out.push(...(await this.classRun(image, [c])));
    return out;
  }

  private async classRun(image: PreparedImage, classes: readonly number[]): Promise<AttentionGradients[]> {
    const m = this.model;
    const k = classes.length;
    const [, c, h, w] = image.dims;
    const { vjp, session } = await this.compiled({ pixel_values: [k, c, h, w] });
    const score = m.scoreOutput;
    const scoreDims = vjp.specs[score].dims;
    const numClasses = scoreDims[scoreDims.length - 1];
    const cot = new Float32Array(k * numClasses);
    classes.forEach((cls, i) => {
      if (!Number.isInteger(cls) || cls < 0 || cls >= numClasses) {
        throw new ExplainError(`class ${cls} is out of range: the model has ${numClasses} classes (0..${numClasses - 1})`, { field: 'classIndex' });
      }
      cot[i * numClasses + cls] = 1;
    });
    const feeds = m.feeds(image, undefined, k);
    feeds[vjp.cotangents[score]] = new ort.Tensor('float32', cot, scoreDims);
    const out = await runSession(session, feeds);
    return classes.map((_, i) => ({
      scores: Float32Array.from((out[score].data as Float32Array).subarray(i * numClasses, (i + 1) * numClasses)),
      vision: m.visionSites.map((s) => siteItem(out[s.probs], s, i)),
      visionGrads: m.visionSites.map((s) => siteItem(out[vjp.gradients[s.probs]], s, i)),
    }));
  }

  /** CLIP: for each text t, gradients of logits_per_image[t, t] with the image repeated per text (Chefer's `interpret`). */
  async forTexts(image: PreparedImage, texts: TokenizedTexts): Promise<AttentionGradients[]> {
    if (this.model.familyRules.scores !== 'texts') throw new ExplainError('image–text gradients need a CLIP model');
    const t = texts.texts.length;
    if (t === 0) throw new ExplainError('Chefer relevance for CLIP needs at least one text (--text "...")', { field: 'texts' });
    if (this.batchable || t === 1) return this.textRun(image, texts);
    // Fixed batch 1: one (image, text) pair per run; logits_per_image[0, 0] is that pair's score.
    const out: AttentionGradients[] = [];
    for (let i = 0; i < t; i++) {
      const one: TokenizedTexts = {
        texts: [texts.texts[i]], ids: texts.ids.slice(i * texts.length, (i + 1) * texts.length),
        mask: texts.mask.slice(i * texts.length, (i + 1) * texts.length), length: texts.length, eot: [texts.eot[i]], tokens: [texts.tokens[i]],
      };
      out.push(...(await this.textRun(image, one)));
    }
    return out;
  }

  private async textRun(image: PreparedImage, texts: TokenizedTexts): Promise<AttentionGradients[]> {
    const m = this.model;
    const t = texts.texts.length;
    const [, c, h, w] = image.dims;
    const { vjp, session } = await this.compiled({
      pixel_values: [t, c, h, w], input_ids: [t, texts.length], attention_mask: [t, texts.length],
    });
    const score = m.scoreOutput;
    const cot = new Float32Array(t * t);
    for (let i = 0; i < t; i++) cot[i * t + i] = 1;
    const feeds = m.feeds(image, texts, t);
    feeds[vjp.cotangents[score]] = new ort.Tensor('float32', cot, [t, t]);
    const out = await runSession(session, feeds);
    const scores = out[score].data as Float32Array;
    return texts.texts.map((_, b) => ({
      scores: Float32Array.from(scores.subarray(b * t, (b + 1) * t)),
      vision: m.visionSites.map((s) => siteItem(out[s.probs], s, b)),
      visionGrads: m.visionSites.map((s) => siteItem(out[vjp.gradients[s.probs]], s, b)),
      text: m.textSites.map((s) => siteItem(out[s.probs], s, b)),
      textGrads: m.textSites.map((s) => siteItem(out[vjp.gradients[s.probs]], s, b)),
    }));
  }

  async release(): Promise<void> {
    await this.lrp.release();
    await this.attnLrp.release();
    const runners = [...this.runners.values()];
    this.runners.clear();
    for (const p of runners) {
      try {
        await (await p).dispose();
      } catch {
        // a failed build has nothing to release
      }
    }
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
