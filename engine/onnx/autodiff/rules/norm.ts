// Normalisation layers in closed form. With x̂ = (x − μ)·r (r = 1/√(var+ε)) and gₛ = g·γ:
//   dx = r · (gₛ − mean(gₛ) − x̂ · mean(gₛ·x̂)),   dγ = Σ g·x̂,   dβ = Σ g
// (means over the normalised axes). InstanceNormalization has no statistics outputs, so μ and r are recomputed from
// its input by two cheap reductions (the input is the only residual); LayerNormalization gets its optional Mean /
// InvStdDev outputs switched on in the forward, so nothing is recomputed.
import { attrFloat, attrInt } from '../../graph.js';
import { DataType, toNumbers } from '../../tensor.js';
import type { Emitter } from '../emitter.js';
import { withGradient, type Rule } from '../rule.js';

function allOnes(e: Emitter, name: string): boolean {
  const v = e.info(name).value;
  return v !== undefined && toNumbers(v).every((x) => x === 1);
}

function normBackward(e: Emitter, g: string, xhat: string, rstd: string, gamma: string | undefined, axes: number[]): string {
  const gs = gamma ? e.mul(g, gamma) : g;
  const m1 = e.reduce('ReduceMean', gs, axes, true);
  const m2 = e.reduce('ReduceMean', e.mul(gs, xhat), axes, true);
  return e.mul(rstd, e.sub(e.sub(gs, m1), e.mul(xhat, m2)));
}

export const InstanceNormalization: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [x, scale, bias] = node.input;
  const xd = e.dims(x);
  const r = xd.length;
  const axes = [...Array(r - 2).keys()].map((i) => i + 2);
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const t = e.type(x);
  const mu = e.reduce('ReduceMean', x, axes, true);
  const xc = e.sub(x, mu);
  const variance = e.reduce('ReduceMean', e.mul(xc, xc), axes, true);
  const rstd = e.unary('Reciprocal', e.unary('Sqrt', e.add(variance, e.scalar(eps, t))));
  const xhat = e.mul(xc, rstd);
  const perChannel = [xd[1], ...new Array(r - 2).fill(1)];
  const gamma = allOnes(e, scale) ? undefined : e.reshape(scale, perChannel);
  const outAxes = [0, ...axes];
  return [
    ctx.needsGrad(0) ? normBackward(e, g, xhat, rstd, gamma, axes) : undefined,
    ctx.needsGrad(1) ? e.reshape(e.reduceSum(e.mul(g, xhat), outAxes, false), e.dims(scale)) : undefined,
    bias && ctx.needsGrad(2) ? e.reshape(e.reduceSum(g, outAxes, false), e.dims(bias)) : undefined,
  ];
});

export const LayerNormalization: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [x, scale, bias] = node.input;
  const xd = e.dims(x);
  const r = xd.length;
  let axis = attrInt(node, 'axis', -1);
  if (axis < 0) axis += r;
  const axes = [...Array(r - axis).keys()].map((i) => i + axis);
  const statDims = xd.map((d, i) => (i >= axis ? 1 : d));
  const stashType = attrInt(node, 'stash_type', 1) === 1 ? DataType.FLOAT : e.type(x);
  const mean = node.output[1] || ctx.addForwardOutput(statDims, stashType, 'ln_mean');
  const inv = node.output[2] || ctx.addForwardOutput(statDims, stashType, 'ln_invstd');
  const t = e.type(x);
  const meanT = e.cast(mean, t);
  const invT = e.cast(inv, t);
  const xhat = e.mul(e.sub(x, meanT), invT);
  const gamma = allOnes(e, scale) ? undefined : scale;
  return [
    ctx.needsGrad(0) ? normBackward(e, g, xhat, invT, gamma, axes) : undefined,
    ctx.needsGrad(1) ? e.reduceToShape(e.mul(g, xhat), e.dims(scale)) : undefined,
    bias && ctx.needsGrad(2) ? e.reduceToShape(g, e.dims(bias)) : undefined,
  ];
});
