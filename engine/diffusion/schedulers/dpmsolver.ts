// DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022), as diffusers v0.21.4 DPMSolverMultistepScheduler:
// "dpm++2m" = algorithm dpmsolver++, order 2, midpoint; with use_karras_sigmas the timesteps come from Karras
// sigmas mapped back to (rounded) training timesteps. It works on the discrete tables α_t = sqrt(ᾱ_t),
// σ_t = sqrt(1 − ᾱ_t), λ_t = log α_t − log σ_t (float32, as torch builds them).
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { BaseScheduler } from './base.js';
import { checkStepCount, karrasSigmas, npArange, npLinspace, roundHalfEven, sigmaToT, trainingSigmas } from './tables.js';

export class DpmSolverScheduler extends BaseScheduler {
  readonly alphaT: Float32Array;
  readonly sigmaT: Float32Array;
  readonly lambdaT: Float32Array;
  private modelOutputs: Array<Float32Array | null> = [];
  private lowerOrderNums = 0;

  constructor(config: SchedulerConfig) {
    super('dpm-solver', config);
    this.alphaT = this.alphasCumprod.map((a) => fr(Math.sqrt(a)));
    this.sigmaT = this.alphasCumprod.map((a) => fr(Math.sqrt(fr(1 - a))));
    this.lambdaT = this.alphaT.map((a, i) => fr(fr(Math.log(a)) - fr(Math.log(this.sigmaT[i]))));
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.config, 'DPM-Solver');
    const c = this.config;
    // Timesteps whose λ is below lambda_min_clipped are cut off (searchsorted on the ascending flipped λ).
    let clipped = 0;
    for (let i = this.lambdaT.length - 1; i >= 0 && this.lambdaT[i] < c.lambdaMinClipped; i--) clipped++;
    const last = c.numTrainTimesteps - clipped;
    let timesteps: number[];
    switch (c.timestepSpacing) {
      case 'linspace':
        timesteps = npLinspace(0, last - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
        break;
      case 'leading': {
        const ratio = Math.floor(last / (n + 1));
        timesteps = Array.from({ length: n + 1 }, (_, i) => i * ratio).reverse().slice(0, -1).map((t) => t + c.stepsOffset);
        break;
      }
      case 'trailing':
        timesteps = npArange(last, 0, -c.numTrainTimesteps / n).map(roundHalfEven).map((t) => t - 1);
        break;
    }
    if (c.useKarrasSigmas) {
      const train = trainingSigmas(this.alphasCumprod); // ascending in t
      const logSigmas = Array.from(train, (s) => fr(Math.log(s)));
      // diffusers passes the ascending training sigmas, so the ramp runs from the smallest to the largest sigma;
      // the rounded timesteps are then flipped to run high → low.
      const sig = karrasSigmas(train, n);
      timesteps = sig.map((s) => roundHalfEven(sigmaToT(s, logSigmas))).reverse();
    }
    // Drop repeated timesteps (keeping first occurrences in order), as np.unique + sort of the indices does.
    const seen = new Set<number>();
    this.timesteps = timesteps.filter((t) => (seen.has(t) ? false : (seen.add(t), true)));
    this.numInferenceSteps = n;
    this.modelOutputs = new Array<Float32Array | null>(c.solverOrder).fill(null);
    this.lowerOrderNums = 0;
    this.stepsTaken = 0;
    this.predOriginalSample = null;
  }

  /** The model output converted to what the solver integrates: x0 (dpmsolver++) or eps (dpmsolver). */
  private convert(modelOutput: Float32Array, t: number, sample: Float32Array): Float32Array {
    const a = this.alphaT[t];
    const s = this.sigmaT[t];
    const p = this.config.predictionType;
    if (this.config.algorithmType === 'dpmsolver++') {
      if (p === 'epsilon') return sample.map((x, i) => fr(fr(x - fr(s * modelOutput[i])) / a));
      if (p === 'sample') return Float32Array.from(modelOutput);
      return sample.map((x, i) => fr(fr(a * x) - fr(s * modelOutput[i])));
    }
    if (p === 'epsilon') return Float32Array.from(modelOutput);
    if (p === 'sample') return sample.map((x, i) => fr(fr(x - fr(a * modelOutput[i])) / s));
    return sample.map((x, i) => fr(fr(a * modelOutput[i]) + fr(s * x)));
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.checkInOrder(stepIndex);
    this.checkInputs(modelOutput, sample);
    const c = this.config;
    const ts = this.timesteps;
    const timestep = ts[stepIndex];
    const isLast = stepIndex === ts.length - 1;
    const prevTimestep = isLast ? 0 : ts[stepIndex + 1];
    const lowerOrderFinal = isLast && c.lowerOrderFinal && ts.length < 15;
    const lowerOrderSecond = stepIndex === ts.length - 2 && c.lowerOrderFinal && ts.length < 15;

    const m = this.convert(modelOutput, timestep, sample);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    if (c.algorithmType === 'dpmsolver++') this.predOriginalSample = m;

    let out: Float32Array;
    if (c.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      out = this.firstOrder(m, timestep, prevTimestep, sample);
    } else if (c.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      out = this.secondOrder([ts[stepIndex - 1], timestep], prevTimestep, sample);
    } else {
      out = this.thirdOrder([ts[stepIndex - 2], ts[stepIndex - 1], timestep], prevTimestep, sample);
    }
    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.stepsTaken++;
    return out;
  }

