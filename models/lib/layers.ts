// torch 1.13 / opset 14 export patterns of the layers the model families share. Each function emits nodes in the
// builder's current scope (the caller opens the module scope, e.g. `g.scope('norm1', ...)`), so node and parameter
// names come out as module paths, as in real exports.
import { DT, tensorI64, type GraphBuilder, type Init } from './graph-builder.js';

// ---- init rules (torch defaults) ------------------------------------------------------------------------------

/** nn.Linear / nn.Conv2d default: kaiming_uniform_(a=√5) for weights and U(±1/√fan_in) for biases, both 1/√fan_in. */
export function torchDefault(fanIn: number): Init {
  return { kind: 'uniform', bound: 1 / Math.sqrt(fanIn) };
}

export const ONES: Init = { kind: 'fill', value: 1 };
export const ZEROS: Init = { kind: 'fill', value: 0 };

// ---- dynamic shape plumbing (Shape → Gather → Unsqueeze → Concat), as the exporter writes it ------------------

/** `x.shape[i]` as an int64 scalar: Shape → Gather(Constant i). */
export function dim(g: GraphBuilder, x: string, i: number): string {
  const shape = g.op1('Shape', [x]);
  return g.op1('Gather', [shape, g.scalarI64(i)], { axis: { i: 0 } });
}

/** Scalar → 1-D [1] (Unsqueeze with torch's unscoped axes constant). */
export function unsq(g: GraphBuilder, scalar: string): string {
  const axes = g.unscopedConstant(tensorI64([0], [1]), 'Unsqueeze');
  return g.op1('Unsqueeze', [scalar, axes]);
}

/** Concatenates 1-D int64 pieces into a shape vector. Numbers become scoped `Constant`s of shape [1]. */
export function shapeVec(g: GraphBuilder, parts: (string | number)[]): string {
  const ins = parts.map((p) => typeof p === 'number' ? g.constI64([p], [1]) : p);
  return g.op1('Concat', ins, { axis: { i: 0 } });
}

/**
 * `tensor.expand(*sizes)` as torch exports it: the target goes through Reshape(-1) → Shape → ConstantOfShape(1) →
 * Mul(−1) → Equal → Where (so that −1 entries mean "keep") before the Expand.
 */
export function torchExpand(g: GraphBuilder, x: string, sizes: string): string {
  const flat = reshape(g, sizes, g.constI64([-1]));
  const ones = g.op1('ConstantOfShape', [g.op1('Shape', [flat])], { value: { t: tensorI64([1], [1]) } });
  const minusOnes = g.op1('Mul', [ones, g.scalarI64(-1)]);
  const target = g.op1('Where', [g.op1('Equal', [flat, minusOnes]), ones, flat]);
  return g.op1('Expand', [x, target]);
}

/** Reshape with `allowzero=0`, like every torch 1.13 Reshape. */
export function reshape(g: GraphBuilder, x: string, shape: string): string {
  return g.op1('Reshape', [x, shape], { allowzero: { i: 0 } });
}

export function transpose(g: GraphBuilder, x: string, perm: number[]): string {
  return g.op1('Transpose', [x], { perm: { ints: perm } });
}

// ---- layers -------------------------------------------------------------------------------------------------

/**
 * nn.Linear as exported for 3-D inputs: `MatMul(x, onnx::MatMul_n)` (weight stored transposed, [in, out]) then
 * `Add(bias, y)` (torch puts the bias first). Call inside the Linear's own scope.
 */
export function linear(g: GraphBuilder, x: string, inF: number, outF: number,
  opts: { bias?: boolean; weightInit?: Init; biasInit?: Init; scale?: number } = {}): string {
  const w = g.param('weight', [inF, outF], opts.weightInit ?? torchDefault(inF), { anonymous: 'MatMul', scale: opts.scale });
  const y = g.op1('MatMul', [x, w]);
  if (opts.bias === false) return y;
  const b = g.param('bias', [outF], opts.biasInit ?? torchDefault(inF));
  return g.op1('Add', [b, y]);
}

/** nn.Linear on 2-D inputs exports as Gemm(transB=1) with the weight in torch layout [out, in]. */
export function gemm(g: GraphBuilder, x: string, inF: number, outF: number, opts: { weightInit?: Init; biasInit?: Init } = {}): string {
  const w = g.param('weight', [outF, inF], opts.weightInit ?? torchDefault(inF));
  const b = g.param('bias', [outF], opts.biasInit ?? torchDefault(inF));
  return g.op1('Gemm', [x, w, b], { alpha: { f: 1 }, beta: { f: 1 }, transB: { i: 1 } });
}

