import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MersenneTwister, TorchGenerator, torchRandn } from '../engine/diffusion/random.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';

function meanStd(x: ArrayLike<number>): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i] - mean) ** 2;
  return { mean, std: Math.sqrt(v / x.length) };
}

describe('random: mt19937', () => {
  it('matches the C++ standard known answers (seed 5489: first output, 10000th output)', () => {
    // [rand.predef]: "the 10000th consecutive invocation of a default-constructed std::mt19937 produces 4123659995".
    const mt = new MersenneTwister(5489);
    const first = mt.nextUint32();
    assert.equal(first, 3499211612);
    let last = first;
    for (let i = 1; i < 10000; i++) last = mt.nextUint32();
    assert.equal(last, 4123659995);
  });

  it('float uniforms keep the low 24 bits of one draw; double uniforms combine two draws (first = high word)', () => {
    const raw = new MersenneTwister(7);
    const a = raw.nextUint32();
    const b = raw.nextUint32();
    const c = raw.nextUint32();
    const g = new TorchGenerator(7);
    assert.equal(g.uniformFloat(), (a % 2 ** 24) / 2 ** 24);
    assert.equal(g.uniformDouble(), ((b % 2 ** 21) * 2 ** 32 + c) / 2 ** 53);
  });
});

describe('random: torch-compatible randn', () => {
  it('seed 1234, [1,4,64,64] equals torch.randn latents_init.npy bit for bit', function () {
    const ref = requireReference(this);
    const expected = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy'));
    const got = torchRandn([1, 4, 64, 64], 1234);
    assert.equal(got.length, expected.data.length);
    let maxAbs = 0;
    let unequal = 0;
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i] - expected.data[i]);
      if (d > 0) unequal++;
      maxAbs = Math.max(maxAbs, d);
    }
    console.log(`      randn vs torch: max |diff| = ${maxAbs}, unequal elements = ${unequal} / ${got.length}`);
    assert.equal(unequal, 0);
  });

  it('is deterministic per seed and continues the stream across calls like one torch generator', () => {
    assert.deepEqual(torchRandn([2, 3, 5, 7], 42), torchRandn([2, 3, 5, 7], 42));
    assert.notDeepEqual(torchRandn([64], 42), torchRandn([64], 43));
    const g = new TorchGenerator(5);
    const first = g.randn([32]);
    const second = g.randn([32]);
    // Two 32-element calls consume exactly the uniforms of one 64-element call, block by block.
    const whole = torchRandn([64], 5);
    assert.deepEqual(Array.from(first), Array.from(whole.subarray(0, 32)));
    assert.deepEqual(Array.from(second), Array.from(whole.subarray(32)));
    g.manualSeed(5);
    assert.deepEqual(g.randn([32]), first);
  });

  it('numel not a multiple of 16: the last 16 are redrawn, earlier elements keep the full-block values', () => {
    // 20 elements: block [0,16) from uniforms 0..15, then 16 fresh uniforms (20..35) replace positions [4,20).
    const x20 = torchRandn([4, 5], 9);
    const x16 = torchRandn([16], 9);
    assert.deepEqual(Array.from(x20.subarray(0, 4)), Array.from(x16.subarray(0, 4)));
    // Positions 4..19 equal a 16-block transform of uniforms 20..35: generate them by skipping 20 draws.
    const g = new TorchGenerator(9);
    for (let i = 0; i < 20; i++) g.nextUint32();
    const tail = g.randn([16]);
    assert.deepEqual(Array.from(x20.subarray(4)), Array.from(tail));
  });

  it('numel not a multiple of 16 has standard-normal statistics', () => {
    const x = torchRandn([3, 7, 101, 47], 2024); // 99,687 elements
    assert.equal(x.length % 16 !== 0, true);
    const { mean, std } = meanStd(x);
    console.log(`      n=${x.length}: mean ${mean.toFixed(4)}, std ${std.toFixed(4)}`);
    assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(std - 1) < 0.02, `std ${std}`);
    assert.ok(x.every(Number.isFinite));
  });

  it('numel < 16 takes the scalar double Box-Muller path (cached sine half) with normal statistics', () => {
    const g = new TorchGenerator(11);
    const a = g.randn([3]);
    // Recompute the first two elements independently from the raw double uniforms.
    const h = new TorchGenerator(11);
    const u1 = h.uniformDouble();
    const u2 = h.uniformDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    assert.ok(Math.abs(a[0] - Math.fround(r * Math.cos(2 * Math.PI * u1))) <= 1e-7);
    assert.ok(Math.abs(a[1] - Math.fround(r * Math.sin(2 * Math.PI * u1))) <= 1e-7);
    const samples: number[] = [];
    for (let k = 0; k < 3000; k++) samples.push(...g.randn([15]));
    const { mean, std } = meanStd(samples);
    console.log(`      scalar path n=${samples.length}: mean ${mean.toFixed(4)}, std ${std.toFixed(4)}`);
    assert.ok(Math.abs(mean) < 0.03 && Math.abs(std - 1) < 0.03);
    assert.deepEqual(torchRandn([15], 3), torchRandn([15], 3));
  });

  it('rejects bad seeds and shapes with a clear message', () => {
    assert.throws(() => torchRandn([2], -1), /non-negative integer/);
    assert.throws(() => torchRandn([2, 1.5], 1), /shape/);
  });
});
