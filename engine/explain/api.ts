// The programmatic face of the explain engine, called by the CLI (`heed explain`) and the WebSocket server:
// one image (and, for CLIP, texts) in, plain data out — top classes or CLIP similarities, per-method maps on the
// patch grid, and the raw tensors for traces. Nothing here renders or writes files (see outputs.ts).
import { ExplainModel, type ModelLoadOptions, type TokenizedTexts, type TokenLayout } from './model.js';
import { GradientEngine } from './gradients.js';
import { ExplainError, MethodNotApplicableError } from './errors.js';
import { checkDiscardRatio, HEAD_FUSIONS, type HeadFusion, type RolloutNormalization } from './rollout.js';
import type { StartLayer } from './chefer.js';
import type { PatchSize } from './distance.js';
import type { GridMap, LayerTensor } from './tensor.js';
import type { PreparedImage } from './preprocess.js';
import type { ModelFamily } from './folder.js';
import type { GradientTarget } from './families/index.js';
import { METHODS, asList, type MethodContext } from './methods/index.js';
import { LRP_METHODS, type LrpMethod, type LrpMethodResult } from './methods/lrp-run.js';
import { ATTN_LRP_ATTENTIONS, type AttnLrpAttention } from './lrp/attn-rules.js';

export type ExplainMethod = 'heads' | 'rollout' | 'grad-rollout' | 'chefer' | 'distance' | LrpMethod;
export const EXPLAIN_METHODS: readonly ExplainMethod[] = ['heads', 'rollout', 'grad-rollout', 'chefer', 'distance', ...LRP_METHODS];
/** What runs when no method is named: the LRP family (methods/lrp-run.ts) runs only when asked for. */
export const DEFAULT_EXPLAIN_METHODS: readonly ExplainMethod[] = ['heads', 'rollout', 'grad-rollout', 'chefer', 'distance'];

/**
 * 'vit-explain' (default) reproduces the repo's gradient hook: the gradient w.r.t. the softmax INPUT, paired with
 * the layers in reverse order. 'corrected' uses ∂y/∂A (the probabilities) of the same layer.
 */
export type GradRolloutVariant = 'vit-explain' | 'corrected';
export const GRAD_ROLLOUT_VARIANTS: readonly GradRolloutVariant[] = ['vit-explain', 'corrected'];
export const ROLLOUT_NORMALIZATIONS: readonly RolloutNormalization[] = ['vit-explain', 'rows'];

export interface ExplainOptions {
  /** Methods to run; default all that apply to the model (with a note for those that do not). */
  methods?: readonly ExplainMethod[];
  /** ViT: the class to explain with grad-rollout / Chefer (default: the top `topK` classes, top-1 by default). */
  classIndex?: number;
  /** ViT: explain the top K classes (when classIndex is not given); also how many top classes are listed (at least 5). */
  topK?: number;
  /** Rollout head fusion(s); default 'max' (vit_explain.py's CLI default). */
  headFusion?: HeadFusion | readonly HeadFusion[];
  /** Rollout / gradient-rollout discard ratio(s); default 0.9 (vit-explain's default). */
  discard?: number | readonly number[];
  /** Rollout normalisation: 'vit-explain' (column-wise division by row sums, the repo's quirk; default) or 'rows'. */
  rolloutNormalization?: RolloutNormalization;
  gradRollout?: GradRolloutVariant;
  /** Chefer start layer: default 'last' for CLIP (the CLIP notebook's start_layer = −1) and 'all' for ViT (the ViT notebook). */
  cheferStart?: StartLayer;
  /** Layer of the per-head CLS maps; default the last. Negative counts from the end. */
  headsLayer?: number;
  /** attn-lrp: how relevance crosses the attention — 'cp' (CP-LRP, LXT's choice for ViTs; default) or 'attnlrp' (AttnLRP's
   * softmax and uniform matrix-product rules). */
  attnLrpAttention?: AttnLrpAttention;
  /** CLIP: texts to compare the image with (at most 75 tokens each). */
  texts?: readonly string[];
  load?: ModelLoadOptions;
}

export interface ClassScore {
  index: number;
  label: string;
  logit: number;
  probability: number;
}

export interface TextScore {
  index: number;
  text: string;
  /** logits_per_image (scaled cosine similarity). */
  logit: number;
  /** Softmax over the texts, as CLIP zero-shot classification reports it. */
  probability: number;
}

