// Scheduler factory: by name (CLI/UI choices) or by the `_class_name` of a scheduler_config.json.
import { resolveSchedulerConfig, SchedulerConfigError, type SchedulerKind } from './config.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverScheduler } from './dpmsolver.js';
import { EulerAncestralScheduler, EulerScheduler } from './euler.js';
import { LcmScheduler } from './lcm.js';
import { LmsScheduler } from './lms.js';
import { PndmScheduler } from './pndm.js';
import type { Scheduler } from './types.js';

export type { Scheduler, NoiseSource } from './types.js';
export type { SchedulerConfig, SchedulerKind, BetaSchedule, PredictionType, TimestepSpacing } from './config.js';
export { resolveSchedulerConfig, readSchedulerConfigJson, SchedulerConfigError } from './config.js';
export { PndmScheduler } from './pndm.js';
export { DdimScheduler } from './ddim.js';
export { EulerScheduler, EulerAncestralScheduler } from './euler.js';
export { LmsScheduler } from './lms.js';
export { DpmSolverScheduler } from './dpmsolver.js';
export { LcmScheduler, lcmTimesteps } from './lcm.js';

interface NameEntry {
  kind: SchedulerKind;
  /** Overrides applied on top of the config file (e.g. the "-karras" names). */
  overrides?: Record<string, unknown>;
}

/** Canonical names first (what `schedulerNames()` lists), then aliases and diffusers class names. */
const NAMES: Record<string, NameEntry> = {
  pndm: { kind: 'pndm' },
  ddim: { kind: 'ddim' },
  euler: { kind: 'euler' },
  'euler-ancestral': { kind: 'euler-ancestral' },
  'dpm++2m': { kind: 'dpm-solver', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false } },
  'dpm++2m-karras': { kind: 'dpm-solver', overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true } },
  lms: { kind: 'lms', overrides: { use_karras_sigmas: false } },
  'lms-karras': { kind: 'lms', overrides: { use_karras_sigmas: true } },
  'euler-karras': { kind: 'euler', overrides: { use_karras_sigmas: true } },
  lcm: { kind: 'lcm' },
};
const ALIASES: Record<string, string> = {
  plms: 'pndm',
  euler_a: 'euler-ancestral',
  'euler-a': 'euler-ancestral',
  euler_ancestral: 'euler-ancestral',
  dpmpp2m: 'dpm++2m',
  'dpmpp-2m': 'dpm++2m',
  'dpm-solver++': 'dpm++2m',
  'dpmsolver++': 'dpm++2m',
  'dpmpp2m-karras': 'dpm++2m-karras',
  k_lms: 'lms',
};
/** diffusers class names keep the config file's own options (Karras flag, solver order ...). */
const CLASS_NAMES: Record<string, SchedulerKind> = {
  PNDMScheduler: 'pndm',
  DDIMScheduler: 'ddim',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler-ancestral',
  DPMSolverMultistepScheduler: 'dpm-solver',
  LMSDiscreteScheduler: 'lms',
  LCMScheduler: 'lcm',
};

/** table[key] when it is the table's own entry (user-given keys must not reach Object.prototype). */
function own<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** The scheduler names accepted by createScheduler (canonical ones; aliases and diffusers class names also work). */
export function schedulerNames(): string[] {
  return Object.keys(NAMES);
}

export interface CreateSchedulerOptions {
  /** DDIM's eta (default 0). */
  eta?: number;
  /** Names the config's origin in error messages. */
  source?: string;
}

/**
 * Builds a scheduler from `name` (see schedulerNames(); or a diffusers class name) and a scheduler_config.json
 * object. With no name, the config's `_class_name` decides. Options the chosen scheduler does not take are ignored
 * and missing ones get that scheduler's diffusers defaults, as `XScheduler.from_config(config)` does.
 */
export function createScheduler(name: string | undefined, configJson: Record<string, unknown> = {}, options: CreateSchedulerOptions = {}): Scheduler {
  const source = options.source ?? 'scheduler_config.json';
  let entry: NameEntry | undefined;
  if (name === undefined || name === '') {
    const cls = configJson._class_name;
    if (typeof cls !== 'string') {
      throw new SchedulerConfigError(`${source} has no "_class_name"; choose a scheduler by name: ${schedulerNames().join(', ')}`);
    }
    const kind = own(CLASS_NAMES, cls);
    if (!kind) {
      throw new SchedulerConfigError(
        `${source}: scheduler class "${cls}" is not supported; choose one of ${schedulerNames().join(', ')} ` +
          `(or the classes ${Object.keys(CLASS_NAMES).join(', ')})`,
      );
    }
    entry = { kind };
  } else {
    const key = name.trim();
    const lower = key.toLowerCase();
    // Own properties only: a name such as "constructor" or "__proto__" must be unknown, not Object.prototype's.
    const alias = own(ALIASES, lower);
    const cls = own(CLASS_NAMES, key);
    entry = own(NAMES, lower) ?? (alias ? own(NAMES, alias) : undefined) ?? (cls ? { kind: cls } : undefined);
    if (!entry) {
      throw new SchedulerConfigError(
        `unknown scheduler "${name}"; valid names: ${schedulerNames().join(', ')} ` +
          `(aliases: ${Object.keys(ALIASES).join(', ')}; diffusers classes: ${Object.keys(CLASS_NAMES).join(', ')})`,
        'scheduler', 'invalid_input',
      );
    }
  }
  const config = resolveSchedulerConfig(entry.kind, { ...configJson, ...entry.overrides }, source);
  switch (entry.kind) {
    case 'pndm':
      return new PndmScheduler(config);
    case 'ddim':
      return new DdimScheduler(config, { eta: options.eta });
    case 'euler':
      return new EulerScheduler(config);
    case 'euler-ancestral':
      return new EulerAncestralScheduler(config);
    case 'lms':
      return new LmsScheduler(config);
    case 'dpm-solver':
      return new DpmSolverScheduler(config);
    case 'lcm':
      return new LcmScheduler(config);
  }
}
