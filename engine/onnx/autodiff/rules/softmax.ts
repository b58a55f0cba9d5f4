// Softmax and LogSoftmax in closed form from the forward output: dx = y ⊙ (g − Σ g⊙y). The Jacobian (a
// [.., n, n] tensor per row) is never formed. Before opset 13 the op normalises over all axes from `axis` on
// (2-D coercion); from 13 over the single axis.
import { attrInt } from '../../graph.js';
import type { Rule, RuleContext } from '../rule.js';

function softmaxAxes(ctx: RuleContext): number[] {
  const { e, node } = ctx;
  const r = e.dims(node.input[0]).length;
  const legacy = e.opset < 13;
  let axis = attrInt(node, 'axis', legacy ? 1 : -1);
  if (axis < 0) axis += r;
  return legacy ? [...Array(r - axis).keys()].map((i) => i + axis) : [axis];
}

export const Softmax: Rule = (ctx) => {
  const g = ctx.gradOut(0);
  const { e, node } = ctx;
  if (!g) return [];
  const y = node.output[0];
  const gy = e.mul(g, y);
  const s = e.reduceSum(gy, softmaxAxes(ctx), true);
  return [e.sub(gy, e.mul(y, s))];
};

export const LogSoftmax: Rule = (ctx) => {
  const g = ctx.gradOut(0);
  const { e, node } = ctx;
  if (!g) return [];
  const y = node.output[0];
  const s = e.reduceSum(g, softmaxAxes(ctx), true);
  return [e.sub(g, e.mul(e.unary('Exp', y), s))];
};
