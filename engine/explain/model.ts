// An explainable model: the folder's facts, its image processor (and CLIP tokenizer), the attention sites found by
// graph surgery, and an ORT session of the graph with every attention probability exposed as an extra output.
// One forward pass yields the logits (or CLIP similarities) and all attention maps; gradient methods add a VJP
// graph on top (gradients.ts). What differs by family (ViT, CLIP) is in families/.
import type * as ortTypes from 'onnxruntime-node';
import { loadModel, opsetVersion, type OnnxModel } from '../onnx/model.js';
import { Graph, valueInfoType } from '../onnx/graph.js';
import { DataType, hostTensor } from '../onnx/tensor.js';
import { inferShapes } from '../onnx/shapes.js';
import { openSession, runSession, ort, type Feeds } from '../onnx/session.js';
import type { ConcreteDevice } from '../onnx/device.js';
export { siteItem } from './sites.js';
import { findAttentionSites, exposeAttention, AttentionDiscoveryError, type AttentionSite } from '../attention/discover.js';
import type { ClipTokenizer } from '../text/tokenizer.js';
import { readModelFolder, type ExplainModelInfo } from './folder.js';
import { ImagePreprocessor, type PreparedImage } from './preprocess.js';
import { ExplainError, MODEL_INVALID } from './errors.js';
import type { LayerTensor } from './tensor.js';
import { siteItem } from './sites.js';
import { FAMILIES, type ExplainFamily } from './families/index.js';
import type { Grid, HeadFusion } from './rollout.js';
import { HeadFuser } from './fuser.js';

export interface TokenizedTexts {
  texts: string[];
  /** [texts, maxLength] ids and mask, row-major. */
  ids: BigInt64Array;
  mask: BigInt64Array;
  length: number;
  /** Per text: position of the (first) EOT token, and the token strings of SOT..EOT. */
  eot: number[];
  tokens: string[][];
}

export interface ForwardResult {
  /** ViT: logits [classes] of the image. */
  logits?: Float32Array;
  /** CLIP: logits_per_image of the image against each text [texts]. */
  similarities?: Float32Array;
  /** Vision attention probabilities per layer (forward order) of the image. */
  vision: LayerTensor[];
  /** CLIP: text attention per text, per layer. */
  text?: LayerTensor[][];
  /**
   * Vision attention fused over heads by the forward graph itself (ReduceMean/Max/Min in onnxruntime, float32 like
   * torch's `attention.mean(axis=1)`), per fusion and layer, [tokens × tokens]. Absent when the forward came from the
   * gradient runner; rollout then fuses in JS.
   */
  fused?: Record<HeadFusion, Float32Array[]>;
}

const FUSION_OPS: Record<HeadFusion, string> = { mean: 'ReduceMean', max: 'ReduceMax', min: 'ReduceMin' };

/** Name of the graph output holding a site's attention fused over heads. */
export function fusedOutputName(probs: string, fusion: HeadFusion): string {
  return `${probs}__heed_${fusion}_heads`;
}

export interface ModelLoadOptions {
  intraOpThreads?: number;
  /** Execution provider of every session of this model (default cpu). */
  device?: ConcreteDevice;
}

export interface TokenLayout {
  grid: Grid;
  tokens: number;
  /** Tokens before the patches: CLS (+ distillation or register tokens). 0 when the model has no CLS token. */
  prefixTokens: number;
}

function isTextSite(site: AttentionSite): boolean {
  return /(^|\.)text_model(\.|$)|(^|\.)text_encoder(\.|$)/.test(site.modulePath);
}

export class ExplainModel {
  private session?: ortTypes.InferenceSession;
  private readonly fuser = new HeadFuser();

  private constructor(
    readonly info: ExplainModelInfo,
    readonly onnx: OnnxModel,
    readonly visionSites: AttentionSite[],
    readonly textSites: AttentionSite[],
    readonly preprocessor: ImagePreprocessor,
    readonly tokenizer: ClipTokenizer | undefined,
    readonly options: ModelLoadOptions,
  ) {}

  static async load(dir: string, options: ModelLoadOptions = {}): Promise<ExplainModel> {
    const info = readModelFolder(dir);
    const onnx = loadModel(info.onnxPath);
    const graph = new Graph(onnx);
    const inputDims = ExplainModel.discoveryDims(graph, info);
    let sites: AttentionSite[];
    try {
      const infos = inferShapes(graph, { inputDims });
      sites = findAttentionSites(graph, infos, { batch: 1 });
    } catch (e) {
      if (e instanceof AttentionDiscoveryError) throw new ExplainError(e.message, MODEL_INVALID);
      throw new ExplainError(`cannot analyse the graph of ${info.onnxPath}: ${(e as Error).message}`, MODEL_INVALID);
    }
    const self = sites.filter((s) => s.kind === 'self' && s.queryLength === s.keyLength);
    const vision = self.filter((s) => !isTextSite(s));
    const text = self.filter(isTextSite);
    if (vision.length === 0) {
      throw new ExplainError(`no self-attention layers found in ${info.onnxPath}: no Softmax sits between a MatMul(Q, Kᵀ) and a MatMul with V. ` +
        'Heed explains transformer models exported without fused attention (the plain Optimum / torch.onnx export); ' +
        'a CNN or an ORT-fused export has no attention probabilities to show.', MODEL_INVALID);
    }
    const preprocessor = await ImagePreprocessor.fromFolder(info.dir);
    const tokenizer = await FAMILIES[info.family].loadTokenizer(info.dir);
    return new ExplainModel(info, onnx, vision, text, preprocessor, tokenizer, options);
  }