export interface RolloutResult {
  fusion: HeadFusion;
  discard: number;
  normalization: RolloutNormalization;
  /** vit-explain mask: CLS row over the patches, divided by its max. */
  map: GridMap;
}

export interface GradRolloutResult {
  classIndex: number;
  label: string;
  discard: number;
  variant: GradRolloutVariant;
  map: GridMap;
}

export interface CheferResult {
  start: StartLayer;
  /** ViT: the explained class. */
  classIndex?: number;
  label?: string;
  /** CLIP: the explained text. */
  textIndex?: number;
  text?: string;
  /** Image relevance R[0, patches] (raw, not normalised). */
  image: GridMap;
  /** CLIP: text tokens SOT+1..EOT−1 with R_text[eot, i] raw and divided by their sum (as show_heatmap_on_text). */
  tokens?: { token: string; score: number; normalized: number }[];
  /** CLIP: the full text relevance matrix [seq, seq] (for traces). */
  textRelevance?: { size: number; data: Float32Array };
}

export interface HeadsResult {
  layer: number;
  /** One map per head: attention of the CLS token to the patches (raw probabilities). */
  maps: GridMap[];
}

export interface DistanceResult {
  /** [layer][head] mean attention distance in input pixels. */
  values: number[][];
  patch: PatchSize;
}

export interface ExplainResult {
  model: {
    dir: string;
    family: ModelFamily;
    modelType: string;
    layers: number;
    heads: number;
    tokens: number;
    prefixTokens: number;
    grid: { height: number; width: number };
    patch: PatchSize;
  };
  image: PreparedImage;
  classes?: ClassScore[];
  similarities?: TextScore[];
  heads?: HeadsResult;
  rollout: RolloutResult[];
  gradRollout: GradRolloutResult[];
  chefer: CheferResult[];
  /** transformer-attribution, partial-lrp, raw-attention, gradcam (methods/lrp-run.ts). */
  lrp: LrpMethodResult[];
  distance?: DistanceResult;
  /** Methods asked for by default that do not apply, with the reason. */
  skipped: { method: ExplainMethod; reason: string }[];
  notes: string[];
  /** Raw attention of the image (and texts) for traces. */
  attentions: LayerTensor[];
  textAttentions?: LayerTensor[][];
  /** Milliseconds: forward pass, and each method after it. */
  timings: Record<string, number>;
}

