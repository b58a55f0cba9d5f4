// What differs between the model families Heed explains (transformers.js keeps one folder per family; so do we):
// the inputs fed, the score output and what it ranks (classes or texts), the options and methods that apply, and
// how the gradient methods get one gradient run per explained score. The explain flow (api.ts) only talks to this
// interface; adding a family is a new file here plus its entry in index.ts.
import type * as ortTypes from 'onnxruntime-node';
import type { Feeds } from '../../onnx/session.js';
import type { ClipTokenizer } from '../../text/tokenizer.js';
import type { ExplainMethod } from '../api.js';
import type { StartLayer } from '../chefer.js';
import type { ModelFamily } from '../folder.js';
import type { AttentionGradients, GradientEngine } from '../gradients.js';
import type { ExplainModel, ForwardResult, TokenizedTexts } from '../model.js';
import type { PreparedImage } from '../preprocess.js';

/** The score a gradient run explains, as the results name it: a class (classifiers) or a text (CLIP). */
export type ScoreSubject = { classIndex: number; label: string } | { textIndex: number; text: string };

/** One explained score with the gradients of every attention map. */
export interface GradientTarget {
  about: ScoreSubject;
  grads: AttentionGradients;
  /** CLIP: the explained text's tokens SOT..EOT and EOT's position, for the text relevance. */
  text?: { tokens: string[]; eot: number; tokenText(token: string): string };
}

export interface FamilyForward {
  fwd: ForwardResult;
  /** Gradients of each explained score: the given classes for a classifier, every text for CLIP. */
  gradients(classes: readonly number[]): Promise<GradientTarget[]>;
}

export interface ExplainFamily {
  readonly name: ModelFamily;
  /** Graph output holding the score: class logits or logits_per_image. */
  readonly scoreOutput: string;
  /** Why a model of this family may lack its score output, and what to do. */
  readonly missingScoreHint: string;
  /** What the score ranks; the gradient engine checks it before class or text runs. */
  readonly scores: 'classes' | 'texts';
  /** Graph inputs fed besides pixel_values. */
  readonly textInputs: readonly string[];
  /** Chefer's default start layer (each original notebook's choice). */
  readonly cheferStart: StartLayer;
  loadTokenizer(dir: string): Promise<ClipTokenizer | undefined>;
  /** Refuses options that do not apply to this family (before any inference). */
  checkOptions(model: ExplainModel, options: { texts: readonly string[]; classIndex?: number }): void;
  /** Number of classes when known before inference, for early range checks. */
  staticClassCount(model: ExplainModel): number | undefined;
  /** Adds the text inputs to the feeds of a forward. */
  addTextFeeds(model: ExplainModel, feeds: Feeds, texts: TokenizedTexts | undefined): void;
  /** The score fields of a forward result from the session outputs. */
  readScores(model: ExplainModel, out: Record<string, ortTypes.Tensor>, scores: Float32Array, texts: TokenizedTexts | undefined): Omit<ForwardResult, 'vision' | 'fused'>;
  /** Methods that cannot run on this model, with the reason, in the order they are reported. */
  inapplicable(model: ExplainModel, tokenized: TokenizedTexts | undefined): [ExplainMethod, string][];
  /** Builds what the forward needs ahead of time (so that the timed forward excludes session creation). */
  prepare(model: ExplainModel, gradients: GradientEngine, image: PreparedImage, wantGradients: boolean): Promise<void>;
  forward(model: ExplainModel, gradients: GradientEngine, image: PreparedImage, tokenized: TokenizedTexts | undefined, wantGradients: boolean): Promise<FamilyForward>;
}