  /** Fixed input dims (batch 1) for shape inference during attention discovery. */
  private static discoveryDims(graph: Graph, info: ExplainModelInfo): Record<string, number[]> {
    const dims: Record<string, number[]> = {};
    for (const v of graph.realInputs()) {
      const t = valueInfoType(v);
      const declared = t?.dims ?? [];
      if (v.name === 'pixel_values') {
        const fixed = (i: number, fallback: number): number => (typeof declared[i] === 'number' ? (declared[i] as number) : fallback);
        // The size the processor will produce, when fixed; the config's image_size otherwise (only shapes for discovery).
        const size = info.processorSize ?? info.imageSize;
        dims[v.name] = [1, fixed(1, 3), fixed(2, size.height), fixed(3, size.width)];
      } else if (v.name === 'input_ids' || v.name === 'attention_mask') {
        dims[v.name] = [1, info.maxTextLength ?? 77];
      } else {
        throw new ExplainError(`${info.onnxPath} has an input '${v.name}' Heed does not know how to feed (expected ${['pixel_values', ...FAMILIES[info.family].textInputs].join(', ')})`, MODEL_INVALID);
      }
    }
    if (!dims.pixel_values) throw new ExplainError(`${info.onnxPath} has no 'pixel_values' input: it is not an image model Heed can explain`, MODEL_INVALID);
    return dims;
  }

  get family(): ExplainModelInfo['family'] {
    return this.info.family;
  }

  /** What is specific to the model's family (inputs, score, applicable methods, gradient runs). */
  get familyRules(): ExplainFamily {
    return FAMILIES[this.info.family];
  }

  /** Graph output names of the exported model. */
  get outputNames(): string[] {
    return this.onnx.proto.graph?.output.map((o) => o.name) ?? [];
  }

  /** Whether the model has a score to explain: class logits (ViT classifiers) or logits_per_image (CLIP). */
  get hasScores(): boolean {
    return this.outputNames.includes(this.familyRules.scoreOutput);
  }

  /** Number of classes when the export declares it statically (logits [batch, C]) or config.json lists labels. */
  get staticClassCount(): number | undefined {
    return this.familyRules.staticClassCount(this);
  }

  /** Graph output holding the class logits (ViT) or image→text logits (CLIP). */
  get scoreOutput(): string {
    const want = this.familyRules.scoreOutput;
    if (this.outputNames.includes(want)) return want;
    throw new ExplainError(`${this.info.onnxPath} has no '${want}' output (outputs: ${this.outputNames.join(', ')}): ` +
      this.familyRules.missingScoreHint);
  }

  async prepareImage(input: string | Uint8Array): Promise<PreparedImage> {
    return this.preprocessor.prepare(input);
  }

  /** Patch grid and prefix-token count for an image of this size, from the attention's token count. */
  layout(image: PreparedImage, tokens: number): TokenLayout {
    const grid = { height: Math.floor(image.height / this.info.patch.height), width: Math.floor(image.width / this.info.patch.width) };
    const prefixTokens = tokens - grid.height * grid.width;
    if (prefixTokens < 0) {
      throw new ExplainError(`the attention has ${tokens} tokens but a ${image.height}×${image.width} image with ${this.info.patch.height}×${this.info.patch.width} patches ` +
        `has ${grid.height * grid.width}: the patch size in config.json does not match the model`);
    }
    return { grid, tokens, prefixTokens };
  }

  /** CLIP tokenisation: SOT, tokens, EOT, padding with the pad token to the context length; over-long texts are refused. */
  tokenize(texts: readonly string[]): TokenizedTexts {
    if (!this.tokenizer) throw new ExplainError('texts are only used with CLIP models', { field: 'texts' });
    const length = this.info.maxTextLength ?? 77;
    const ids = new BigInt64Array(texts.length * length);
    const mask = new BigInt64Array(texts.length * length);
    const eot: number[] = [];
    const tokens: string[][] = [];
    texts.forEach((text, t) => {
      const enc = this.tokenizer!.encode(text, { maxLength: length });
      if (enc.truncated) {
        throw new ExplainError(`text ${t + 1} ("${text.length > 60 ? text.slice(0, 57) + '...' : text}") is ${enc.length - 2 + enc.droppedTokenCount} tokens, ` +
          `but CLIP reads at most ${length - 2} (${length} with start/end tokens); explaining a truncated text would explain a different text. Shorten it.`, { field: 'texts' });
      }
      for (let i = 0; i < length; i++) {
        ids[t * length + i] = BigInt(enc.ids[i]);
        mask[t * length + i] = BigInt(enc.attentionMask[i]);
      }
      eot.push(enc.length - 1);
      tokens.push(enc.tokens.slice(0, enc.length));
    });
    return { texts: [...texts], ids, mask, length, eot, tokens };
  }

