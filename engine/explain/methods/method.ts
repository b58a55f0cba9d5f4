// What an explain method is (tinygrad's gradient table, applied to explanation methods): a name, what it reads —
// the attention maps of the forward, or also their gradients — and a compute step that fills its part of the
// result. explainWithModel (api.ts) runs the table; adding a method is a new file here plus its entry in index.ts.
import type { ExplainMethod, ExplainOptions, ExplainResult } from '../api.js';
import type { GradientTarget } from '../families/index.js';
import type { ExplainModel, ForwardResult, TokenLayout } from '../model.js';
import type { LayerTensor } from '../tensor.js';
import type { PreparedImage } from '../preprocess.js';
import type { GradientEngine } from '../gradients.js';

export interface MethodContext {
  model: ExplainModel;
  options: ExplainOptions;
  /** Vision attention per layer (forward order) of the image. */
  vision: LayerTensor[];
  layout: TokenLayout;
  fwd: ForwardResult;
  /** The result being filled; a method writes only its own fields. */
  result: ExplainResult;
  /** The image and the gradient engine (the LRP methods run their own relevance pass on them). */
  image: PreparedImage;
  gradients: GradientEngine;
  /** Classifiers: the classes being explained (`classIndex`, or the top `topK`), for methods that need no attention
   *  gradients but explain a class (attn-lrp). Empty for models without logits. */
  explained: { classIndex: number; label: string }[];
}

export interface GradientMethodContext extends MethodContext {
  /** One entry per explained score (class or text), with its attention gradients; computed once for all methods. */
  targets: GradientTarget[];
}

interface MethodBase {
  readonly name: ExplainMethod;
  /** Reads the CLS token's row, so it cannot run on a model without a CLS token. */
  readonly readsCls: boolean;
}

export interface AttentionMethod extends MethodBase {
  readonly needs: 'attention';
  run(ctx: MethodContext): Promise<void> | void;
}

export interface GradientMethod extends MethodBase {
  readonly needs: 'gradients';
  run(ctx: GradientMethodContext): Promise<void> | void;
}

export type ExplainMethodImpl = AttentionMethod | GradientMethod;

/** An option that takes one value or a list (head fusion, discard ratio) as a list. */
export function asList<T>(v: T | readonly T[] | undefined, fallback: T): T[] {
  if (v === undefined) return [fallback];
  return Array.isArray(v) ? [...(v as readonly T[])] : [v as T];
}
