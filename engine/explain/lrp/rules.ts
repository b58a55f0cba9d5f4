// The LRP rule registry, keyed by ONNX op type: the rules of Chefer, Gur & Wolf, "Transformer Interpretability
// Beyond Attention Visualization" (CVPR 2021), as their code applies them (hila-chefer/Transformer-Explainability,
// modules/layers_ours.py and baselines/ViT/ViT_LRP.py), restated per ONNX op of an exported ViT:
//   - linear layers (MatMul / Gemm with a constant weight): LRP-αβ, α = 1, β = 0 by default; the bias is ignored
//     (their Linear.relprop uses F.linear without bias), so the bias Add passes relevance through;
//   - skip connections (Add of two computed tensors): their Add.relprop — x·R/z per operand, then each operand's share
//     rescaled so the two shares are |Σa| : |Σb| of ΣR (relevance is conserved at the sum);
//   - matrix products of two computed tensors (Q·Kᵀ, A·V): their einsum relprop x·∂z/∂x·R/z, then halved
//     (Attention.relprop: cam /= 2), so both operands share the relevance;
//   - Softmax, GELU, LayerNorm, Dropout: identity-like pass-through (their RelProp default `return R`). The exported
//     LayerNorm is a chain (x − mean) / std · γ + β: Sub passes to the minuend, Div to the numerator, Mul/Add with a
//     constant pass through; GELU's erf form is recognised as one op by fuse.ts;
//   - shape ops (Reshape, Transpose, Gather, Slice, Concat…): relevance is moved like the gradient (their IndexSelect /
//     Cat relprop x·∂z/∂x·R/z is that routing), so the autodiff rules are reused;
//   - a tensor used by several nodes (their Clone): R = x · Σᵢ safe_divide(Rᵢ, x) — in build.ts.
// An op that receives relevance and is missing here fails the build with its type and node name.
import type { Rule as VjpRule, RuleContext as VjpContext } from '../../onnx/autodiff/rule.js';
import { ReshapeLike, Transpose, Concat, Split, Slice, Gather } from '../../onnx/autodiff/rules/shape.js';
import { attrInt } from '../../onnx/graph.js';
import type { Emitter } from '../../onnx/autodiff/emitter.js';
import { LrpUnsupportedOpError } from './errors.js';
import type { LrpContext, LrpRule } from './rule.js';
import { safeDivide } from './safe.js';

function nodeName(ctx: LrpContext): string {
  return ctx.node.name || ctx.node.output[0];
}

/** Relevance passes unchanged from output 0 to input 0 (Softmax, GELU, Dropout, Identity…). */
const passThrough: LrpRule = (ctx) => [ctx.relOut(0)];

/** Add/Mul with one constant operand (bias, LayerNorm γ/β, a folded scale): all relevance to the computed operand. */
function toComputedOperand(ctx: LrpContext): (string | undefined)[] | undefined {
  const [a, b] = ctx.node.input;
  const r = ctx.relOut(0);
  if (!r) return [];
  const ca = ctx.isConstant(a);
  const cb = ctx.isConstant(b);
  if (ca && !cb) return [undefined, ctx.e.reshape(r, ctx.e.dims(b))];
  if (cb && !ca) return [ctx.e.reshape(r, ctx.e.dims(a)), undefined];
  return undefined;
}

function reduceAll(e: Emitter, x: string): string {
  return e.reduceSum(x, e.dims(x).map((_, i) => i), false);
}

