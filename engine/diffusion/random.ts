// Random numbers that reproduce PyTorch's CPU generator, so that a seed gives the same initial latents (and the same
// ancestral-sampler noise) as `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))` in diffusers.
//
// What torch does (ATen: CPUGeneratorImpl, core/MT19937RNGEngine.h, core/DistributionsHelper.h,
// core/TransformationHelper.h, native/cpu/DistributionTemplates.h):
// - the engine is a standard 32-bit Mersenne Twister (mt19937) seeded with the low 32 bits of the seed;
// - a float uniform in [0, 1) takes ONE 32-bit draw and keeps its low 24 bits: (u32 & 0xFFFFFF) / 2^24;
//   a double uniform takes TWO draws combined as (first << 32 | second) and keeps the low 53 bits / 2^53;
// - `normal_` on a contiguous float tensor with numel >= 16 first fills the whole tensor with float uniforms, then
//   turns each block of 16 into normals by Box-Muller (u1 = 1 - data[j], u2 = data[j+8] for j < 8; data[j] gets the
//   cosine branch, data[j+8] the sine branch). If numel is not a multiple of 16, 16 FRESH uniforms are drawn for the
//   last 16 positions and that block is transformed again (it overlaps the previous full block);
// - with numel < 16 it takes a scalar path: per element a double Box-Muller pair (u1 drives the angle, u2 the radius),
//   the sine half is cached in the generator and consumed by the next element.
// The float path replays torch's AVX2 kernel operation by operation (see boxMuller16), so it is bit-exact with torch
// on x86; torch builds without AVX2 (other CPUs) use libm's logf/cosf/sinf and can differ by an ulp.

import { bitsToFloat, floatBits, fmaf, fr } from './float32.js';

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** A 32-bit Mersenne Twister with the standard init_genrand seeding (as std::mt19937 and at::mt19937). */
export class MersenneTwister {
  private readonly state = new Uint32Array(N);
  private index = N;

