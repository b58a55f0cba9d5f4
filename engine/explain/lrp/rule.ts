// What a relevance rule sees: the forward node, the relevance of its outputs (undefined where none arrives), which
// inputs lie on the relevance path, and which tensors are constants (depend on no graph input: weights, biases, the
// LayerNorm gain, folded scales). A rule emits ONNX nodes through the emitter and returns one relevance tensor per
// input (undefined where it deliberately passes none, e.g. the LayerNorm denominator).
import type { NodeProto } from 'onnx-buf';
import type { Emitter } from '../../onnx/autodiff/emitter.js';

export interface LrpOptions {
  /** α of the LRP-αβ rule for linear layers (β = α − 1). Chefer et al. use α = 1, β = 0. */
  alpha: number;
}

export interface LrpContext {
  readonly e: Emitter;
  readonly node: NodeProto;
  readonly options: LrpOptions;
  /** Relevance of output i, or undefined when none reaches it. */
  relOut(i: number): string | undefined;
  /** Whether input i lies on the relevance path (only those get relevance). */
  needsRel(i: number): boolean;
  /** Whether a tensor is a constant of the model (no graph input reaches it). */
  isConstant(tensor: string): boolean;
  /** The node producing a tensor (undefined for inputs and initializers). */
  producer(tensor: string): NodeProto | undefined;
}

export type LrpRule = (ctx: LrpContext) => (string | undefined)[];
