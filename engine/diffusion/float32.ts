// Single-precision arithmetic helpers. JS numbers are doubles; to reproduce what torch computes in float32 we round
// after every operation (Math.fround), and use a true fused multiply-add where torch's compiled kernels fuse.

export const fr = Math.fround;

const f32Bits = new Float32Array(1);
const i32Bits = new Int32Array(f32Bits.buffer);

/** Single-precision fused multiply-add a*b+c with one rounding (a, b, c must be floats). */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b; // exact: two 24-bit significands fit in 53 bits
  const s = p + c;
  const r = fr(s);
  if (r === s || !Number.isFinite(s)) return r;
  // Rounding the double s to float could round twice; repair the only bad case, an exact float midpoint.
  const t = s - p;
  const err = p - (s - t) + (c - t); // TwoSum: p + c = s + err exactly
  if (err === 0) return r;
  f32Bits[0] = r;
  i32Bits[0] += Math.abs(s) > Math.abs(r) ? 1 : -1; // the float on the other side of s
  const other = f32Bits[0];
  if ((r + other) / 2 !== s) return r; // not a midpoint: the double rounding was harmless
  // A tie in double, but the exact sum lies on the side of err.
  return err > 0 === other > r ? other : r;
}

/** Reinterprets a float's bits as an int32 (for bit tricks such as frexp). */
export function floatBits(x: number): number {
  f32Bits[0] = x;
  return i32Bits[0];
}

/** Builds a float from int32 bits. */
export function bitsToFloat(bits: number): number {
  i32Bits[0] = bits;
  return f32Bits[0];
}
