// scheduler_config.json → a typed, validated configuration for one scheduler kind.
//
// diffusers lets any scheduler be built from another's config (`EulerDiscreteScheduler.from_config(pndm.config)`):
// keys the target class does not take are ignored and keys it takes but the file lacks get THAT class's defaults
// (e.g. timestep_spacing defaults to "leading" for PNDM/DDIM but "linspace" for Euler/LMS/DPM-Solver). We mirror
// that: `resolveSchedulerConfig(kind, json)` applies the defaults of `kind` (diffusers v0.21.4; LCMScheduler, which
// v0.21.4 lacks, as diffusers v0.22.0 added it).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HeedError, type HeedErrorKind } from '../../errors.js';

export type SchedulerKind = 'pndm' | 'ddim' | 'euler' | 'euler-ancestral' | 'dpm-solver' | 'lms' | 'lcm';
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  trainedBetas: number[] | null;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
  /** PNDM/DDIM: the "previous" alpha product of the last step is 1 (true) or alphas_cumprod[0] (false). */
  setAlphaToOne: boolean;
  /** PNDM: use PLMS only (what every SD export sets). */
  skipPrkSteps: boolean;
  /** DDIM: clamp the predicted x0 to ±clipSampleRange. */
  clipSample: boolean;
  clipSampleRange: number;
  /** DDIM: rescale betas to zero terminal SNR. */
  rescaleBetasZeroSnr: boolean;
  /** Euler / LMS / DPM-Solver: Karras et al. sigma spacing. */
  useKarrasSigmas: boolean;
  /** Euler: "linear" or "log_linear" sigma interpolation. */
  interpolationType: 'linear' | 'log_linear';
  /** DPM-Solver: order 1..3, algorithm and solver type. */
  solverOrder: number;
  algorithmType: 'dpmsolver++' | 'dpmsolver';
  solverType: 'midpoint' | 'heun';
  lowerOrderFinal: boolean;
  lambdaMinClipped: number;
  /** LCM: the length of the distillation schedule its timesteps are taken from (default 50). */
  originalInferenceSteps: number;
  /** LCM: the boundary-condition scalings read t·timestep_scaling (v0.22.0 hard-codes t / 0.1, i.e. 10). */
  timestepScaling: number;
}

/** A scheduler config Heed cannot drive: the model's (default) or, where the caller named the scheduler, the request's. */
export class SchedulerConfigError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'SchedulerConfigError';
  }
}

/** What each diffusers class defaults to when a key is missing (v0.21.4 __init__ signatures). */
const CLASS_DEFAULTS: Record<SchedulerKind, Partial<SchedulerConfig>> = {
  pndm: { timestepSpacing: 'leading', setAlphaToOne: false },
  ddim: { timestepSpacing: 'leading', setAlphaToOne: true, clipSample: true },
  euler: { timestepSpacing: 'linspace' },
  'euler-ancestral': { timestepSpacing: 'linspace' },
  lms: { timestepSpacing: 'linspace' },
  'dpm-solver': { timestepSpacing: 'linspace' },
  // LCMScheduler's __init__ defaults are SD's betas (not DDPM's) and set_alpha_to_one; it ignores timestep_spacing.
  lcm: { timestepSpacing: 'leading', setAlphaToOne: true, betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' },
};

const BASE_DEFAULTS: SchedulerConfig = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear',
  trainedBetas: null,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  stepsOffset: 0,
  setAlphaToOne: false,
  skipPrkSteps: false,
  clipSample: false,
  clipSampleRange: 1.0,
  rescaleBetasZeroSnr: false,
  useKarrasSigmas: false,
  interpolationType: 'linear',
  solverOrder: 2,
  algorithmType: 'dpmsolver++',
  solverType: 'midpoint',
  lowerOrderFinal: true,
  lambdaMinClipped: -Infinity,
  originalInferenceSteps: 50,
  timestepScaling: 10,
};

type Json = Record<string, unknown>;