  private history(back: number): Float32Array {
    const v = this.modelOutputs[this.modelOutputs.length - 1 - back];
    if (!v) throw new Error('DPM-Solver: internal state lost (missing model output history)');
    return v;
  }

  private firstOrder(m: Float32Array, s: number, t: number, sample: Float32Array): Float32Array {
    const h = fr(this.lambdaT[t] - this.lambdaT[s]);
    if (this.config.algorithmType === 'dpmsolver++') {
      const c0 = fr(this.sigmaT[t] / this.sigmaT[s]);
      const c1 = fr(this.alphaT[t] * fr(fr(Math.exp(-h)) - 1));
      return sample.map((x, i) => fr(fr(c0 * x) - fr(c1 * m[i])));
    }
    const c0 = fr(this.alphaT[t] / this.alphaT[s]);
    const c1 = fr(this.sigmaT[t] * fr(fr(Math.exp(h)) - 1));
    return sample.map((x, i) => fr(fr(c0 * x) - fr(c1 * m[i])));
  }

  private secondOrder([s1, s0]: number[], t: number, sample: Float32Array): Float32Array {
    const m0 = this.history(0);
    const m1 = this.history(1);
    const L = this.lambdaT;
    const h = fr(L[t] - L[s0]);
    const h0 = fr(L[s0] - L[s1]);
    const r0 = fr(h0 / h);
    const inv = fr(1 / r0);
    const D1 = m0.map((v, i) => fr(inv * fr(v - m1[i])));
    const out = new Float32Array(sample.length);
    if (this.config.algorithmType === 'dpmsolver++') {
      const c0 = fr(this.sigmaT[t] / this.sigmaT[s0]);
      const em1 = fr(fr(Math.exp(-h)) - 1);
      const A = fr(this.alphaT[t] * em1);
      if (this.config.solverType === 'midpoint') {
        const halfA = fr(0.5 * A);
        for (let i = 0; i < out.length; i++) out[i] = fr(fr(fr(c0 * sample[i]) - fr(A * m0[i])) - fr(halfA * D1[i]));
      } else {
        const B = fr(this.alphaT[t] * fr(fr(em1 / h) + 1));
        for (let i = 0; i < out.length; i++) out[i] = fr(fr(fr(c0 * sample[i]) - fr(A * m0[i])) + fr(B * D1[i]));
      }
    } else {
      const c0 = fr(this.alphaT[t] / this.alphaT[s0]);
      const ep1 = fr(fr(Math.exp(h)) - 1);
      const A = fr(this.sigmaT[t] * ep1);
      if (this.config.solverType === 'midpoint') {
        const halfA = fr(0.5 * A);
        for (let i = 0; i < out.length; i++) out[i] = fr(fr(fr(c0 * sample[i]) - fr(A * m0[i])) - fr(halfA * D1[i]));
      } else {
        const B = fr(this.sigmaT[t] * fr(fr(ep1 / h) - 1));
        for (let i = 0; i < out.length; i++) out[i] = fr(fr(fr(c0 * sample[i]) - fr(A * m0[i])) - fr(B * D1[i]));
      }
    }
    return out;
  }

  private thirdOrder([s2, s1, s0]: number[], t: number, sample: Float32Array): Float32Array {
    const m0 = this.history(0);
    const m1 = this.history(1);
    const m2 = this.history(2);
    const L = this.lambdaT;
    const h = fr(L[t] - L[s0]);
    const h0 = fr(L[s0] - L[s1]);
    const h1 = fr(L[s1] - L[s2]);
    const r0 = fr(h0 / h);
    const r1 = fr(h1 / h);
    const inv0 = fr(1 / r0);
    const inv1 = fr(1 / r1);
    const w = fr(r0 / fr(r0 + r1));
    const inv01 = fr(1 / fr(r0 + r1));
    const n = sample.length;
    const out = new Float32Array(n);
    const pp = this.config.algorithmType === 'dpmsolver++';
    const e = pp ? fr(Math.exp(-h)) : fr(Math.exp(h));
    const em1 = fr(e - 1);
    const base = pp ? this.sigmaT : this.alphaT;
    const c0 = fr(base[t] / base[s0]);
    const k = pp ? this.alphaT[t] : this.sigmaT[t];
    const A = fr(k * em1);
    const B = pp ? fr(k * fr(fr(em1 / h) + 1)) : fr(k * fr(fr(em1 / h) - 1));
    const C = pp ? fr(k * fr(fr(fr(fr(em1 + h) / fr(h * h))) - 0.5)) : fr(k * fr(fr(fr(fr(em1 - h) / fr(h * h))) - 0.5));
    for (let i = 0; i < n; i++) {
      const d10 = fr(inv0 * fr(m0[i] - m1[i]));
      const d11 = fr(inv1 * fr(m1[i] - m2[i]));
      const diff = fr(d10 - d11);
      const D1 = fr(d10 + fr(w * diff));
      const D2 = fr(inv01 * diff);
      const first = fr(fr(c0 * sample[i]) - fr(A * m0[i]));
      out[i] = pp ? fr(fr(first + fr(B * D1)) - fr(C * D2)) : fr(fr(first - fr(B * D1)) - fr(C * D2));
    }
    return out;
  }
}