/** Their Add.relprop (skip connections). */
const Add: LrpRule = (ctx) => {
  const bias = toComputedOperand(ctx);
  if (bias) return bias;
  const { e, node } = ctx;
  const r = ctx.relOut(0);
  if (!r) return [];
  const [x0, x1] = node.input;
  const z = node.output[0];
  if (e.dims(x0).join() !== e.dims(z).join() || e.dims(x1).join() !== e.dims(z).join()) {
    throw new LrpUnsupportedOpError('Add', nodeName(ctx), `a skip connection needs two operands of the output's shape; got [${e.dims(x0)}] + [${e.dims(x1)}]`);
  }
  const s = safeDivide(e, r, z);
  const a = e.mul(x0, s);
  const b = e.mul(x1, s);
  const aSum = reduceAll(e, a);
  const bSum = reduceAll(e, b);
  const aAbs = e.unary('Abs', aSum);
  const bAbs = e.unary('Abs', bSum);
  const total = e.add(aAbs, bAbs);
  const rSum = reduceAll(e, r);
  const aFact = e.mul(safeDivide(e, aAbs, total), rSum);
  const bFact = e.mul(safeDivide(e, bAbs, total), rSum);
  return [
    ctx.needsRel(0) ? e.mul(a, safeDivide(e, aFact, aSum)) : undefined,
    ctx.needsRel(1) ? e.mul(b, safeDivide(e, bFact, bSum)) : undefined,
  ];
};

const Mul: LrpRule = (ctx) => {
  const r = toComputedOperand(ctx);
  if (r) return r;
  throw new LrpUnsupportedOpError('Mul', nodeName(ctx), 'a product of two computed tensors (a gate); only the erf form of GELU is recognised as one op');
};

/** x − c or LayerNorm's x − mean(x): the minuend keeps the relevance. */
const Sub: LrpRule = (ctx) => {
  const [a, b] = ctx.node.input;
  const p = ctx.producer(b);
  const centring = p !== undefined && p.opType === 'ReduceMean' && p.input[0] === a;
  if (!ctx.isConstant(b) && !centring) {
    throw new LrpUnsupportedOpError('Sub', nodeName(ctx), 'only x − constant and LayerNorm centring x − mean(x) have a rule');
  }
  const rel = ctx.relOut(0);
  return [rel ? ctx.e.reshape(rel, ctx.e.dims(a)) : undefined, undefined];
};

/** x / c (attention scale) or LayerNorm's (x − μ) / σ: the numerator keeps the relevance. */
const Div: LrpRule = (ctx) => {
  const [a, b] = ctx.node.input;
  const p = ctx.producer(b);
  if (!ctx.isConstant(b) && !(p !== undefined && p.opType === 'Sqrt')) {
    throw new LrpUnsupportedOpError('Div', nodeName(ctx), 'only x / constant and the LayerNorm division by the standard deviation have a rule');
  }
  const rel = ctx.relOut(0);
  return [rel ? ctx.e.reshape(rel, ctx.e.dims(a)) : undefined, undefined];
};

/**
 * LRP-αβ for z = x·W (W [in, out] constant), as their Linear.relprop:
 *   f(w₁, w₂) = x⁺ ⊙ (S·w₁ᵀ) + x⁻ ⊙ (S·w₂ᵀ),  S = safe_divide(R, x⁺·w₁ + x⁻·w₂);
 *   R_x = α·f(W⁺, W⁻) − β·f(W⁻, W⁺),  β = α − 1.
 */
export function linearRelevance(e: Emitter, x: string, w: string, r: string, alpha: number): string {
  const wp = e.unary('Relu', w);
  const wn = e.sub(w, wp);
  const xp = e.unary('Relu', x);
  const xn = e.sub(x, xp);
  const f = (w1: string, w2: string): string => {
    const z = e.add(e.matmul(xp, w1), e.matmul(xn, w2));
    const s = safeDivide(e, r, z);
    return e.add(e.mul(xp, e.matmul(s, e.transposeLast2(w1))), e.mul(xn, e.matmul(s, e.transposeLast2(w2))));
  };
  const beta = alpha - 1;
  const act = f(wp, wn);
  if (beta === 0) return e.scale(act, alpha);
  return e.sub(e.scale(act, alpha), e.scale(f(wn, wp), beta));
}