function pick<T>(json: Json, key: string, check: (v: unknown) => v is T, expected: string, source: string): T | undefined {
  if (!(key in json) || json[key] === null) return undefined;
  const v = json[key];
  if (!check(v)) throw new SchedulerConfigError(`${source}: "${key}" must be ${expected} (got ${JSON.stringify(v)})`);
  return v;
}
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const oneOf = <T extends string>(values: readonly T[]) => (v: unknown): v is T => typeof v === 'string' && (values as readonly string[]).includes(v);
const isNumArray = (v: unknown): v is number[] => Array.isArray(v) && v.every(isNum);

/**
 * Builds the configuration of scheduler `kind` from a scheduler_config.json object (any diffusers scheduler's),
 * validating every value it uses. `source` names the file in error messages.
 */
export function resolveSchedulerConfig(kind: SchedulerKind, json: Json = {}, source = 'scheduler_config.json'): SchedulerConfig {
  const c: SchedulerConfig = { ...BASE_DEFAULTS, ...CLASS_DEFAULTS[kind] };
  const set = <K extends keyof SchedulerConfig>(k: K, v: SchedulerConfig[K] | undefined) => {
    if (v !== undefined) c[k] = v;
  };
  set('numTrainTimesteps', pick(json, 'num_train_timesteps', isInt, 'an integer', source));
  set('betaStart', pick(json, 'beta_start', isNum, 'a number', source));
  set('betaEnd', pick(json, 'beta_end', isNum, 'a number', source));
  set('betaSchedule', pick(json, 'beta_schedule', oneOf(['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const), '"linear", "scaled_linear" or "squaredcos_cap_v2"', source));
  set('trainedBetas', pick(json, 'trained_betas', isNumArray, 'an array of numbers', source));
  set('predictionType', pick(json, 'prediction_type', oneOf(['epsilon', 'v_prediction', 'sample'] as const), '"epsilon", "v_prediction" or "sample"', source));
  set('timestepSpacing', pick(json, 'timestep_spacing', oneOf(['leading', 'trailing', 'linspace'] as const), '"leading", "trailing" or "linspace"', source));
  set('stepsOffset', pick(json, 'steps_offset', isInt, 'an integer', source));
  set('setAlphaToOne', pick(json, 'set_alpha_to_one', isBool, 'true or false', source));
  set('skipPrkSteps', pick(json, 'skip_prk_steps', isBool, 'true or false', source));
  set('clipSample', pick(json, 'clip_sample', isBool, 'true or false', source));
  set('clipSampleRange', pick(json, 'clip_sample_range', isNum, 'a number', source));
  set('rescaleBetasZeroSnr', pick(json, 'rescale_betas_zero_snr', isBool, 'true or false', source));
  set('useKarrasSigmas', pick(json, 'use_karras_sigmas', isBool, 'true or false', source));
  set('interpolationType', pick(json, 'interpolation_type', oneOf(['linear', 'log_linear'] as const), '"linear" or "log_linear"', source));
  set('solverOrder', pick(json, 'solver_order', isInt, 'an integer', source));
  set('lowerOrderFinal', pick(json, 'lower_order_final', isBool, 'true or false', source));
  set('lambdaMinClipped', pick(json, 'lambda_min_clipped', isNum, 'a number', source));
  set('originalInferenceSteps', pick(json, 'original_inference_steps', isInt, 'an integer', source));
  set('timestepScaling', pick(json, 'timestep_scaling', isNum, 'a number', source));
  const algorithm = pick(json, 'algorithm_type', (v): v is string => typeof v === 'string', 'a string', source);
  if (algorithm !== undefined) {
    // diffusers maps the deprecated "deis" to dpmsolver++ and rejects the rest we cannot run.
    if (algorithm === 'dpmsolver++' || algorithm === 'deis') c.algorithmType = 'dpmsolver++';
    else if (algorithm === 'dpmsolver') c.algorithmType = 'dpmsolver';
    else if (kind === 'dpm-solver') {
      throw new SchedulerConfigError(`${source}: algorithm_type "${algorithm}" is not supported (use "dpmsolver++" or "dpmsolver"; the SDE variants are not implemented)`);
    }
  }
  const solverType = pick(json, 'solver_type', (v): v is string => typeof v === 'string', 'a string', source);
  if (solverType !== undefined) {
    if (solverType === 'midpoint' || solverType === 'heun') c.solverType = solverType;
    else if (['logrho', 'bh1', 'bh2'].includes(solverType)) c.solverType = 'midpoint'; // as diffusers does
    else if (kind === 'dpm-solver') throw new SchedulerConfigError(`${source}: solver_type "${solverType}" must be "midpoint" or "heun"`);
  }

  // Features the file may request that Heed does not implement: refuse rather than silently differ.
  if (json.thresholding === true && (kind === 'ddim' || kind === 'dpm-solver' || kind === 'lcm')) {
    throw new SchedulerConfigError(`${source}: "thresholding": true (dynamic thresholding) is not supported; set it to false`);
  }
  if (kind === 'dpm-solver' && typeof json.variance_type === 'string') {
    throw new SchedulerConfigError(`${source}: variance_type "${json.variance_type}" (learned variance) is not supported by Heed's DPM-Solver`);
  }
  // Options newer diffusers added to the sigma schedulers (v0.24+: timestep_type, sigma_min/max; v0.31:
  // exponential/beta sigmas). SD-Turbo's file sets timestep_type "discrete", which is what v0.21.4 does.
  if ((kind === 'euler' || kind === 'euler-ancestral') && json.timestep_type === 'continuous' && c.predictionType === 'v_prediction') {
    throw new SchedulerConfigError(`${source}: timestep_type "continuous" (diffusers 0.24+, timesteps 0.25·log σ) is not supported; use "discrete"`);
  }
  for (const key of ['use_exponential_sigmas', 'use_beta_sigmas'] as const) {
    if (json[key] === true) throw new SchedulerConfigError(`${source}: "${key}": true (diffusers 0.31+) is not supported; set it to false`);
  }
  if (c.useKarrasSigmas && (typeof json.sigma_min === 'number' || typeof json.sigma_max === 'number')) {
    throw new SchedulerConfigError(`${source}: sigma_min / sigma_max overrides of the Karras range (diffusers 0.24+) are not supported; set them to null`);
  }
  if (c.numTrainTimesteps < 2) throw new SchedulerConfigError(`${source}: num_train_timesteps must be at least 2`);
  if (c.trainedBetas && c.trainedBetas.length !== c.numTrainTimesteps) {
    throw new SchedulerConfigError(`${source}: trained_betas has ${c.trainedBetas.length} values but num_train_timesteps is ${c.numTrainTimesteps}`);
  }
  if (kind === 'lcm') {
    if (c.originalInferenceSteps < 1 || c.originalInferenceSteps > c.numTrainTimesteps) {
      throw new SchedulerConfigError(`${source}: original_inference_steps must be between 1 and num_train_timesteps (${c.numTrainTimesteps}); got ${c.originalInferenceSteps}`);
    }
    if (!(c.timestepScaling > 0)) throw new SchedulerConfigError(`${source}: timestep_scaling must be > 0 (got ${c.timestepScaling})`);
  }
  if (c.solverOrder < 1 || c.solverOrder > 3) throw new SchedulerConfigError(`${source}: solver_order must be 1, 2 or 3 (got ${c.solverOrder})`);
  if (kind === 'pndm' && c.predictionType === 'sample') {
    throw new SchedulerConfigError(`${source}: PNDM supports prediction_type "epsilon" or "v_prediction", not "sample"`);
  }
  if (kind === 'euler-ancestral' && c.predictionType === 'sample') {
    throw new SchedulerConfigError(`${source}: Euler ancestral supports prediction_type "epsilon" or "v_prediction", not "sample"`);
  }
  return c;
}

/** Reads `<folder>/scheduler_config.json` (or the file itself), with a clear error when it is missing or bad. */
export async function readSchedulerConfigJson(pathOrFolder: string): Promise<Record<string, unknown>> {
  const file = pathOrFolder.endsWith('.json') ? pathOrFolder : join(pathOrFolder, 'scheduler_config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new SchedulerConfigError(
      `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); a diffusers model folder keeps it at scheduler/scheduler_config.json`,
    );
  }
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('expected a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new SchedulerConfigError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}
