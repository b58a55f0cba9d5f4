import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { TorchGenerator } from '../engine/diffusion/random.js';
import {
  createScheduler, schedulerNames, resolveSchedulerConfig, SchedulerConfigError, DdimScheduler, DpmSolverScheduler,
  EulerAncestralScheduler, EulerScheduler, LcmScheduler, LmsScheduler, PndmScheduler, type Scheduler,
} from '../engine/diffusion/schedulers/index.js';
import { requireReference } from './helpers/reference.js';

// The SD 1.x schedule (the reference export's scheduler_config.json has these values too).
const SD_CONFIG = {
  _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
  prediction_type: 'epsilon', set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, timestep_spacing: 'leading',
};

// ---------------------------------------------------------------------- independent float64 closed forms

/** ᾱ_t in float64 from the scaled-linear betas: β_i = (√b0 + i(√b1 − √b0)/(N−1))². */
function alphaBar64(N = 1000, b0 = 0.00085, b1 = 0.012): number[] {
  const out: number[] = [];
  let acc = 1;
  for (let i = 0; i < N; i++) {
    const sb = Math.sqrt(b0) + (i * (Math.sqrt(b1) - Math.sqrt(b0))) / (N - 1);
    acc *= 1 - sb * sb;
    out.push(acc);
  }
  return out;
}
const AB = alphaBar64();
const SIG = AB.map((a) => Math.sqrt((1 - a) / a));
/** σ at a fractional training timestep: linear interpolation of the training sigmas (diffusers' np.interp). */
function sigmaAt(t: number): number {
  const j = Math.min(Math.floor(t), SIG.length - 2);
  return SIG[j] + (SIG[j + 1] - SIG[j]) * (t - j);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
function range(a: number, b: number, step: number): number[] {
  const out: number[] = [];
  for (let v = a; step > 0 ? v < b : v > b; v += step) out.push(v);
  return out;
}
function randomVector(n: number, seed: number): Float32Array {
  return new TorchGenerator(seed).randn([n]);
}

// ------------------------------------------------------------------------------------------------ config

describe('schedulers: config and factory', () => {
  it('lists the valid names when the name is unknown', () => {
    assert.throws(() => createScheduler('heun', SD_CONFIG), (e: Error) => {
      assert.ok(e instanceof SchedulerConfigError);
      for (const n of schedulerNames()) assert.ok(e.message.includes(n), `message lists ${n}`);
      assert.match(e.message, /unknown scheduler "heun"/);
      return true;
    });
  });

  it('uses _class_name when no name is given, and accepts aliases and diffusers class names', () => {
    assert.ok(createScheduler(undefined, SD_CONFIG) instanceof PndmScheduler);
    assert.ok(createScheduler('DDIMScheduler', SD_CONFIG) instanceof DdimScheduler);
    assert.ok(createScheduler('euler_a', SD_CONFIG) instanceof EulerAncestralScheduler);
    assert.ok(createScheduler('dpmpp2m', SD_CONFIG) instanceof DpmSolverScheduler);
    assert.throws(() => createScheduler(undefined, { ...SD_CONFIG, _class_name: 'UniPCMultistepScheduler' }), /UniPCMultistepScheduler" is not supported/);
    assert.throws(() => createScheduler(undefined, {}), /no "_class_name"/);
  });

  it('validates values with the key name, and refuses options it does not implement', () => {
    assert.throws(() => createScheduler('ddim', { ...SD_CONFIG, beta_schedule: 'cosine' }), /"beta_schedule" must be "linear", "scaled_linear" or "squaredcos_cap_v2"/);
    assert.throws(() => createScheduler('ddim', { ...SD_CONFIG, thresholding: true }), /thresholding/);
    assert.throws(
      () => createScheduler(undefined, { ...SD_CONFIG, _class_name: 'DPMSolverMultistepScheduler', algorithm_type: 'sde-dpmsolver++' }),
      /SDE variants are not implemented/,
    );
    assert.throws(() => createScheduler('euler', { ...SD_CONFIG, num_train_timesteps: 10, trained_betas: [0.1] }), /trained_betas has 1 values/);
    // Newer diffusers options that would change the schedule: refused, not ignored (SD-Turbo's "discrete" is fine).
    assert.throws(() => createScheduler('euler', { ...SD_CONFIG, prediction_type: 'v_prediction', timestep_type: 'continuous' }), /timestep_type "continuous"/);
    assert.ok(createScheduler('euler', { ...SD_CONFIG, timestep_type: 'discrete' }) instanceof EulerScheduler);
    assert.throws(() => createScheduler('euler', { ...SD_CONFIG, use_exponential_sigmas: true }), /use_exponential_sigmas/);
    assert.throws(() => createScheduler('euler-karras', { ...SD_CONFIG, sigma_min: 0.1 }), /sigma_min/);
    assert.throws(() => createScheduler('lcm', { ...SD_CONFIG, original_inference_steps: 2000 }), /original_inference_steps must be between 1 and/);
  });

  it('fills missing keys with the target class defaults, like from_config', () => {
    const { timestep_spacing: _drop, ...noSpacing } = SD_CONFIG;
    assert.equal(resolveSchedulerConfig('euler', noSpacing).timestepSpacing, 'linspace');
    assert.equal(resolveSchedulerConfig('ddim', noSpacing).timestepSpacing, 'leading');
    assert.equal(resolveSchedulerConfig('ddim', {}).setAlphaToOne, true); // DDIM's own default
    assert.equal(resolveSchedulerConfig('euler', SD_CONFIG).timestepSpacing, 'leading'); // the file wins
  });
});

// ------------------------------------------------------------------------------------------------ tables

describe('schedulers: noise tables and timesteps', () => {
  it('betas and alphas_cumprod match the float64 closed forms to float32 precision', () => {
    const s = createScheduler('ddim', SD_CONFIG) as DdimScheduler;
    let maxRel = 0;
    for (let i = 0; i < 1000; i++) maxRel = Math.max(maxRel, Math.abs(s.alphasCumprod[i] - AB[i]) / AB[i]);
    assert.ok(maxRel < 2e-6, `alphas_cumprod max rel error ${maxRel}`);
    const lin = createScheduler('ddim', { ...SD_CONFIG, beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 }) as DdimScheduler;
    for (const i of [0, 1, 499, 500, 998, 999]) {
      const expected = 0.0001 + (i * (0.02 - 0.0001)) / 999;
      assert.ok(Math.abs(lin.betas[i] - expected) <= 2e-9, `linear beta ${i}`);
    }
    const cos = createScheduler('ddim', { ...SD_CONFIG, beta_schedule: 'squaredcos_cap_v2' }) as DdimScheduler;
    const f = (t: number) => Math.cos(((t / 1000 + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const i of [0, 10, 500, 990, 999]) {
      const expected = Math.min(1 - f(i + 1) / f(i), 0.999);
      assert.ok(Math.abs(cos.betas[i] - expected) <= 1e-7 * Math.max(1, expected * 10), `cosine beta ${i}`);
    }
  });

  it('PNDM (skip_prk_steps, leading, offset 1): 10 steps → 11 timesteps with 801 repeated; 50 steps → 51', () => {
    const s = createScheduler('pndm', SD_CONFIG);
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    s.setTimesteps(50);
    assert.deepEqual(s.timesteps, [981, 961, 961, ...range(941, 0, -20)]);
    assert.equal(s.timesteps.length, 51);
  });

  it('PNDM with the Runge-Kutta warm-up (skip_prk_steps false) follows the paper schedule', () => {
    const s = createScheduler('pndm', { ...SD_CONFIG, skip_prk_steps: false });
    s.setTimesteps(10);
    // base 1..901 step 100; PRK on the last four with half-steps of 50, each visited twice; then PLMS from 601.
    assert.deepEqual(s.timesteps, [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('DDIM timesteps for leading / trailing / linspace spacing', () => {
    const s = createScheduler('ddim', SD_CONFIG);
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, range(901, 0, -100));
    s.setTimesteps(50);
    assert.deepEqual(s.timesteps, range(981, 0, -20));
    const tr = createScheduler('ddim', { ...SD_CONFIG, timestep_spacing: 'trailing' });
    tr.setTimesteps(10);
    assert.deepEqual(tr.timesteps, range(999, 0, -100));
    const ls = createScheduler('ddim', { ...SD_CONFIG, timestep_spacing: 'linspace' });
    ls.setTimesteps(10);
    assert.deepEqual(ls.timesteps, range(999, -1, -111)); // round(999·k/9) = 111·k
  });

  it('DPM-Solver timesteps (linspace with round-half-even, leading) and Karras end points', () => {
    const { timestep_spacing: _drop, steps_offset: _o, ...cfg } = SD_CONFIG;
    const s = createScheduler('dpm++2m', cfg);
    s.setTimesteps(10);
    // linspace(0, 999, 11) = 99.9·k → rounded, reversed, the final 0 dropped.
    assert.deepEqual(s.timesteps, [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    const lead = createScheduler('dpm++2m', SD_CONFIG);
    lead.setTimesteps(10);
    assert.deepEqual(lead.timesteps, range(901, 90, -90)); // 1000 // 11 = 90, + offset 1
    const k = createScheduler('dpm++2m-karras', SD_CONFIG);
    k.setTimesteps(10);
    assert.equal(k.timesteps[0], 999);
    assert.equal(k.timesteps[k.timesteps.length - 1], 0);
    for (let i = 1; i < k.timesteps.length; i++) assert.ok(k.timesteps[i] < k.timesteps[i - 1]);
  });

  it('Euler / LMS sigmas equal σ(t) = sqrt((1−ᾱ)/ᾱ) interpolated at the timesteps, then 0; init sigma as diffusers', () => {
    for (const spacing of ['linspace', 'leading'] as const) {
      const s = createScheduler('euler', { ...SD_CONFIG, timestep_spacing: spacing }) as EulerScheduler;
      s.setTimesteps(50);
      assert.equal(s.sigmas.length, 51);
      assert.equal(s.sigmas[50], 0);
      if (spacing === 'linspace') {
        s.timesteps.forEach((t, i) => assert.ok(Math.abs(t - (999 * (49 - i)) / 49) < 1e-4, `t${i}`));
      } else {
        assert.deepEqual(s.timesteps, range(981, 0, -20));
      }
      s.timesteps.forEach((t, i) => {
        // float32 ᾱ (as torch stores it) carries ~6e-8 absolute error, which 1 − ᾱ amplifies near t = 0.
        const tol = 5e-6 + 6e-8 / (1 - 1 / (1 + sigmaAt(t) ** 2));
        const rel = Math.abs(s.sigmas[i] - sigmaAt(t)) / sigmaAt(t);
        assert.ok(rel < tol, `${spacing} sigma ${i}: ${s.sigmas[i]} vs ${sigmaAt(t)}`);
      });
      const smax = sigmaAt(s.timesteps[0]);
      const expectedInit = spacing === 'leading' ? Math.sqrt(smax * smax + 1) : smax;
      assert.ok(Math.abs(s.initNoiseSigma - expectedInit) / expectedInit < 5e-6);
    }
  });

  it('Karras sigmas follow (σmax^(1/7) + i/(n−1)·(σmin^(1/7) − σmax^(1/7)))^7 and map back to their timesteps', () => {
    const s = createScheduler('lms-karras', SD_CONFIG) as LmsScheduler;
    s.setTimesteps(10);
    const smax = sigmaAt(901);
    const smin = sigmaAt(1);
    for (let i = 0; i < 10; i++) {
      const expected = (smax ** (1 / 7) + (i / 9) * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7;
      assert.ok(Math.abs(s.sigmas[i] - expected) / expected < 5e-6, `karras sigma ${i}`);
      // The fractional timestep is where the log-sigma curve reaches that sigma.
      assert.ok(Math.abs(Math.log(sigmaAt(s.timesteps[i])) - Math.log(expected)) < 2e-3, `timestep ${i}`);
    }
  });
});

// --------------------------------------------------------------------------------- reference conformance

describe('schedulers: reference steps (diffusers v0.21.4 on sd-tiny-v1)', function () {
  let ref: string;
  let x0: Float32Array;
  let e0: Float32Array;
  let e1: Float32Array;
  let y0: Float32Array;
  let y1: Float32Array;
  before(function () {
    ref = requireReference(this);
    const r = (f: string) => readNpyFloat32(join(ref, 'sd-tiny-v1/ref', f)).data;
    x0 = r('latents_init.npy');
    e0 = r('noise_pred_guided_step0.npy');
    e1 = r('noise_pred_guided_step1.npy');
    y0 = r('latents_after_step0.npy');
    y1 = r('latents_after_step1.npy');
  });

  it('PNDM from the folder config: steps 0 (t=901) and 1 (the 801 warm-up repeat) equal the reference', () => {
    const cfg = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/onnx/scheduler/scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    const s = createScheduler(undefined, cfg);
    s.setTimesteps(10);
    assert.equal(s.initNoiseSigma, 1);
    assert.deepEqual(s.scaleInitialNoise(x0), x0);
    const a = s.step(e0, 0, s.scaleModelInput(x0, 0));
    const b = s.step(e1, 1, s.scaleModelInput(a, 1));
    const d0 = maxAbsDiff(a, y0);
    const d1 = maxAbsDiff(b, y1);
    console.log(`      PNDM step0 max|diff| ${d0} (rel ${d0 / maxAbs(y0)}), step1 max|diff| ${d1} (rel ${d1 / maxAbs(y1)})`);
    assert.ok(d0 <= 1e-6 && d1 <= 1e-6);
  });

  it('DDIM (eta 0, the reference scheduler_ddim config) step 0 equals PNDM formula (9) = latents_after_step0', () => {
    const cfg = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/scheduler_ddim/scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    const s = createScheduler(undefined, cfg);
    assert.ok(s instanceof DdimScheduler);
    s.setTimesteps(10);
    assert.deepEqual(s.timesteps, range(901, 0, -100));
    const a = s.step(e0, 0, x0);
    const d = maxAbsDiff(a, y0);
    console.log(`      DDIM step0 vs PNDM reference: max|diff| ${d} (rel ${d / maxAbs(y0)})`);
    assert.ok(d <= 2e-6);
    // Second DDIM step (t=801 → 701) with the reference step-1 noise, against the float64 formula.
    const b = s.step(e1, 1, a);
    const [at, ap] = [AB[801], AB[701]];
    const expected = Array.from(a, (x, i) => Math.sqrt(ap) * ((x - Math.sqrt(1 - at) * e1[i]) / Math.sqrt(at)) + Math.sqrt(1 - ap) * e1[i]);
    const d2 = maxAbsDiff(b, expected);
    console.log(`      DDIM step1 vs float64 formula: max|diff| ${d2}`);
    assert.ok(d2 <= 5e-6 * Math.max(1, maxAbs(expected)));
  });
});

// ----------------------------------------------------------------------------------- single-step formulas

describe('schedulers: one step against float64 formulas', () => {
  const n = 64;
  // DDIMScheduler defaults to clip_sample=True when the file does not say (the SD 1.5 file says false).
  const DDIM_CONFIG = { ...SD_CONFIG, clip_sample: false };
  const x = randomVector(n, 1);
  const eps = randomVector(n, 2);

  it('DDIM with eta > 0 adds std·z with z drawn from the generator after the deterministic update', () => {
    const s = new DdimScheduler(resolveSchedulerConfig('ddim', DDIM_CONFIG), { eta: 0.7 });
    s.setTimesteps(10);
    assert.throws(() => s.step(eps, 0, x), /needs a noise source/);
    const out = s.step(eps, 0, x, new TorchGenerator(5));
    const z = new TorchGenerator(5).randn([n]);
    const [at, ap] = [AB[901], AB[801]];
    const variance = ((1 - ap) / (1 - at)) * (1 - at / ap);
    const std = 0.7 * Math.sqrt(variance);
    const expected = Array.from(x, (xi, i) => {
      const x0 = (xi - Math.sqrt(1 - at) * eps[i]) / Math.sqrt(at);
      return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - std * std) * eps[i] + std * z[i];
    });
    assert.ok(maxAbsDiff(out, expected) < 1e-5);
  });

  it('DDIM clip_sample clamps the x0 estimate; v_prediction recovers x0', () => {
    const clip = createScheduler('ddim', { ...SD_CONFIG, clip_sample_range: 0.5 });
    assert.equal(clip.config.clipSample, true);
    clip.setTimesteps(10);
    clip.step(eps, 0, x);
    assert.equal(maxAbs(clip.predOriginalSample ?? []), 0.5);
    const v = createScheduler('ddim', { ...DDIM_CONFIG, prediction_type: 'v_prediction' });
    v.setTimesteps(10);
    const at = AB[901];
    const xt = Float32Array.from(x, (x0, i) => Math.sqrt(at) * x0 + Math.sqrt(1 - at) * eps[i]);
    const vel = Float32Array.from(x, (x0, i) => Math.sqrt(at) * eps[i] - Math.sqrt(1 - at) * x0);
    v.step(vel, 0, xt);
    assert.ok(maxAbsDiff(v.predOriginalSample ?? [], x) < 1e-5);
  });

  it('Euler: scaled input x/sqrt(σ²+1) and x + (x − x0)/σ·(σ_next − σ) with x0 = x − σ·eps', () => {
    const s = createScheduler('euler', SD_CONFIG) as EulerScheduler;
    s.setTimesteps(10);
    const sig = sigmaAt(901);
    const sigNext = sigmaAt(801);
    assert.ok(maxAbsDiff(s.scaleModelInput(x, 0), Array.from(x, (v) => v / Math.sqrt(sig * sig + 1))) < 1e-6);
    const out = s.step(eps, 0, x);
    const expected = Array.from(x, (xi, i) => xi + eps[i] * (sigNext - sig));
    assert.ok(maxAbsDiff(out, expected) < 1e-5 * maxAbs(expected));
  });

  it('Euler ancestral: σ_up, σ_down split and generator noise', () => {
    const s = createScheduler('euler-ancestral', SD_CONFIG) as EulerAncestralScheduler;
    s.setTimesteps(10);
    assert.throws(() => s.step(eps, 0, x), /needs a noise source/);
    const out = s.step(eps, 0, x, new TorchGenerator(9));
    const z = new TorchGenerator(9).randn([n]);
    const [from, to] = [sigmaAt(901), sigmaAt(801)];
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    const expected = Array.from(x, (xi, i) => xi + eps[i] * (down - from) + z[i] * up);
    assert.ok(maxAbsDiff(out, expected) < 1e-5 * maxAbs(expected));
  });

  it('LMS: order-1 and order-2 coefficients are the closed-form integrals of the Lagrange basis', () => {
    const s = createScheduler('lms', SD_CONFIG) as LmsScheduler;
    s.setTimesteps(10);
    const sg = s.sigmas;
    assert.ok(Math.abs(s.lmsCoefficient(1, 0, 0) - (sg[1] - sg[0])) < 1e-12);
    // order 2 at t=1: ∫_{σ1}^{σ2} (τ − σ0)/(σ1 − σ0) dτ and ∫ (τ − σ1)/(σ0 − σ1) dτ
    const [s0, s1, s2] = [sg[0], sg[1], sg[2]];
    const c0 = ((s2 - s0) ** 2 - (s1 - s0) ** 2) / (2 * (s1 - s0));
    const c1 = ((s2 - s1) ** 2 - 0) / (2 * (s0 - s1));
    // diffusers evaluates the integrand in float32 (see lms.ts), so the coefficients carry float32 rounding.
    assert.ok(Math.abs(s.lmsCoefficient(2, 1, 0) - c0) < 1e-6 * Math.abs(c0), `${s.lmsCoefficient(2, 1, 0)} vs ${c0}`);
    assert.ok(Math.abs(s.lmsCoefficient(2, 1, 1) - c1) < 1e-6 * Math.abs(c1), `${s.lmsCoefficient(2, 1, 1)} vs ${c1}`);
    // First LMS step = Euler step.
    const e = createScheduler('euler', SD_CONFIG);
    e.setTimesteps(10);
    assert.ok(maxAbsDiff(s.step(eps, 0, x), e.step(eps, 0, x)) < 1e-6);
    assert.throws(() => s.step(eps, 2, x), /called after 1 step/);
  });

  it('DPM-Solver++: first step is first order, second uses the 2M midpoint update', () => {
    const { timestep_spacing: _drop, ...cfg } = SD_CONFIG;
    const s = createScheduler('dpm++2m', cfg) as DpmSolverScheduler;
    s.setTimesteps(10);
    const ts = s.timesteps;
    const alpha = (t: number) => Math.sqrt(AB[t]);
    const sigma = (t: number) => Math.sqrt(1 - AB[t]);
    const lambda = (t: number) => Math.log(alpha(t)) - Math.log(sigma(t));
    const x0At = (xs: ArrayLike<number>, e: ArrayLike<number>, t: number) => Array.from(xs, (v, i) => (v - sigma(t) * e[i]) / alpha(t));
    const out1 = s.step(eps, 0, x);
    const m0 = x0At(x, eps, ts[0]);
    const h = lambda(ts[1]) - lambda(ts[0]);
    const exp1 = Array.from(x, (v, i) => (sigma(ts[1]) / sigma(ts[0])) * v - alpha(ts[1]) * (Math.exp(-h) - 1) * m0[i]);
    assert.ok(maxAbsDiff(out1, exp1) < 2e-5 * maxAbs(exp1), `first order ${maxAbsDiff(out1, exp1)}`);
    const eps2 = randomVector(n, 3);
    const out2 = s.step(eps2, 1, out1);
    const m1 = x0At(out1, eps2, ts[1]);
    const hh = lambda(ts[2]) - lambda(ts[1]);
    const r0 = (lambda(ts[1]) - lambda(ts[0])) / hh;
    const exp2 = Array.from(out1, (v, i) => {
      const D1 = (m1[i] - m0[i]) / r0;
      const A = alpha(ts[2]) * (Math.exp(-hh) - 1);
      return (sigma(ts[2]) / sigma(ts[1])) * v - A * m1[i] - 0.5 * A * D1;
    });
    assert.ok(maxAbsDiff(out2, exp2) < 2e-5 * maxAbs(exp2), `second order ${maxAbsDiff(out2, exp2)}`);
  });
});

// ------------------------------------------------------------------------------------ analytic denoising

describe('schedulers: a full run on an exact denoiser converges to x0', () => {
  // The exact noise predictor for a point mass at x0: given the model input x_in = sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·eps
  // (what every scheduler hands the model, after its input scaling), eps = (x_in − sqrt(ᾱ)·x0) / sqrt(1−ᾱ),
  // with ᾱ(t) = 1 / (1 + σ(t)²) and σ interpolated at fractional t.
  const n = 256;
  const x0 = Float32Array.from(randomVector(n, 11), (v) => Math.tanh(v));
  function denoiser(xIn: Float32Array, t: number, kind: 'epsilon' | 'v_prediction' | 'sample'): Float32Array {
    const s = sigmaAt(t);
    const ab = 1 / (1 + s * s);
    const e = Float32Array.from(xIn, (v, i) => (v - Math.sqrt(ab) * x0[i]) / Math.sqrt(1 - ab));
    if (kind === 'sample') return Float32Array.from(x0);
    if (kind === 'v_prediction') return Float32Array.from(e, (ei, i) => Math.sqrt(ab) * ei - Math.sqrt(1 - ab) * x0[i]);
    return e;
  }
  function run(s: Scheduler, steps: number, kind: 'epsilon' | 'v_prediction' | 'sample' = 'epsilon'): number {
    s.setTimesteps(steps);
    const gen = new TorchGenerator(123);
    let latents = s.scaleInitialNoise(gen.randn([n]));
    for (let i = 0; i < s.timesteps.length; i++) {
      const out = denoiser(s.scaleModelInput(latents, i), s.timesteps[i], kind);
      latents = s.step(out, i, latents, gen);
    }
    let se = 0;
    for (let i = 0; i < n; i++) se += (latents[i] - x0[i]) ** 2;
    return Math.sqrt(se / n);
  }

  // Schedules that end at σ = 0 (Euler, LMS) or at ᾱ = 1 (set_alpha_to_one) recover x0 to float precision (LMS with
  // Karras sigmas to 1e-4: its fractional timesteps come from log-sigma interpolation, our denoiser's σ(t) from
  // linear interpolation). The others stop at t = 1 or 0 (ᾱ ≈ 0.9991), leaving sqrt(1 − ᾱ)·noise ≈ 0.03 rms.
  const cases: Array<[string, Record<string, unknown>, number, number]> = [
    ['pndm', {}, 25, 0.035],
    ['pndm', { skip_prk_steps: false }, 25, 0.035],
    ['ddim', {}, 25, 0.035],
    ['ddim', { set_alpha_to_one: true }, 25, 1e-6],
    ['euler', {}, 25, 1e-6],
    ['euler-karras', {}, 25, 1e-6],
    ['euler-ancestral', {}, 25, 1e-6],
    ['lms', {}, 25, 1e-6],
    ['lms-karras', {}, 25, 1e-4],
    ['dpm++2m', {}, 25, 0.035],
    ['dpm++2m-karras', {}, 25, 0.035],
    ['dpm++2m', { solver_order: 3 }, 25, 0.035],
    ['dpm++2m', { algorithm_type: 'dpmsolver' }, 25, 0.035],
    ['dpm++2m', { solver_type: 'heun' }, 10, 0.035],
  ];
  for (const [name, extra, steps, tol] of cases) {
    it(`${name} ${JSON.stringify(extra)} (${steps} steps) to rms < ${tol}`, () => {
      const s = createScheduler(name, { ...SD_CONFIG, ...extra });
      const rms = run(s, steps);
      assert.ok(rms < tol, `rms(x − x0) = ${rms}`);
    });
  }

  it('v_prediction and sample prediction also converge (DDIM, Euler, DPM++)', () => {
    for (const name of ['ddim', 'euler', 'dpm++2m']) {
      for (const kind of ['v_prediction', 'sample'] as const) {
        const s = createScheduler(name, { ...SD_CONFIG, prediction_type: kind });
        const rms = run(s, 20, kind);
        assert.ok(rms < 0.05, `${name} ${kind}: rms ${rms}`);
      }
    }
  });
});

// ------------------------------------------------------------------ diffusers' own values, every spacing

interface TableCase {
  scheduler: string;
  class: string;
  config: Record<string, unknown>;
  steps: number;
  timesteps: number[];
  initNoiseSigma: number;
  /** Absent when init_noise_sigma is 1 (the latents are the seed's randn). */
  initLatents?: number[];
  sigmas?: number[];
  /** Absent where scale_model_input is the identity. */
  scaledInput0?: number[];
  outputs: Record<string, number[]>;
  denoisedLast?: number[];
}
interface Tables {
  versions: Record<string, string>;
  baseConfig: Record<string, unknown>;
  shape: number[];
  latentSeed: number;
  stepNoiseSeed: number;
  modelOutputs: number[][];
  cases: TableCase[];
}

describe('schedulers: diffusers tables for every scheduler × timestep_spacing × 1/2/4/50 steps', () => {
  // Written by test/fixtures/schedulers/make_scheduler_tables.py (diffusers v0.21.4; LCMScheduler of v0.22.0).
  const tables = JSON.parse(readFileSync(new URL('../../test/fixtures/schedulers/scheduler_tables.json', import.meta.url), 'utf8')) as Tables;
  const E = tables.modelOutputs.map((e) => Float32Array.from(e));
  const numel = tables.shape.reduce((a, b) => a * b, 1);
  /** |a − b| ≤ 1e-6 · max(1, |b|) elementwise (the latents of sigma schedulers reach σ_max ≈ 14.6). */
  let worst = { dev: 0, where: '' };
  after(() => console.log(`      worst |Heed − diffusers| / max(1, |diffusers|) over all cases: ${worst.dev.toExponential(2)} (${worst.where})`));
  function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, where = ''): void {
    assert.equal(got.length, want.length, `${what}: length`);
    for (let i = 0; i < want.length; i++) {
      const tol = 1e-6 * Math.max(1, Math.abs(want[i]));
      const dev = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
      if (dev > worst.dev) worst = { dev, where: `${where} ${what}` };
      assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: ${got[i]} vs diffusers ${want[i]}`);
    }
  }

  it('covers every scheduler name with leading, trailing and linspace at 1, 2, 4 and 50 steps', () => {
    for (const name of schedulerNames()) {
      for (const spacing of ['leading', 'trailing', 'linspace']) {
        const steps = tables.cases.filter((c) => c.scheduler === name && c.config.timestep_spacing === spacing && !c.config.prediction_type).map((c) => c.steps);
        assert.deepEqual(steps, [1, 2, 4, 50], `${name} ${spacing}`);
      }
    }
  });

  for (const c of tables.cases) {
    const label = `${c.scheduler} ${Object.entries(c.config).map(([k, v]) => `${k}=${String(v)}`).join(' ')}, ${c.steps} step(s)`;
    it(label, () => {
      const s = createScheduler(c.scheduler, { ...tables.baseConfig, ...c.config });
      s.setTimesteps(c.steps);
      close('timesteps', s.timesteps, c.timesteps, label);
      assert.ok(Math.abs(s.initNoiseSigma - c.initNoiseSigma) <= 1e-6 * c.initNoiseSigma, `init_noise_sigma ${s.initNoiseSigma} vs ${c.initNoiseSigma}`);
      if (c.sigmas) close('sigmas', (s as EulerScheduler).sigmas, c.sigmas, label);
      const z = new TorchGenerator(tables.latentSeed).randn([numel]);
      let latents = s.scaleInitialNoise(z);
      close('initial latents', latents, c.initLatents ?? z, label);
      const gen = new TorchGenerator(tables.stepNoiseSeed);
      const last = s.timesteps.length - 1;
      for (let i = 0; i <= last; i++) {
        const input = s.scaleModelInput(latents, i);
        if (i === 0) close('scaled input 0', input, c.scaledInput0 ?? latents, label);
        latents = s.step(E[i % 3], i, latents, gen);
        // LCM's last step returns `denoised` (v0.23.0+; v0.22.0's pipeline decodes it rather than the step output).
        const want = i === last && c.denoisedLast ? c.denoisedLast : c.outputs[String(i)];
        if (want) close(`step ${i} output`, latents, want, label);
      }
    });
  }
});

describe('schedulers: LCM formulas', () => {
  it('timesteps: every (1000 // original)th from 999 down, every len // n of them', () => {
    const s = createScheduler('lcm', SD_CONFIG) as LcmScheduler;
    s.setTimesteps(4);
    assert.deepEqual(s.timesteps, [999, 759, 519, 279]); // origin 19, 39, ..., 999; skip 50 // 4 = 12 → 20·12 = 240 apart
    const custom = createScheduler('lcm', { ...SD_CONFIG, original_inference_steps: 100 }) as LcmScheduler;
    custom.setTimesteps(3);
    assert.deepEqual(custom.timesteps, [999, 669, 339]); // origin 9, 19, ..., 999; skip 33 → 330 apart
    assert.throws(() => s.setTimesteps(51), /51 inference steps exceed original_inference_steps \(50\)/);
  });

  it('one step: c_out·x0 + c_skip·x with the boundary scalings in float64; no noise needed', () => {
    const n = 32;
    const x = randomVector(n, 1);
    const eps = randomVector(n, 2);
    const s = createScheduler('LCMScheduler', SD_CONFIG) as LcmScheduler;
    assert.equal(s.config.setAlphaToOne, false); // the file wins over LCM's own default (true)
    s.setTimesteps(1);
    const out = s.step(eps, 0, x);
    const t = 999;
    const cSkip = 0.25 / ((t * 10) ** 2 + 0.25);
    const cOut = (t * 10) / Math.sqrt((t * 10) ** 2 + 0.25);
    const expected = Array.from(x, (xi, i) => cOut * ((xi - Math.sqrt(1 - AB[t]) * eps[i]) / Math.sqrt(AB[t])) + cSkip * xi);
    assert.ok(maxAbsDiff(out, expected) < 1e-5 * maxAbs(expected), `${maxAbsDiff(out, expected)}`);
    // Multistep: every step but the last re-noises to the next timestep with generator noise.
    const m = createScheduler('lcm', SD_CONFIG) as LcmScheduler;
    m.setTimesteps(2);
    assert.throws(() => m.step(eps, 0, x), /needs a noise source/);
    const step0 = m.step(eps, 0, x, new TorchGenerator(3));
    const z = new TorchGenerator(3).randn([n]);
    const d0 = m.predOriginalSample ?? new Float32Array(n);
    const renoised = Array.from(d0, (d, i) => Math.sqrt(AB[499]) * d + Math.sqrt(1 - AB[499]) * z[i]);
    assert.ok(maxAbsDiff(step0, renoised) < 1e-5 * maxAbs(renoised));
  });
});