export function conv2d(g: GraphBuilder, x: string, inC: number, outC: number, k: number,
  opts: { stride?: number; pad?: number; bias?: boolean; weightInit?: Init; biasInit?: Init } = {}): string {
  const fanIn = inC * k * k;
  const w = g.param('weight', [outC, inC, k, k], opts.weightInit ?? torchDefault(fanIn));
  const inputs = [x, w];
  if (opts.bias !== false) inputs.push(g.param('bias', [outC], opts.biasInit ?? torchDefault(fanIn)));
  const pad = opts.pad ?? (k === 1 ? 0 : 1);
  const stride = opts.stride ?? 1;
  return g.op1('Conv', inputs, {
    dilations: { ints: [1, 1] }, group: { i: 1 }, kernel_shape: { ints: [k, k] },
    pads: { ints: [pad, pad, pad, pad] }, strides: { ints: [stride, stride] },
  });
}

/**
 * nn.GroupNorm at opset 14 (no GroupNormalization op): Reshape(x, [0, G, -1]) → InstanceNormalization(ones, zeros)
 * → Reshape(·, Shape(x)) → Mul(onnx::Mul_n [C,1,1]) → Add(onnx::Add_n [C,1,1]). Call inside the norm's scope.
 */
export function groupNorm(g: GraphBuilder, x: string, channels: number, groups: number, eps: number, spatialRank = 2): string {
  if (channels % groups !== 0) throw new Error(`GroupNorm: ${channels} channels are not divisible by ${groups} groups`);
  const r = reshape(g, x, g.constI64([0, groups, -1]));
  const scale = g.constF32(new Float32Array(groups).fill(1), [groups]);
  const bias = g.constF32(new Float32Array(groups), [groups]);
  const n = g.op1('InstanceNormalization', [r, scale, bias], { epsilon: { f: eps } });
  const back = reshape(g, n, g.op1('Shape', [x]));
  // torch reshapes the affine terms to [C, 1, …] for the input's rank ([C,1,1] on images, [C,1] on (b, c, hw)).
  const affineDims = [channels, ...Array(spatialRank).fill(1)];
  const w = g.param('weight', affineDims, ONES, { anonymous: 'Mul' });
  const b = g.param('bias', affineDims, ZEROS, { anonymous: 'Add' });
  return g.op1('Add', [g.op1('Mul', [back, w]), b]);
}

/**
 * nn.LayerNorm over the last axis as torch 1.13 exports it at opset 14: ReduceMean → Sub → Pow(2) → ReduceMean →
 * Add(eps) → Sqrt → Div → Mul(weight) → Add(bias). Call inside the norm's scope.
 */
export function layerNorm(g: GraphBuilder, x: string, channels: number, eps: number, outName?: string): string {
  const mean = g.op1('ReduceMean', [x], { axes: { ints: [-1] } });
  const d = g.op1('Sub', [x, mean]);
  const sq = g.op1('Pow', [d, g.scalarF32(2)]);
  const v = g.op1('ReduceMean', [sq], { axes: { ints: [-1] } });
  const s = g.op1('Sqrt', [g.op1('Add', [v, g.scalarF32(eps)])]);
  const n = g.op1('Div', [d, s]);
  const w = g.param('weight', [channels], ONES);
  const b = g.param('bias', [channels], ZEROS);
  return g.op1('Add', [g.op1('Mul', [n, w]), b], {}, outName);
}

/** SiLU exported as x·Sigmoid(x). Call inside the activation's scope (`nonlinearity`, `act`...). */
export function silu(g: GraphBuilder, x: string): string {
  return g.op1('Mul', [x, g.op1('Sigmoid', [x])]);
}

/** Exact GELU: x·(1 + erf(x/√2))·0.5, in torch's node order (Div, Erf, Add, Mul, Mul). */
export function geluErf(g: GraphBuilder, x: string): string {
  const e = g.op1('Erf', [g.op1('Div', [x, g.scalarF32(Math.SQRT2)])]);
  const m = g.op1('Mul', [x, g.op1('Add', [e, g.scalarF32(1)])]);
  return g.op1('Mul', [m, g.scalarF32(0.5)]);
}

/** CLIP's quick_gelu: x·Sigmoid(1.702·x). */
export function quickGelu(g: GraphBuilder, x: string): string {
  const s = g.op1('Sigmoid', [g.op1('Mul', [x, g.scalarF32(1.702)])]);
  return g.op1('Mul', [x, s]);
}

/** Resize nearest ×2 as exported by F.interpolate(scale_factor=2.0, mode="nearest") at opset 14. */
export function upsampleNearest2x(g: GraphBuilder, x: string): string {
  const scales = g.constF32([1, 1, 2, 2], [4]);
  return g.op1('Resize', [x, '', scales], {
    coordinate_transformation_mode: { s: 'asymmetric' }, cubic_coeff_a: { f: -0.75 },
    mode: { s: 'nearest' }, nearest_mode: { s: 'floor' },
  });
}

/** Cast to an element type (no-op casts are kept: real exports carry them around the attention Softmax). */
export function cast(g: GraphBuilder, x: string, to: number = DT.FLOAT): string {
  return g.op1('Cast', [x], { to: { i: to } });
}
