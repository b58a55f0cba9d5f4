// Chefer et al.'s `safe_divide(a, b)` (Transformer-Explainability, modules/layers_ours.py), emitted as ONNX:
//   den = clamp(b, min=ε) + clamp(b, max=ε);  den += (den == 0)·ε;  a / den · (b ≠ 0),  ε = 1e-9.
// For |b| ≫ ε this is a / (b + ε); where b is exactly 0 the result is 0. Every ratio R/Z of the rules goes through it,
// so relevance matches the reference to float precision.
import type { Emitter } from '../../onnx/autodiff/emitter.js';
import { DataType } from '../../onnx/tensor.js';

export const SAFE_EPS = 1e-9;

export function safeDivide(e: Emitter, a: string, b: string): string {
  const t = e.type(b);
  const db = e.dims(b);
  const eps = e.scalar(SAFE_EPS, t);
  const zero = e.scalar(0, t);
  const den0 = e.add(e.op('Max', [b, eps], db, t), e.op('Min', [b, eps], db, t));
  const denZero = e.cast(e.op('Equal', [den0, zero], db, DataType.BOOL), t);
  const den = e.add(den0, e.mul(denZero, eps));
  const nonZero = e.cast(e.op('Not', [e.op('Equal', [b, zero], db, DataType.BOOL)], db, DataType.BOOL), t);
  const q = e.div(a, den);
  return e.mul(q, nonZero);
}