  constructor(seed: number) {
    this.state[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.state[i - 1] ^ (this.state[i - 1] >>> 30);
      // 1812433253 * prev + i in uint32 arithmetic: split the multiply so it stays exact in doubles.
      this.state[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < N; k++) {
      const y = (s[k] & UPPER_MASK) | (s[(k + 1) % N] & LOWER_MASK);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.index = 0;
  }

  /** Next 32-bit output as an unsigned integer. */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

const TWO_POW_24 = 16777216;
const TWO_POW_53 = 9007199254740992;

/**
 * A stateful generator equivalent to `torch.Generator('cpu').manual_seed(seed)`: successive calls continue the same
 * stream, as successive torch calls on one generator do (diffusers draws the initial latents and then, for ancestral
 * samplers and DDIM with eta > 0, one noise tensor per step from the same generator).
 */
export class TorchGenerator {
  private engine: MersenneTwister;
  private cachedDoubleNormal: number | null = null;

  constructor(seed: number) {
    checkSeed(seed);
    this.engine = new MersenneTwister(seedLow32(seed));
  }

  /** Re-seed, dropping any cached Box-Muller half (as CPUGeneratorImpl::set_current_seed does). */
  manualSeed(seed: number): this {
    checkSeed(seed);
    this.engine = new MersenneTwister(seedLow32(seed));
    this.cachedDoubleNormal = null;
    return this;
  }

  /** One raw 32-bit draw (torch `random()`). */
  nextUint32(): number {
    return this.engine.nextUint32();
  }

  /** A float32 uniform in [0, 1) exactly as `at::uniform_real_distribution<float>(0, 1)` draws it. */
  uniformFloat(): number {
    return (this.engine.nextUint32() & 0xffffff) / TWO_POW_24;
  }

  /** A float64 uniform in [0, 1) as `at::uniform_real_distribution<double>(0, 1)`: random64() masked to 53 bits. */
  uniformDouble(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    // (hi << 32 | lo) & (2^53 - 1) = (hi & 0x1FFFFF) * 2^32 + lo, exact in a double.
    return ((hi & 0x1fffff) * 4294967296 + lo) / TWO_POW_53;
  }

  /** One standard normal double as `at::normal_distribution<double>(0, 1)` (uses and fills the Box-Muller cache). */
  normalDouble(): number {
    if (this.cachedDoubleNormal !== null) {
      const v = this.cachedDoubleNormal;
      this.cachedDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `torch.randn(shape, generator=this)` in float32. */
  randn(shape: readonly number[]): Float32Array {
    const numel = numelOf(shape);
    const out = new Float32Array(numel);
    if (numel >= 16) {
      for (let i = 0; i < numel; i++) out[i] = this.uniformFloat();
      for (let i = 0; i + 16 <= numel; i += 16) boxMuller16(out, i);
      if (numel % 16 !== 0) {
        const start = numel - 16;
        for (let i = 0; i < 16; i++) out[start + i] = this.uniformFloat();
        boxMuller16(out, start);
      }
    } else {
      for (let i = 0; i < numel; i++) out[i] = this.normalDouble();
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The float Box-Muller kernel. On x86 CPUs torch runs `normal_fill_16_AVX2`, whose log and sin/cos are the Cephes
// polynomials of avx_mathfun.h (Pommier / Garberoglio), evaluated in single precision, and GCC contracts its
// separate multiply and add intrinsics into fused multiply-adds. Replaying the same float operations in the same
// order (fround after each, fmaf where the compiler fuses) reproduces torch's numbers bit for bit: the reference
// latents of sd-tiny-v1 (seed 1234, [1,4,64,64]) match exactly. Using correctly rounded log/cos/sin instead would
// differ by 1 ulp in about one element in six.

const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
  2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(fr);
const LOG_Q1 = fr(-2.1219444e-4);
const LOG_Q2 = fr(0.693359375);
const SQRT_HALF = fr(0.707106781186547524);

/** Cephes logf as avx_mathfun's log256_ps computes it, for x in (0, 1]. */
function cephesLogf(xIn: number): number {
  const bits = floatBits(Math.max(xIn, 1.1754943508222875e-38)); // cut off denormals
  let e = fr((bits >>> 23) - 127 + 1);
  let x = bitsToFloat((bits & ~0x7f800000) | 0x3f000000); // mantissa scaled into [0.5, 1)
  if (x < SQRT_HALF) {
    e = fr(e - 1);
    x = fr(fr(x - 1) + x);
  } else {
    x = fr(x - 1);
  }
  const z = fr(x * x);
  let y = LOG_P[0];
  for (let k = 1; k < LOG_P.length; k++) y = fmaf(y, x, LOG_P[k]);
  y = fr(y * x);
  y = fmaf(y, z, fr(e * LOG_Q1));
  y = fmaf(-z, 0.5, y);
  x = fr(x + y);
  return fmaf(e, LOG_Q2, x);
}

const FOUR_OVER_PI = fr(1.27323954473516);
const DP1 = fr(-0.78515625);
const DP2 = fr(-2.4187564849853515625e-4);
const DP3 = fr(-3.77489497744594108e-8);
const SIN_P = [fr(-1.9515295891e-4), fr(8.3321608736e-3), fr(-1.6666654611e-1)];
const COS_P = [fr(2.443315711809948e-5), fr(-1.388731625493765e-3), fr(4.166664568298827e-2)];

/** Cephes sinf/cosf as avx_mathfun's sincos256_ps computes them, for x >= 0 (here x in [0, 2*pi)). */
function cephesSinCosf(xIn: number, out: [number, number]): void {
  let y = fr(xIn * FOUR_OVER_PI);
  let j = Math.trunc(y);
  j = (j + 1) & ~1; // octant, rounded up to even
  y = j;
  const sinNegate = (j & 4) !== 0;
  const cosNegate = (~(j - 2) & 4) !== 0;
  const useSinPoly = (j & 2) === 0;
  let x = fmaf(y, DP1, xIn); // extended-precision reduction x - j*pi/4
  x = fmaf(y, DP2, x);
  x = fmaf(y, DP3, x);
  const z = fr(x * x);
  let c = fmaf(COS_P[0], z, COS_P[1]);
  c = fmaf(c, z, COS_P[2]);
  c = fr(c * z);
  c = fmaf(c, z, fr(-z * 0.5));
  c = fr(c + 1);
  let s = fmaf(SIN_P[0], z, SIN_P[1]);
  s = fmaf(s, z, SIN_P[2]);
  s = fr(s * z);
  s = fmaf(s, x, x);
  const sin = useSinPoly ? s : c;
  const cos = useSinPoly ? c : s;
  out[0] = sinNegate ? -sin : sin;
  out[1] = cosNegate ? -cos : cos;
}

const TWO_PI_F = fr(2 * Math.PI);
const sinCos: [number, number] = [0, 0];

/** Box-Muller on one block of 16 float uniforms (mean 0, std 1), as torch's normal_fill_16_AVX2. */
function boxMuller16(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = fr(1 - data[offset + j]); // [0,1) -> (0,1] so the log is finite
    const u2 = data[offset + j + 8];
    const radius = fr(Math.sqrt(fr(-2 * cephesLogf(u1))));
    cephesSinCosf(fr(TWO_PI_F * u2), sinCos);
    data[offset + j] = fr(radius * sinCos[1]);
    data[offset + j + 8] = fr(radius * sinCos[0]);
  }
}

/** Convenience: `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))` as float32. */
export function torchRandn(shape: readonly number[], seed: number): Float32Array {
  return new TorchGenerator(seed).randn(shape);
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`randn: shape [${shape.join(', ')}] must contain non-negative integers`);
    n *= d;
  }
  return n;
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative integer (got ${seed}); torch seeds its CPU generator with an unsigned integer`);
  }
}

/** torch's mt19937 keeps only the low 32 bits of the 64-bit seed. */
function seedLow32(seed: number): number {
  return seed % 4294967296;
}
