// What a backward rule sees. A rule gets the forward node, the gradients of its outputs (undefined where an output
// does not reach a seed: the rule treats it as zero; single-output rules are wrapped in withGradient and get their
// gradient as a string only when there is one), and which inputs need a gradient; it emits backward nodes through
// the emitter and returns one gradient name per input (undefined for inputs that need none). Rules reference forward
// tensors by name — those become the residuals the two-phase mode saves — so a rule should reference only what its
// formula needs (Softmax: its output; Mul: the other operand), never recompute the forward.
import type { NodeProto } from 'onnx-buf';
import type { Emitter } from './emitter.js';

export interface RuleContext {
  readonly e: Emitter;
  readonly node: NodeProto;
  /** Gradient of output i, or undefined when that output does not influence any seed. */
  gradOut(i: number): string | undefined;
  /** Whether input i lies on a path from a `wrt` tensor (only those get gradients). */
  needsGrad(i: number): boolean;
  /** Final gradient of any tensor whose consumers have all been processed (e.g. the output of a consumer node). */
  gradOf(tensor: string): string | undefined;
  /**
   * The separate contributions summed into a tensor's gradient, with the consumer node each came from (undefined
   * for a seed's cotangent). Lets a rule exploit the structure of its consumers (Softmax → MatMul(P, V)).
   */
  gradParts(tensor: string): readonly GradPart[];
  /** Adds output names to the forward node (for ops whose optional outputs save recomputation, e.g. LayerNormalization). */
  addForwardOutput(dims: number[], elemType: number, hint: string): string;
}

export interface GradPart {
  from: NodeProto | undefined;
  grad: string;
}

export type Rule = (ctx: RuleContext) => (string | undefined)[];

/** A rule that needs its (first) output's gradient: it is called only when there is one, and gets it as a string. */
export type GradientRule = (ctx: RuleContext, g: string) => (string | undefined)[];

/** Wraps a GradientRule: a node whose output reaches no seed contributes no gradient, without the rule checking. */
export function withGradient(rule: GradientRule): Rule {
  return (ctx) => {
    const g = ctx.gradOut(0);
    return g === undefined ? [] : rule(ctx, g);
  };
}