  /** Feeds for `imageBatch` copies of the image and the given texts (CLIP needs at least one text; '' is used for vision-only runs). */
  feeds(image: PreparedImage, texts: TokenizedTexts | undefined, imageBatch = 1): Feeds {
    const [, c, h, w] = image.dims;
    const pixels = new Float32Array(imageBatch * image.pixelValues.length);
    for (let b = 0; b < imageBatch; b++) pixels.set(image.pixelValues, b * image.pixelValues.length);
    const feeds: Feeds = { pixel_values: new ort.Tensor('float32', pixels, [imageBatch, c, h, w]) };
    this.familyRules.addTextFeeds(this, feeds, texts);
    return feeds;
  }

  private async exposedSession(): Promise<ortTypes.InferenceSession> {
    if (!this.session) {
      const exposed = exposeAttention(this.onnx, [...this.visionSites, ...this.textSites]);
      addHeadFusion(exposed, this.visionSites);
      this.session = await openSession(exposed, { intraOpThreads: this.options.intraOpThreads ?? 1, device: this.options.device });
    }
    return this.session;
  }

  /** Opens the attention-exposing session now (so that a timed forward does not include session creation). */
  async ready(): Promise<void> {
    await this.exposedSession();
  }

  /** One forward pass with every attention map. */
  async forward(image: PreparedImage, texts?: TokenizedTexts): Promise<ForwardResult> {
    const session = await this.exposedSession();
    const score = this.hasScores ? this.scoreOutput : undefined;
    const fusions = Object.keys(FUSION_OPS) as HeadFusion[];
    const fusedNames = this.visionSites.flatMap((s) => fusions.map((f) => fusedOutputName(s.probs, f)));
    const names = [...(score ? [score] : []), ...this.visionSites.map((s) => s.probs), ...this.textSites.map((s) => s.probs), ...fusedNames];
    const out = await runSession(session, this.feeds(image, texts), names);
    const vision = this.visionSites.map((s) => siteItem(out[s.probs], s, 0));
    const fused = {} as Record<HeadFusion, Float32Array[]>;
    for (const f of fusions) {
      fused[f] = this.visionSites.map((s, l) => {
        const size = vision[l].queries * vision[l].keys;
        return (out[fusedOutputName(s.probs, f)].data as Float32Array).slice(0, size); // batch item 0
      });
    }
    if (!score) return { vision, fused };
    const scores = out[score].data as Float32Array;
    return { ...this.familyRules.readScores(this, out, scores, texts), vision, fused };
  }

  /** Head fusion of per-head maps by onnxruntime (for forwards that did not fuse in-graph). */
  async fuseHeads(layers: readonly LayerTensor[]): Promise<Record<HeadFusion, Float32Array[]>> {
    return this.fuser.fuse(layers);
  }

  async release(): Promise<void> {
    await this.fuser.release();
    await this.session?.release();
    this.session = undefined;
  }
}

/**
 * Adds, for every site, its probabilities reduced over the head axis (mean, max, min) as graph outputs: the
 * reductions run vectorised inside onnxruntime during the forward, which takes the largest part of attention
 * rollout's cost (12 heads × N² reads per layer) off the JS side.
 */
function addHeadFusion(model: OnnxModel, sites: readonly AttentionSite[]): void {
  const g = new Graph(model);
  const axesAsInput = opsetVersion(model) >= 18; // ReduceMean/Max/Min take `axes` as an input from opset 18
  const axesName = g.uniqueName('heed_head_axis');
  if (axesAsInput) g.addInitializer(axesName, hostTensor(DataType.INT64, [1], [1]));
  for (const s of sites) {
    let src = s.probs;
    if (s.layout === 'bh,q,k') {
      // [b·h, q, k] → [b, h, q, k] so that the head axis is axis 1.
      const shapeName = g.uniqueName('heed_heads_shape');
      g.addInitializer(shapeName, hostTensor(DataType.INT64, [4], [-1, s.heads, s.queryLength, s.keyLength]));
      src = g.uniqueName('heed_heads_split');
      g.addNode('Reshape', [s.probs, shapeName], [src]);
    }
    for (const [fusion, op] of Object.entries(FUSION_OPS) as [HeadFusion, string][]) {
      const out = fusedOutputName(s.probs, fusion);
      if (axesAsInput) g.addNode(op, [src, axesName], [out], { keepdims: 0 });
      else g.addNode(op, [src], [out], { axes: [1], keepdims: 0 });
      g.addOutput(out);
    }
  }
}