/** Their einsum relprop for z = A·B with both operands computed, halved as in Attention.relprop. */
function bilinearRelevance(ctx: LrpContext): (string | undefined)[] {
  const { e, node } = ctx;
  const r = ctx.relOut(0);
  if (!r) return [];
  const [a, b] = node.input;
  const s = safeDivide(e, r, node.output[0]);
  const half = (t: string): string => e.scale(t, 0.5);
  return [
    ctx.needsRel(0) ? half(e.mul(a, e.reduceToShape(e.matmul(s, e.transposeLast2(b)), e.dims(a)))) : undefined,
    ctx.needsRel(1) ? half(e.mul(b, e.reduceToShape(e.matmul(e.transposeLast2(a), s), e.dims(b)))) : undefined,
  ];
}

const MatMul: LrpRule = (ctx) => {
  const [a, b] = ctx.node.input;
  const r = ctx.relOut(0);
  if (!r) return [];
  const ca = ctx.isConstant(a);
  const cb = ctx.isConstant(b);
  if (cb && !ca) {
    if (ctx.e.dims(b).length !== 2) throw new LrpUnsupportedOpError('MatMul', nodeName(ctx), `a linear layer needs a 2-D weight; got [${ctx.e.dims(b)}]`);
    return [linearRelevance(ctx.e, a, b, r, ctx.options.alpha), undefined];
  }
  if (!ca && !cb) return bilinearRelevance(ctx);
  throw new LrpUnsupportedOpError('MatMul', nodeName(ctx), 'a constant left operand (W·x) has no rule');
};

/** Gemm y = A·op(B) + C with B a constant weight: the linear rule (bias C ignored, as theirs). */
const Gemm: LrpRule = (ctx) => {
  const { e, node } = ctx;
  const r = ctx.relOut(0);
  if (!r) return [];
  const [a, b] = node.input;
  if (attrInt(node, 'transA', 0) !== 0 || !ctx.isConstant(b) || ctx.isConstant(a)) {
    throw new LrpUnsupportedOpError('Gemm', nodeName(ctx), 'only A·op(W) + c with a constant weight W and transA = 0 has a rule');
  }
  const w = attrInt(node, 'transB', 0) ? e.transposeLast2(b) : b;
  return [linearRelevance(e, a, w, r, ctx.options.alpha)];
};

/** Shape ops move relevance the way they move gradients: reuse the autodiff rule with R in place of the gradient. */
function routed(rule: VjpRule): LrpRule {
  return (ctx) => {
    const vctx: VjpContext = {
      e: ctx.e,
      node: ctx.node,
      gradOut: (i) => ctx.relOut(i),
      needsGrad: (i) => ctx.needsRel(i),
      gradOf: () => undefined,
      gradParts: () => [],
      addForwardOutput: () => {
        throw new LrpUnsupportedOpError(ctx.node.opType, nodeName(ctx), 'internal: a shape rule asked for a forward output');
      },
    };
    return rule(vctx);
  };
}

export const lrpRules: ReadonlyMap<string, LrpRule> = new Map<string, LrpRule>([
  ['Add', Add], ['Sub', Sub], ['Mul', Mul], ['Div', Div],
  ['MatMul', MatMul], ['Gemm', Gemm],
  ['Softmax', passThrough], ['Gelu', passThrough], ['Dropout', passThrough], ['Identity', passThrough],
  ['Relu', passThrough], ['LayerNormalization', passThrough],
  ['Reshape', routed(ReshapeLike)], ['Flatten', routed(ReshapeLike)], ['Squeeze', routed(ReshapeLike)], ['Unsqueeze', routed(ReshapeLike)],
  ['Transpose', routed(Transpose)], ['Concat', routed(Concat)], ['Split', routed(Split)], ['Slice', routed(Slice)],
  ['Gather', routed(Gather)],
]);

/** Op types with an LRP rule (for docs and coverage checks). */
export function lrpSupportedOps(): string[] {
  return [...lrpRules.keys()].sort();
}
