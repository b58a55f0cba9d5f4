// Elementwise rules. Binary ops broadcast, so each operand's gradient is summed back to its own shape
// (reduce-to-shape). Unary rules reuse the forward output where the derivative is a function of it
// (sigmoid' = y(1−y), sqrt' = 1/(2y), exp' = y) so that the residual is one tensor, not a recomputation.
import { DataType, toNumbers } from '../../tensor.js';
import { withGradient, type Rule } from '../rule.js';

export const Add: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  return node.input.map((x, i) => (ctx.needsGrad(i) ? e.reduceToShape(g, e.dims(x)) : undefined));
});

export const Sub: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [a, b] = node.input;
  return [
    ctx.needsGrad(0) ? e.reduceToShape(g, e.dims(a)) : undefined,
    ctx.needsGrad(1) ? e.reduceToShape(e.neg(g), e.dims(b)) : undefined,
  ];
});

export const Mul: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [a, b] = node.input;
  return [
    ctx.needsGrad(0) ? e.reduceToShape(e.mul(g, b), e.dims(a)) : undefined,
    ctx.needsGrad(1) ? e.reduceToShape(e.mul(g, a), e.dims(b)) : undefined,
  ];
});

export const Div: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [a, b] = node.input;
  const y = node.output[0];
  return [
    ctx.needsGrad(0) ? e.reduceToShape(e.div(g, b), e.dims(a)) : undefined,
    // d(a/b)/db = −a/b² = −y/b: reuses the forward output instead of squaring b.
    ctx.needsGrad(1) ? e.reduceToShape(e.neg(e.div(e.mul(g, y), b)), e.dims(b)) : undefined,
  ];
});

export const Pow: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [a, b] = node.input;
  const y = node.output[0];
  const t = e.type(a);
  let ga: string | undefined;
  if (ctx.needsGrad(0)) {
    const bv = e.info(b).value;
    const p = bv ? toNumbers(bv) : undefined;
    if (p && p.length > 0 && p.every((v) => v === p[0])) {
      // Constant exponent (LayerNorm's x², GELU's x³): closed forms without Pow where possible.
      const k = p[0];
      if (k === 0) ga = undefined;
      else if (k === 1) ga = g;
      else if (k === 2) ga = e.mul(g, e.scale(a, 2));
      else if (k === 0.5) ga = e.div(e.scale(g, 0.5), y);
      else ga = e.mul(g, e.scale(e.pow(a, e.scalar(k - 1, e.type(b))), k));
      if (ga === undefined) ga = e.zeros(e.dims(a), t);
    } else {
      const bm1 = e.sub(b, e.scalar(1, e.type(b)));
      ga = e.mul(g, e.mul(e.cast(b, t), e.pow(a, bm1)));
    }
    ga = e.reduceToShape(ga, e.dims(a));
  }
  let gb: string | undefined;
  if (ctx.needsGrad(1)) {
    // d(a^b)/db = y·ln(a); only meaningful for a > 0 (as in torch).
    gb = e.reduceToShape(e.mul(g, e.mul(y, e.unary('Log', a))), e.dims(b));
  }
  return [ga, gb];
});

export const Neg: Rule = withGradient((ctx, g) => [ctx.e.neg(g)]);

export const Identity: Rule = (ctx) => [ctx.gradOut(0)];

/** Dropout at inference is the identity on output 0; the mask output carries no gradient. */
export const Dropout: Rule = (ctx) => [ctx.gradOut(0)];

export const Cast: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  // Float→float casts (fp16 upcasts, no-op casts) pass the gradient back in the input's precision.
  return [e.cast(g, e.type(node.input[0]))];
});

export const Sqrt: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  return [e.div(e.scale(g, 0.5), node.output[0])];
});

export const Exp: Rule = withGradient((ctx, g) => [ctx.e.mul(g, ctx.node.output[0])]);

export const Log: Rule = withGradient((ctx, g) => [ctx.e.div(g, ctx.node.input[0])]);

export const Reciprocal: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  return [e.neg(e.mul(g, e.mul(y, y)))];
});

export const Sigmoid: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  // σ' = y(1 − y)
  return [e.mul(g, e.mul(y, e.sub(e.scalar(1, e.type(y)), y)))];
});

export const Tanh: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  return [e.mul(g, e.sub(e.scalar(1, e.type(y)), e.mul(y, y)))];
});

export const Erf: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const x = node.input[0];
  // erf'(x) = 2/√π · exp(−x²)
  const ex = e.unary('Exp', e.neg(e.mul(x, x)));
  return [e.mul(g, e.scale(ex, 2 / Math.sqrt(Math.PI)))];
});

export const Sin: Rule = withGradient((ctx, g) => [ctx.e.mul(g, ctx.e.unary('Cos', ctx.node.input[0]))]);

export const Cos: Rule = withGradient((ctx, g) => [ctx.e.neg(ctx.e.mul(g, ctx.e.unary('Sin', ctx.node.input[0])))]);

export const Relu: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const x = node.input[0];
  const pos = e.op('Greater', [x, e.scalar(0, e.type(x))], e.dims(x), DataType.BOOL);
  return [e.where(pos, g, e.scalar(0, e.type(g)))];
});

export const Abs: Rule = withGradient((ctx, g) => [ctx.e.mul(g, ctx.e.unary('Sign', ctx.node.input[0]))]);

export const Where: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [c, a, b] = node.input;
  const zero = e.scalar(0, e.type(g));
  return [
    undefined,
    ctx.needsGrad(1) ? e.reduceToShape(e.where(c, g, zero), e.dims(a)) : undefined,
    ctx.needsGrad(2) ? e.reduceToShape(e.where(c, zero, g), e.dims(b)) : undefined,
  ];
});

/** Sum(x0, x1, …): every operand gets the (reduced) gradient. */
export const Sum: Rule = Add;

export const LeakyRelu: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const x = node.input[0];
  const alpha = node.attribute.find((a) => a.name === 'alpha')?.f ?? 0.01;
  const pos = e.op('Greater', [x, e.scalar(0, e.type(x))], e.dims(x), DataType.BOOL);
  return [e.where(pos, g, e.scale(g, alpha))];
});
