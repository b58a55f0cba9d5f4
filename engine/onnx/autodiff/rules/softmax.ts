// Softmax and LogSoftmax in closed form from the forward output: dx = y ⊙ (g − Σ g⊙y). The Jacobian (a
// [.., n, n] tensor per row) is never formed. Before opset 13 the op normalises over all axes from `axis` on
// (2-D coercion); from 13 over the single axis.
//
// Attention shortcut (FlashAttention's backward): when the probabilities P feed O = P·V, the contribution of that
// MatMul to Σ_j g_ij·y_ij is Σ_j (dO_i·V_j)·P_ij = dO_i·O_i, a reduction over the small head dimension instead of
// over the [heads, q, k] score tensor. That removes two of the four full passes over the scores (at 64×64 latents
// each pass touches 512 MB).
import type { NodeProto } from 'onnx-buf';
import { attrInt } from '../../graph.js';
import type { Emitter } from '../emitter.js';
import { withGradient, type Rule, type RuleContext } from '../rule.js';

function softmaxAxes(ctx: RuleContext): number[] {
  const { e, node } = ctx;
  const r = e.dims(node.input[0]).length;
  const legacy = e.opset < 13;
  let axis = attrInt(node, 'axis', legacy ? 1 : -1);
  if (axis < 0) axis += r;
  return legacy ? [...Array(r - axis).keys()].map((i) => i + axis) : [axis];
}

function isNoOpCast(e: Emitter, n: NodeProto): boolean {
  return n.opType === 'Identity' || (n.opType === 'Cast' && e.type(n.input[0]) === e.type(n.output[0]));
}

/**
 * Σ over the softmax axis of (grad of `t`) ⊙ y, as a list of keepdims terms, one per gradient contribution to `t`.
 * `t` is y itself or a no-op Cast/Identity of it (same values, same dims).
 */
function rowDots(ctx: RuleContext, t: string, y: string, axis: number): string[] {
  const { e } = ctx;
  const yd = e.dims(y);
  const terms: string[] = [];
  for (const part of ctx.gradParts(t)) {
    const n = part.from;
    if (n && isNoOpCast(e, n) && n.input[0] === t) {
      terms.push(...rowDots(ctx, n.output[0], y, axis));
      continue;
    }
    const dO = n?.opType === 'MatMul' ? ctx.gradOf(n.output[0]) : undefined;
    if (n && dO && n.input[0] === t && n.input[1] !== t && axis === yd.length - 1 && yd.length >= 2 &&
        e.dims(n.output[0]).length === yd.length) {
      // Σ_j (dO·Vᵀ)_ij P_ij = Σ_d dO_id O_id, summed back over any batch broadcast of P.
      const dot = e.reduceSum(e.mul(dO, n.output[0]), [yd.length - 1], true);
      terms.push(e.reduceToShape(dot, [...yd.slice(0, -1), 1]));
      continue;
    }
    terms.push(e.reduceSum(e.mul(part.grad, y), [axis], true));
  }
  return terms;
}

export const Softmax: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  const axes = softmaxAxes(ctx);
  if (axes.length === 1) {
    const terms = rowDots(ctx, y, y, axes[0]);
    const dot = terms.reduce((acc, t) => e.add(acc, t));
    return [e.mul(y, e.sub(g, dot))];
  }
  const gy = e.mul(g, y);
  const s = e.reduceSum(gy, axes, true);
  return [e.sub(gy, e.mul(y, s))];
});

export const LogSoftmax: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  const s = e.reduceSum(g, softmaxAxes(ctx), true);
  return [e.sub(g, e.mul(e.unary('Exp', y), s))];
});
