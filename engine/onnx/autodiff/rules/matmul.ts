// MatMul and Gemm. Gradients are matrix products with transposed operands (2 products for 1 forward product,
// the textbook 2× FLOPs). A linear layer (activation [..., m, k] × weight [k, n]) gets its weight gradient as ONE
// Gemm over the flattened batch instead of a batched product followed by a sum over the batch.
import { attrFloat, attrInt } from '../../graph.js';
import { numel } from '../../tensor.js';
import { withGradient, type Rule } from '../rule.js';

export const MatMul: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [A, B] = node.input;
  const da = e.dims(A);
  const db = e.dims(B);
  // Promote 1-D operands to matrices as ONNX/numpy do, so one code path handles every rank.
  const a2 = da.length === 1 ? e.reshape(A, [1, da[0]]) : A;
  const b2 = db.length === 1 ? e.reshape(B, [db[0], 1]) : B;
  const ad = e.dims(a2);
  const bd = e.dims(b2);
  const gd = e.dims(g);
  const m = ad[ad.length - 2];
  const n = bd[bd.length - 1];
  const batch = gd.slice(0, gd.length - (da.length === 1 ? 0 : 1) - (db.length === 1 ? 0 : 1));
  const g2 = e.reshape(g, [...batch, m, n]);
  let gA: string | undefined;
  let gB: string | undefined;
  if (ctx.needsGrad(0)) {
    if (db.length === 2) {
      // Linear layer: dA = g·Bᵀ as one Gemm with transB over the flattened batch. It reads the weight in place; a
      // Transpose(B) of an initializer would be constant-folded by onnxruntime into a private copy of the weight.
      const rows = numel(gd.slice(0, -1));
      const prod = e.gemm(e.reshape(g2, [rows, n]), b2, false, true);
      gA = e.reshape(prod, da);
    } else {
      const prod = e.matmul(g2, e.transposeLast2(b2));
      gA = e.reshape(e.reduceToShape(prod, ad), da);
    }
  }
  if (ctx.needsGrad(1)) {
    if (bd.length === 2 && ad.length > 2) {
      // Weight of a linear layer: dB = Aᵀ·g with the batch folded into the contraction (one Gemm).
      const rows = numel(ad.slice(0, -1));
      const af = e.reshape(a2, [rows, ad[ad.length - 1]]);
      const gf = e.reshape(g2, [rows, n]);
      gB = e.reshape(e.gemm(af, gf, true, false), db);
    } else {
      const prod = e.matmul(e.transposeLast2(a2), g2);
      gB = e.reshape(e.reduceToShape(prod, bd), db);
    }
  }
  return [gA, gB];
});

export const Gemm: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [A, B, C] = node.input;
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  const tA = attrInt(node, 'transA', 0) === 1;
  const tB = attrInt(node, 'transB', 0) === 1;
  let gA: string | undefined;
  let gB: string | undefined;
  let gC: string | undefined;
  if (ctx.needsGrad(0)) {
    // Y = α·op(A)·op(B): d op(A) = α·g·op(B)ᵀ; when transA, dA is its transpose α·op(B)·gᵀ.
    gA = tA ? e.gemm(B, g, tB, true, alpha) : e.gemm(g, B, false, !tB, alpha);
  }
  if (ctx.needsGrad(1)) {
    // d op(B) = α·op(A)ᵀ·g; when transB, dB = α·gᵀ·op(A).
    gB = tB ? e.gemm(g, A, true, tA, alpha) : e.gemm(A, g, !tA, false, alpha);
  }
  if (C && ctx.needsGrad(2)) gC = e.reduceToShape(e.scale(g, beta), e.dims(C));
  return [gA, gB, gC];
});
