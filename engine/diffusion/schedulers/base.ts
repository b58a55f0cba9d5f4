// Shared machinery: the training tables, step bookkeeping and the DDPM-style add_noise of PNDM / DDIM / DPM-Solver.
import { fr } from '../float32.js';
import type { SchedulerConfig, SchedulerKind } from './config.js';
import { alphasCumprod, makeBetas, rescaleZeroTerminalSnr } from './tables.js';
import { checkSameLength, type NoiseSource, type Scheduler } from './types.js';

export abstract class BaseScheduler implements Scheduler {
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  numInferenceSteps = 0;
  predOriginalSample: Float32Array | null = null;
  /** How many step() calls happened since setTimesteps (multistep schedulers require them in order). */
  protected stepsTaken = 0;

  constructor(
    readonly kind: SchedulerKind,
    readonly config: Readonly<SchedulerConfig>,
  ) {
    let betas = makeBetas(config);
    if ((kind === 'ddim' || kind === 'lcm') && config.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
    this.betas = betas;
    this.alphasCumprod = alphasCumprod(betas);
  }

  abstract get initNoiseSigma(): number;
  abstract setTimesteps(numInferenceSteps: number): void;
  abstract step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise?: NoiseSource): Float32Array;

  scaleInitialNoise(noise: Float32Array): Float32Array {
    const s = fr(this.initNoiseSigma);
    return s === 1 ? Float32Array.from(noise) : noise.map((v) => fr(v * s));
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    this.checkIndex(stepIndex);
    return sample;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(this.kind, noise, original, 'the noise');
    const t = Math.round(timestep);
    if (t < 0 || t >= this.alphasCumprod.length) throw new RangeError(`${this.kind}.addNoise: timestep ${timestep} is outside 0..${this.alphasCumprod.length - 1}`);
    const ac = this.alphasCumprod[t];
    const a = fr(Math.sqrt(ac));
    const b = fr(Math.sqrt(fr(1 - ac)));
    const out = new Float32Array(original.length);
    for (let i = 0; i < out.length; i++) out[i] = fr(fr(a * original[i]) + fr(b * noise[i]));
    return out;
  }

  /** Throws unless setTimesteps ran and stepIndex is a valid loop index. */
  protected checkIndex(stepIndex: number): void {
    if (this.timesteps.length === 0) throw new Error(`${this.kind}: call setTimesteps(steps) before running the scheduler`);
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= this.timesteps.length) {
      throw new RangeError(`${this.kind}: step index ${stepIndex} is outside 0..${this.timesteps.length - 1} (the loop runs over scheduler.timesteps)`);
    }
  }

  /** For multistep schedulers: the history is only valid if steps come in order 0, 1, 2, ... */
  protected checkInOrder(stepIndex: number): void {
    this.checkIndex(stepIndex);
    if (stepIndex !== this.stepsTaken) {
      throw new Error(
        `${this.kind}: step(${stepIndex}) called after ${this.stepsTaken} step(s); this multistep scheduler keeps history, ` +
          `so call step once per loop index in order (call setTimesteps again to restart)`,
      );
    }
  }

  protected checkInputs(modelOutput: Float32Array, sample: Float32Array): void {
    checkSameLength(this.kind, modelOutput, sample, 'the model output');
  }
}
