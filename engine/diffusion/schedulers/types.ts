// The one small interface every scheduler implements (diffusers' set_timesteps / scale_model_input / step / add_noise).
//
// Latents are flat Float32Arrays (any shape; schedulers work elementwise). The pipeline loop is
//   scheduler.setTimesteps(steps); latents = scheduler.scaleInitialNoise(randn);
//   for (let i = 0; i < scheduler.timesteps.length; i++) {
//     const input = scheduler.scaleModelInput(latents, i);            // per batch item
//     const eps = unet(input, scheduler.timesteps[i], text);           // + classifier-free guidance
//     latents = scheduler.step(eps, i, latents, generator);
//   }
// `i` is the loop index, not the timestep: PNDM's PLMS warm-up repeats a timestep (10 steps give 11 entries).
import type { SchedulerConfig, SchedulerKind } from './config.js';

/** A source of standard-normal noise, e.g. TorchGenerator (continuing the stream that drew the initial latents). */
export interface NoiseSource {
  randn(shape: readonly number[]): Float32Array;
}

export interface Scheduler {
  readonly kind: SchedulerKind;
  readonly config: Readonly<SchedulerConfig>;
  /** The model timestep of each loop iteration (integers for PNDM/DDIM/DPM-Solver, fractional for Euler/LMS+Karras). */
  readonly timesteps: readonly number[];
  /** Standard deviation of the initial noise (1 for DDPM-style schedulers, sigma_max-based for Euler/LMS). */
  readonly initNoiseSigma: number;
  /** Steps requested in the last setTimesteps (DPM-Solver may end with fewer timesteps after de-duplication). */
  readonly numInferenceSteps: number;
  /** The x0 estimate of the last step, when the scheduler computes one (for previews); null before the first step. */
  readonly predOriginalSample: Float32Array | null;
  /** Builds the timestep schedule and resets the multistep state. */
  setTimesteps(numInferenceSteps: number): void;
  /** Latents × initNoiseSigma in float32 (what the pipeline does to the initial noise). */
  scaleInitialNoise(noise: Float32Array): Float32Array;
  /** Scales the latents given to the model at loop index `stepIndex` (identity for DDPM-style schedulers). */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  /**
   * Advances `sample` by one loop iteration given the (guided) model output. Multistep schedulers keep history, so
   * call it once per index, in order. Ancestral samplers (and DDIM with eta > 0) draw noise from `noise`.
   */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise?: NoiseSource): Float32Array;
  /** Forward-diffuses clean latents to `timestep` (one of `timesteps`), e.g. for img2img. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}

export function checkSameLength(name: string, a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${name}: ${what} has ${a.length} elements but the sample has ${b.length}`);
}
