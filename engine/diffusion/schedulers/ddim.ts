// DDIM (Song et al. 2021) as diffusers v0.21.4 DDIMScheduler: deterministic with eta = 0, stochastic with eta > 0
// (noise from a NoiseSource, e.g. the TorchGenerator that drew the initial latents). Float32 arithmetic, torch order.
import { fr } from '../float32.js';
import type { SchedulerConfig } from './config.js';
import { BaseScheduler } from './base.js';
import { ddpmBaseTimesteps } from './pndm.js';
import { checkStepCount } from './tables.js';
import type { NoiseSource } from './types.js';

export interface DdimOptions {
  /** Weight of the injected noise: 0 = DDIM, 1 = DDPM-like. */
  eta?: number;
}

export class DdimScheduler extends BaseScheduler {
  readonly finalAlphaCumprod: number;
  readonly eta: number;

  constructor(config: SchedulerConfig, options: DdimOptions = {}) {
    super('ddim', config);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0];
    this.eta = options.eta ?? 0;
    if (!(this.eta >= 0)) throw new RangeError(`DDIM: eta must be >= 0 (got ${options.eta})`);
  }

  get initNoiseSigma(): number {
    return 1;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.config, 'DDIM');
    this.timesteps = ddpmBaseTimesteps(this.config, n).reverse();
    this.numInferenceSteps = n;
    this.stepsTaken = 0;
    this.predOriginalSample = null;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise?: NoiseSource): Float32Array {
    this.checkIndex(stepIndex);
    this.checkInputs(modelOutput, sample);
    if (this.eta > 0 && !noise) throw new Error('DDIM with eta > 0 needs a noise source (pass the TorchGenerator to step)');
    const c = this.config;
    const timestep = this.timesteps[stepIndex];
    const prevTimestep = timestep - Math.floor(c.numTrainTimesteps / this.numInferenceSteps);
    const at = this.alphasCumprod[timestep];
    const ap = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const bt = fr(1 - at);
    const sa = fr(Math.sqrt(at));
    const sb = fr(Math.sqrt(bt));
    const n = sample.length;
    const x0 = new Float32Array(n);
    const eps = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = sample[i];
      const m = modelOutput[i];
      switch (c.predictionType) {
        case 'epsilon':
          x0[i] = fr(fr(s - fr(sb * m)) / sa);
          eps[i] = m;
          break;
        case 'sample':
          x0[i] = m;
          eps[i] = fr(fr(s - fr(sa * m)) / sb);
          break;
        case 'v_prediction':
          x0[i] = fr(fr(sa * s) - fr(sb * m));
          eps[i] = fr(fr(sa * m) + fr(sb * s));
          break;
      }
    }
    if (c.clipSample) {
      const r = fr(c.clipSampleRange);
      for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i], -r), r);
    }
    const bp = fr(1 - ap);
    const variance = fr(fr(bp / bt) * fr(1 - fr(at / ap)));
    const std = fr(fr(this.eta) * fr(Math.sqrt(variance)));
    const dirCoeff = fr(Math.sqrt(fr(fr(1 - ap) - fr(std * std))));
    const sap = fr(Math.sqrt(ap));
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = fr(fr(sap * x0[i]) + fr(dirCoeff * eps[i]));
    if (this.eta > 0 && noise) {
      const z = noise.randn([n]);
      for (let i = 0; i < n; i++) out[i] = fr(out[i] + fr(std * z[i]));
    }
    this.predOriginalSample = x0;
    this.stepsTaken++;
    return out;
  }
}
