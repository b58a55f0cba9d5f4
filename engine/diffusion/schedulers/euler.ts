// Euler (Karras et al. 2022, Algorithm 2 without churn) and Euler ancestral, as diffusers v0.21.4
// EulerDiscreteScheduler / EulerAncestralDiscreteScheduler. They work in sigma space: x = x0 + sigma·eps, the model
// sees x / sqrt(sigma² + 1), and the timesteps handed to the model may be fractional.
// Sigmas follow diffusers' precision: float32 training sigmas, numpy float64 interpolation, then float32 again.
import { fr } from '../float32.js';
import type { SchedulerConfig, SchedulerKind } from './config.js';
import { BaseScheduler } from './base.js';
import {
  checkStepCount, karrasSigmas, npArange, npInterpIndex, npLinspace, roundHalfEven, sigmaToT, torchLinspaceF32, trainingSigmas,
} from './tables.js';
import { checkSameLength, type NoiseSource } from './types.js';

/** A scheduler whose state is a descending list of sigmas (one per loop index, plus a final 0). */
export abstract class SigmaScheduler extends BaseScheduler {
  /** float32 sigmas, length timesteps.length + 1 (the last is 0). */
  sigmas: Float32Array = new Float32Array(0);

  protected constructor(kind: SchedulerKind, config: SchedulerConfig) {
    super(kind, config);
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) max = Math.max(max, s);
    if (this.sigmas.length === 0) max = trainingSigmas(this.alphasCumprod).reduce((a, b) => Math.max(a, b), 0);
    // diffusers: sigma_max for linspace/trailing spacing, sqrt(sigma_max² + 1) for leading.
    return this.config.timestepSpacing === 'leading' ? fr(Math.sqrt(fr(fr(max * max) + 1))) : max;
  }

  setTimesteps(n: number): void {
    checkStepCount(n, this.config, this.kind);
    const c = this.config;
    const N = c.numTrainTimesteps;
    let timesteps: number[];
    switch (c.timestepSpacing) {
      case 'linspace':
        timesteps = npLinspace(0, N - 1, n).map(fr).reverse();
        break;
      case 'leading': {
        const ratio = Math.floor(N / n);
        timesteps = Array.from({ length: n }, (_, i) => fr(i * ratio)).reverse().map((t) => fr(t + c.stepsOffset));
        break;
      }
      case 'trailing':
        timesteps = npArange(N, 0, -N / n).map((t) => fr(roundHalfEven(t))).map((t) => fr(t - 1));
        break;
    }
    const train = trainingSigmas(this.alphasCumprod);
    let sigmas: number[];
    if (this.kind === 'euler' && c.interpolationType === 'log_linear') {
      // diffusers: torch.linspace(log σ_max, log σ_min, n + 1).exp() in float32.
      const logs = torchLinspaceF32(fr(Math.log(train[train.length - 1])), fr(Math.log(train[0])), n + 1);
      sigmas = Array.from(logs, (v) => fr(Math.exp(v)));
    } else {
      sigmas = timesteps.map((t) => npInterpIndex(t, train));
    }
    if (c.useKarrasSigmas) {
      const logSigmas = Array.from(train, (s) => fr(Math.log(s))); // np.log of a float32 array stays float32
      sigmas = karrasSigmas(sigmas, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = timesteps;
    this.numInferenceSteps = n;
    this.stepsTaken = 0;
    this.predOriginalSample = null;
    this.onSetTimesteps();
  }

  /** Hook for subclasses with multistep state. */
  protected onSetTimesteps(): void {}

  override scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    this.checkIndex(stepIndex);
    const sigma = this.sigmas[stepIndex];
    const d = fr(Math.sqrt(fr(fr(sigma * sigma) + 1)));
    return sample.map((v) => fr(v / d));
  }

  override addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(this.kind, noise, original, 'the noise');
    const idx = this.timesteps.indexOf(timestep);
    if (idx < 0) throw new RangeError(`${this.kind}.addNoise: timestep ${timestep} is not one of scheduler.timesteps (call setTimesteps first)`);
    const sigma = this.sigmas[idx];
    return original.map((v, i) => fr(v + fr(noise[i] * sigma)));
  }

  /** x0 estimate from the model output at `sigma` (float32, torch order). */
  protected predictX0(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    switch (this.config.predictionType) {
      case 'epsilon':
        return sample.map((s, i) => fr(s - fr(sigma * modelOutput[i])));
      case 'v_prediction': {
        const s2p1 = fr(fr(sigma * sigma) + 1);
        const c = fr(-sigma / fr(Math.sqrt(s2p1)));
        return sample.map((s, i) => fr(fr(modelOutput[i] * c) + fr(s / s2p1)));
      }
      case 'sample':
        return Float32Array.from(modelOutput);
    }
  }
}

export class EulerScheduler extends SigmaScheduler {
  constructor(config: SchedulerConfig) {
    super('euler', config);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.checkIndex(stepIndex);
    this.checkInputs(modelOutput, sample);
    const sigma = this.sigmas[stepIndex]; // churn is 0, so sigma_hat = sigma
    const x0 = this.predictX0(modelOutput, sample, sigma);
    const dt = fr(this.sigmas[stepIndex + 1] - sigma);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const derivative = fr(fr(sample[i] - x0[i]) / sigma);
      out[i] = fr(sample[i] + fr(derivative * dt));
    }
    this.predOriginalSample = x0;
    this.stepsTaken++;
    return out;
  }
}

export class EulerAncestralScheduler extends SigmaScheduler {
  constructor(config: SchedulerConfig) {
    super('euler-ancestral', config);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise?: NoiseSource): Float32Array {
    this.checkIndex(stepIndex);
    this.checkInputs(modelOutput, sample);
    if (!noise) throw new Error('euler-ancestral needs a noise source for every step (pass the TorchGenerator that drew the latents)');
    const sigma = this.sigmas[stepIndex];
    const x0 = this.predictX0(modelOutput, sample, sigma);
    const from2 = fr(sigma * sigma);
    const to = this.sigmas[stepIndex + 1];
    const to2 = fr(to * to);
    const sigmaUp = fr(Math.sqrt(fr(fr(to2 * fr(from2 - to2)) / from2)));
    const sigmaDown = fr(Math.sqrt(fr(to2 - fr(sigmaUp * sigmaUp))));
    const dt = fr(sigmaDown - sigma);
    const z = noise.randn([sample.length]); // drawn even on the last step, as diffusers does (keeps the stream aligned)
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const derivative = fr(fr(sample[i] - x0[i]) / sigma);
      out[i] = fr(fr(sample[i] + fr(derivative * dt)) + fr(z[i] * sigmaUp));
    }
    this.predOriginalSample = x0;
    this.stepsTaken++;
    return out;
  }
}
