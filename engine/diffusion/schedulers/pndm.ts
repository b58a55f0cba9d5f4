// PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models"), as diffusers v0.21.4 PNDMScheduler.
// Stable Diffusion exports set skip_prk_steps: only the linear multistep (PLMS) part runs, warmed up by one
// repeated timestep, so N steps give N+1 model calls (10 → [901, 801, 801, 701, ..., 1]).
// All tensor arithmetic is float32 with one rounding per torch op, in torch's order.
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { BaseScheduler } from './base.js';
import { checkStepCount, npArange, npLinspace, roundHalfEven } from './tables.js';

const PNDM_ORDER = 4;

/** The ascending base timesteps shared by PNDM and DDIM (diffusers' leading / linspace / trailing spacing). */
export function ddpmBaseTimesteps(c: SchedulerConfig, n: number): number[] {
  const N = c.numTrainTimesteps;
  switch (c.timestepSpacing) {
    case 'linspace':
      return npLinspace(0, N - 1, n).map(roundHalfEven);
    case 'leading': {
      const ratio = Math.floor(N / n);
      return Array.from({ length: n }, (_, i) => i * ratio + c.stepsOffset);
    }
    case 'trailing': {
      const ratio = N / n;
      return npArange(N, 0, -ratio).map(roundHalfEven).reverse().map((t) => t - 1);
    }
  }
}

export class PndmScheduler extends BaseScheduler {
  readonly finalAlphaCumprod: number;
  private prkCount = 0;
  private ets: Float32Array[] = [];
  private curSample: Float32Array | null = null;
  private curModelOutput: Float32Array | null = null;

  constructor(config: SchedulerConfig) {
    super('pndm', config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.config, 'PNDM');
    const base = ddpmBaseTimesteps(this.config, n);
    let prk: number[] = [];
    let plms: number[];
    if (this.config.skipPrkSteps) {
      // The PLMS warm-up: the second-to-last base timestep is repeated, then everything runs high → low.
      plms = [...base.slice(0, -1), base[base.length - 2], base[base.length - 1]].filter((t) => t !== undefined).reverse();
    } else {
      if (n < PNDM_ORDER) throw new RangeError(`PNDM with Runge-Kutta warm-up needs at least ${PNDM_ORDER} steps (got ${n}); set skip_prk_steps`);
      const half = Math.floor(Math.floor(this.config.numTrainTimesteps / n) / 2);
      const last = base.slice(-PNDM_ORDER);
      const pairs = last.flatMap((t) => [t, t + half]);
      const doubled = pairs.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1);
      prk = doubled.reverse();
      plms = base.slice(0, -3).reverse();
    }
    this.prkCount = prk.length;
    this.timesteps = [...prk, ...plms];
    this.numInferenceSteps = n;
    this.ets = [];
    this.curSample = null;
    this.curModelOutput = null;
    this.stepsTaken = 0;
    this.predOriginalSample = null;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.checkInOrder(stepIndex);
    this.checkInputs(modelOutput, sample);
    const counter = this.stepsTaken;
    const timestep = this.timesteps[stepIndex];
    const out =
      counter < this.prkCount && !this.config.skipPrkSteps
        ? this.stepPrk(modelOutput, timestep, sample, counter)
        : this.stepPlms(modelOutput, timestep, sample, counter);
    this.stepsTaken++;
    return out;
  }

  private stepPrk(modelOutput: Float32Array, timestepIn: number, sample: Float32Array, counter: number): Float32Array {
    const ratio = Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
    const diffToPrev = counter % 2 ? 0 : Math.floor(ratio / 2);
    const prevTimestep = timestepIn - diffToPrev;
    const timestep = this.timesteps[Math.floor(counter / 4) * 4];
    let mo = modelOutput;
    const sixth = fr(1 / 6);
    const third = fr(1 / 3);
    const acc = (w: number) => {
      const add = modelOutput.map((v) => fr(w * v));
      this.curModelOutput = this.curModelOutput ? this.curModelOutput.map((v, i) => fr(v + add[i])) : add;
    };
    if (counter % 4 === 0) {
      acc(sixth);
      this.ets.push(Float32Array.from(modelOutput));
      this.curSample = Float32Array.from(sample);
    } else if ((counter - 1) % 4 === 0 || (counter - 2) % 4 === 0) {
      acc(third);
    } else {
      const cur = this.curModelOutput;
      mo = modelOutput.map((v, i) => fr((cur ? cur[i] : 0) + fr(sixth * v)));
      this.curModelOutput = null;
    }
    const base = this.curSample ?? sample;
    return this.prevSample(base, timestep, prevTimestep, mo);
  }

  private stepPlms(modelOutput: Float32Array, timestepIn: number, sampleIn: Float32Array, counter: number): Float32Array {
    if (!this.config.skipPrkSteps && this.ets.length < 3) {
      throw new Error('PNDM: PLMS steps need the Runge-Kutta warm-up first; run the loop from index 0');
    }
    const ratio = Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
    let timestep = timestepIn;
    let prevTimestep = timestep - ratio;
    if (counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(Float32Array.from(modelOutput));
    } else {
      // The warm-up repeat: redo the first interval from the saved sample with the averaged noise estimate.
      prevTimestep = timestep;
      timestep = timestep + ratio;
    }
    let sample = sampleIn;
    let mo: Float32Array;
    const e = this.ets;
    const k = e.length;
    if (k === 1 && counter === 0) {
      mo = modelOutput;
      this.curSample = Float32Array.from(sampleIn);
    } else if (k === 1 && counter === 1) {
      const prev = e[k - 1];
      mo = modelOutput.map((v, i) => fr(fr(v + prev[i]) / 2));
      if (!this.curSample) throw new Error('PNDM: internal state lost (no saved sample at the warm-up step)');
      sample = this.curSample;
      this.curSample = null;
    } else if (k === 2) {
      const [a, b] = [e[1], e[0]];
      mo = a.map((v, i) => fr(fr(fr(3 * v) - b[i]) / 2));
    } else if (k === 3) {
      const [a, b, c] = [e[2], e[1], e[0]];
      mo = a.map((v, i) => fr(fr(fr(fr(23 * v) - fr(16 * b[i])) + fr(5 * c[i])) / 12));
    } else {
      const [a, b, c, d] = [e[k - 1], e[k - 2], e[k - 3], e[k - 4]];
      const w = fr(1 / 24);
      mo = a.map((v, i) => fr(w * fr(fr(fr(fr(55 * v) - fr(59 * b[i])) + fr(37 * c[i])) - fr(9 * d[i]))));
    }
    return this.prevSample(sample, timestep, prevTimestep, mo);
  }

  /** Formula (9) of the PNDM paper: x_{t-δ} from x_t and the noise estimate. */
  private prevSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutputIn: Float32Array): Float32Array {
    const at = this.alphasCumprod[timestep];
    const ap = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const bt = fr(1 - at);
    const bp = fr(1 - ap);
    let mo = modelOutputIn;
    if (this.config.predictionType === 'v_prediction') {
      const sa = fr(Math.sqrt(at));
      const sb = fr(Math.sqrt(bt));
      mo = mo.map((v, i) => fr(fr(sa * v) + fr(sb * sample[i])));
    }
    const sampleCoeff = fr(Math.sqrt(fr(ap / at)));
    const denom = fr(fr(at * fr(Math.sqrt(bp))) + fr(Math.sqrt(fr(fr(at * bt) * ap))));
    const diff = fr(ap - at);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) out[i] = fr(fr(sampleCoeff * sample[i]) - fr(fr(diff * mo[i]) / denom));
    return out;
  }
}