function softmax(values: Float32Array): number[] {
  let max = -Infinity;
  for (const v of values) max = Math.max(max, v);
  const e = Array.from(values, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Why a CLS-based method cannot run on this token layout, or undefined when it can. */
function clsProblem(layout: TokenLayout): string | undefined {
  if (layout.prefixTokens === 0) {
    return `the model has no CLS token (${layout.tokens} tokens = the ${layout.grid.height}×${layout.grid.width} patches), and this method reads the CLS row`;
  }
  return undefined;
}

export function validateOptions(options: ExplainOptions): void {
  for (const m of options.methods ?? []) {
    if (!EXPLAIN_METHODS.includes(m)) throw new ExplainError(`unknown method '${m}' (choose from ${EXPLAIN_METHODS.join(', ')})`, { field: 'methods' });
  }
  for (const f of asList<HeadFusion>(options.headFusion, 'max')) {
    if (!HEAD_FUSIONS.includes(f)) throw new ExplainError(`unknown head fusion '${f}' (choose mean, max or min)`, { field: 'headFusion' });
  }
  for (const d of asList(options.discard, 0.9)) {
    try {
      checkDiscardRatio(d);
    } catch (e) {
      throw new ExplainError((e as Error).message, { field: 'discard' });
    }
  }
  if (options.topK !== undefined && (!Number.isInteger(options.topK) || options.topK < 1)) {
    throw new ExplainError(`topK must be a positive integer (got ${options.topK})`, { field: 'top' });
  }
  // The two string options select a branch with `=== 'vit-explain'`: an unchecked typo would silently run the other one.
  if (options.rolloutNormalization !== undefined && !ROLLOUT_NORMALIZATIONS.includes(options.rolloutNormalization)) {
    throw new ExplainError(`unknown rolloutNormalization '${options.rolloutNormalization}' (choose ${ROLLOUT_NORMALIZATIONS.join(' or ')})`, { field: 'rolloutNormalization' });
  }
  if (options.gradRollout !== undefined && !GRAD_ROLLOUT_VARIANTS.includes(options.gradRollout)) {
    throw new ExplainError(`unknown gradRollout variant '${options.gradRollout}' (choose ${GRAD_ROLLOUT_VARIANTS.join(' or ')})`, { field: 'gradRollout' });
  }
  const start = options.cheferStart;
  if (start !== undefined && start !== 'last' && start !== 'all' && !(Number.isInteger(start) && start >= 0)) {
    throw new ExplainError(`cheferStart must be 'last', 'all' or a layer index from 0 (got ${JSON.stringify(start)})`, { field: 'cheferStart' });
  }
  if (options.attnLrpAttention !== undefined && !ATTN_LRP_ATTENTIONS.includes(options.attnLrpAttention)) {
    throw new ExplainError(`unknown attnLrpAttention '${options.attnLrpAttention}' (choose ${ATTN_LRP_ATTENTIONS.join(' or ')})`, { field: 'attnLrpAttention' });
  }
  if (options.headsLayer !== undefined && !Number.isInteger(options.headsLayer)) {
    throw new ExplainError(`headsLayer must be an integer (got ${options.headsLayer}); negative counts from the last layer`, { field: 'headsLayer' });
  }
}

/** An explicit Chefer start layer must exist in every encoder it is applied to (CLIP: the image and the text one). */
function checkCheferStart(start: StartLayer, encoders: { name: string; layers: number }[]): void {
  if (typeof start !== 'number') return;
  for (const e of encoders) {
    if (start >= e.layers) {
      const which = encoders.length > 1 ? `the ${e.name} encoder has` : 'the model has';
      throw new ExplainError(`cheferStart ${start} is out of range: ${which} ${e.layers} layers (use 0..${e.layers - 1}, 'last' or 'all')`, { field: 'cheferStart' });
    }
  }
}

/** Explains one image with an already loaded model (reuse it across images: sessions are cached on it). */
export async function explainWithModel(model: ExplainModel, gradients: GradientEngine, image: PreparedImage, options: ExplainOptions = {}): Promise<ExplainResult> {
  validateOptions(options);
  const family = model.familyRules;
  const explicit = options.methods !== undefined;
  const methods = new Set<ExplainMethod>(options.methods ?? DEFAULT_EXPLAIN_METHODS);
  const texts = options.texts ?? [];
  family.checkOptions(model, { texts, classIndex: options.classIndex });
  const tokenized: TokenizedTexts | undefined = texts.length > 0 ? model.tokenize(texts) : undefined;

  // Refuse a bad class before any (possibly slow) graph building or inference.
  const classCount = model.staticClassCount;
  if (options.classIndex !== undefined && classCount !== undefined && (!Number.isInteger(options.classIndex) || options.classIndex < 0 || options.classIndex >= classCount)) {
    throw new ExplainError(`class ${options.classIndex} is out of range: ${model.info.dir} has ${classCount} classes (0..${classCount - 1})`, { field: 'classIndex' });
  }

  const timings: Record<string, number> = {};
  const wantGradients = METHODS.some((m) => m.needs === 'gradients' && methods.has(m.name));
  await family.prepare(model, gradients, image, wantGradients);
  let t0 = performance.now();
  const forward = await family.forward(model, gradients, image, tokenized, wantGradients);
  const fwd = forward.fwd;
  timings.forward = performance.now() - t0;
  const vision = fwd.vision;
  const layout = model.layout(image, vision[0].keys);
  const skipped: ExplainResult['skipped'] = [];
  const notes: string[] = [];
  const notApplicable = (method: ExplainMethod, reason: string): void => {
    if (explicit) throw new MethodNotApplicableError(method, reason);
    skipped.push({ method, reason });
    methods.delete(method);
  };
  if (layout.prefixTokens > 1) {
    notes.push(`the model has ${layout.prefixTokens} tokens before the patches (CLS plus ${layout.prefixTokens - 1} distillation/register token(s)); ` +
      'CLS-row methods use token 0 and the patch columns only, and mean attention distance drops all of them');
  }
  const cls = clsProblem(layout);
  if (cls) for (const m of METHODS) if (m.readsCls && methods.has(m.name)) notApplicable(m.name, cls);
  for (const [m, reason] of family.inapplicable(model, tokenized)) if (methods.has(m)) notApplicable(m, reason);
  // Before the (slower) gradient runs: a bad start layer would otherwise surface as a RangeError after them.
  if ((methods.has('chefer') || methods.has('transformer-attribution')) && options.cheferStart !== undefined) {
    const textLayers = fwd.text?.[0]?.length;
    checkCheferStart(options.cheferStart, [{ name: 'vision', layers: vision.length }, ...(textLayers ? [{ name: 'text', layers: textLayers }] : [])]);
  }

  const result: ExplainResult = {
    model: {
      dir: model.info.dir, family: family.name, modelType: model.info.modelType, layers: vision.length, heads: vision[0].heads,
      tokens: layout.tokens, prefixTokens: layout.prefixTokens, grid: layout.grid, patch: model.info.patch,
    },
    image, rollout: [], gradRollout: [], chefer: [], lrp: [], skipped, notes, attentions: vision, textAttentions: fwd.text, timings,
  };

  // Scores.
  let explainClasses: number[] = [];
  if (!fwd.logits && options.classIndex !== undefined) {
    throw new ExplainError(`classIndex ${options.classIndex} was given but ${model.info.onnxPath} has no 'logits' output (no classification head)`, { field: 'classIndex' });
  }
  if (fwd.logits) {
    const probs = softmax(fwd.logits);
    const labels = model.info.labels;
    const order = Array.from(fwd.logits.keys()).sort((a, b) => fwd.logits![b] - fwd.logits![a]);
    const listed = Math.min(order.length, Math.max(5, options.topK ?? 1));
    const label = (i: number): string => labels?.[i] ?? `class_${i}`;
    result.classes = order.slice(0, listed).map((i) => ({ index: i, label: label(i), logit: fwd.logits![i], probability: probs[i] }));
    if (options.classIndex !== undefined) {
      const c = options.classIndex;
      if (!Number.isInteger(c) || c < 0 || c >= fwd.logits.length) {
        throw new ExplainError(`class ${c} is out of range: ${model.info.dir} has ${fwd.logits.length} classes (0..${fwd.logits.length - 1})`, { field: 'classIndex' });
      }
      explainClasses = [c];
    } else {
      explainClasses = order.slice(0, options.topK ?? 1);
    }
  }
  if (fwd.similarities && tokenized) {
    const probs = softmax(fwd.similarities);
    result.similarities = tokenized.texts.map((text, i) => ({ index: i, text, logit: fwd.similarities![i], probability: probs[i] }));
  }

  // The methods: those reading only the attention maps first, then those needing gradients, which share one
  // gradient run per explained score.
  const labelOf = (i: number): string => model.info.labels?.[i] ?? `class_${i}`;
  const explained = explainClasses.map((c) => ({ classIndex: c, label: labelOf(c) }));
  const ctx: MethodContext = { model, options, vision, layout, fwd, result, image, gradients, explained };
  let targets: GradientTarget[] | undefined;
  for (const method of [...METHODS.filter((m) => m.needs === 'attention'), ...METHODS.filter((m) => m.needs === 'gradients')]) {
    if (!methods.has(method.name)) continue;
    if (method.needs === 'attention') {
      t0 = performance.now();
      await method.run(ctx);
    } else {
      if (!targets) {
        t0 = performance.now();
        targets = await forward.gradients(explainClasses);
        timings.gradients = performance.now() - t0;
      }
      t0 = performance.now();
      await method.run({ ...ctx, targets });
    }
    timings[method.name] = performance.now() - t0;
  }
  // Attention-only LRP methods ran before the gradient ones: list them in the method table's order (stable sort, so
  // each method's classes keep theirs).
  result.lrp.sort((a, b) => LRP_METHODS.indexOf(a.method) - LRP_METHODS.indexOf(b.method));
  return result;
}

/** Loads the model, explains one image, releases the sessions. For many images, load once and use explainWithModel. */
export async function explainImage(modelDir: string, image: string | Uint8Array, options: ExplainOptions = {}): Promise<ExplainResult> {
  validateOptions(options);
  const model = await ExplainModel.load(modelDir, options.load);
  const gradients = new GradientEngine(model);
  try {
    const prepared = await model.prepareImage(image);
    return await explainWithModel(model, gradients, prepared, options);
  } finally {
    await gradients.release();
    await model.release();
  }
}
