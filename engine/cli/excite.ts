// Attend-and-Excite on the command line: `heed generate … --excite cat,frog` (or `auto`), the `--ae-*` overrides of
// issue 6 and `--compare` (plain and guided runs from one seed, side by side). This module only parses the flags and
// translates them into the protocol's excite options, which the generate job (engine/jobs/excite.ts) runs and writes.
import { InvalidArgumentError, type Command } from 'commander';
import type { ExciteOptions } from '../protocol/index.js';
import { UsageError } from './errors.js';
import { finiteNumber, nonNegativeInt, positiveInt } from './options.js';

type GuidanceMethod = NonNullable<ExciteOptions['method']>;

export interface ExciteCliOptions {
  excite?: string;
  aeMaxIterToAlter?: number;
  aeThresholds?: Record<number, number>;
  aeScaleFactor?: number;
  aeMaxRefinement?: number;
  aeRes?: number;
  aeNoSmoothing?: boolean;
  aeSigma?: number;
  aeKernel?: number;
  aeSd2?: boolean;
  aeLoss?: GuidanceMethod;
  aeModifiers?: Record<string, string[]>;
  compare?: boolean;
}

/** `--ae-loss excite|syngen` → the protocol's method. */
export function parseGuidanceLoss(v: string): GuidanceMethod {
  const m = v.trim().toLowerCase();
  if (m === 'excite' || m === 'attend-excite') return 'attend-excite';
  if (m === 'syngen') return 'syngen';
  throw new InvalidArgumentError(`--ae-loss must be 'excite' (Attend-and-Excite) or 'syngen' (SynGen's binding loss), got '${v}'`);
}

/** `car=big+red,bird=blue` → {car: [big, red], bird: [blue]}. */
export function parseModifiers(v: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const part of v.split(',').map((x) => x.trim()).filter((x) => x.length > 0)) {
    const m = /^([^=+\s]+)=([^=]+)$/.exec(part);
    const mods = m ? m[2]!.split('+').map((x) => x.trim()).filter((x) => x.length > 0) : [];
    if (!m || mods.length === 0 || mods.some((x) => /\s/.test(x))) {
      throw new InvalidArgumentError(`--ae-modifiers entry '${part}' must be noun=modifier or noun=modifier+modifier (prompt words), e.g. car=big+red,bird=blue`);
    }
    out[m[1]!] = mods;
  }
  if (Object.keys(out).length === 0) throw new InvalidArgumentError('--ae-modifiers is empty: give noun=modifier pairs, e.g. car=red');
  return out;
}

/** `0:0.05,10:0.5,20:0.8` → {0: 0.05, 10: 0.5, 20: 0.8}; thresholds in [0, 1], steps non-negative integers. */
export function parseThresholds(v: string): Record<number, number> {
  const out: Record<number, number> = {};
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new InvalidArgumentError(`--ae-thresholds needs step:threshold pairs such as 0:0.05,10:0.5,20:0.8, got '${v}'`);
  for (const p of parts) {
    const m = /^(\d+)\s*:\s*([0-9.eE+-]+)$/.exec(p);
    const t = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(t) || t < 0 || t > 1) {
      throw new InvalidArgumentError(`--ae-thresholds entry '${p}' must be step:threshold with a threshold in [0, 1], e.g. 0:0.05,10:0.5,20:0.8`);
    }
    out[Number(m[1])] = t;
  }
  return out;
}

function oddKernel(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n % 2 === 0 || n > 31) throw new InvalidArgumentError(`--ae-kernel must be an odd integer from 1 to 31, got '${v}'`);
  return n;
}

/** Adds the Attend-and-Excite flags to `heed generate`. */
export function addExciteOptions(cmd: Command): Command {
  return cmd
    .option('--excite <words|auto>', 'Attend-and-Excite: prompt words to strengthen, comma-separated (or token positions, or "auto" for the prompt\'s nouns)')
    .option('--ae-max-iter-to-alter <n>', 'A&E: steps (loop indices) that get a latent update (default 25)', nonNegativeInt('--ae-max-iter-to-alter', 10_000))
    .option('--ae-thresholds <list>', 'A&E: refinement thresholds by step, e.g. 0:0.05,10:0.5,20:0.8 (the default)', parseThresholds)
    .option('--ae-scale-factor <f>', 'A&E: step size scale (default 20)', finiteNumber('--ae-scale-factor', 0, 1e6))
    .option('--ae-max-refinement <n>', 'A&E: most refinement iterations at a threshold step (default 20)', nonNegativeInt('--ae-max-refinement', 1000))
    .option('--ae-res <r>', 'A&E: side of the attention grid the loss reads (default 16 as diffusers, or the grid nearest to 16 where the UNet has none)', positiveInt('--ae-res', 1024))
    .option('--ae-no-smoothing', 'A&E: do not Gaussian-smooth the subject maps')
    .option('--ae-sigma <s>', 'A&E: σ of the Gaussian smoothing (default 0.5)', finiteNumber('--ae-sigma', 1e-6, 100))
    .option('--ae-kernel <k>', 'A&E: Gaussian kernel size, odd (default 3)', oddKernel)
    .option('--ae-sd2', 'A&E: the original repo\'s SD 2.x variant: softmax over the prompt\'s tokens only (up to EOT)')
    .option('--ae-loss <excite|syngen>', 'the loss the latents descend: excite = Attend-and-Excite (default); syngen = SynGen\'s binding loss, which binds each subject\'s modifiers (colours, sizes) to it against attribute leakage (constant step --ae-scale-factor, no refinement)', parseGuidanceLoss)
    .option('--ae-modifiers <noun=mod+mod,...>', 'SynGen: the subjects\' modifiers, when they are not the words right before the noun (e.g. car=red for "a car that is red")', parseModifiers)
    .option('--compare', 'with --excite: also run without guidance from the same seed; writes plain/ and compare.png');
}


/** Checks flag combinations that need no model. */
export function validateExciteFlags(o: ExciteCliOptions): void {
  const aeFlags: (keyof ExciteCliOptions)[] = ['aeMaxIterToAlter', 'aeThresholds', 'aeScaleFactor', 'aeMaxRefinement', 'aeRes', 'aeNoSmoothing', 'aeSigma', 'aeKernel', 'aeSd2', 'aeLoss', 'aeModifiers', 'compare'];
  const given = aeFlags.filter((k) => o[k] !== undefined && o[k] !== false);
  if (o.excite === undefined && given.length > 0) {
    const flag = (k: string): string => '--' + k.replace(/[A-Z0-9]+/g, (m) => '-' + m.toLowerCase()).replace(/-(\d)/g, '$1');
    throw new UsageError(`${given.map(flag).join(', ')} only apply to Attend-and-Excite: add --excite WORDS (e.g. --excite cat,frog or --excite auto)`);
  }
  if (o.excite !== undefined && o.excite.trim() === '') {
    throw new UsageError('--excite is empty: give prompt words to strengthen, e.g. --excite cat,frog, or --excite auto');
  }
}

/**
 * The flags as the job's excite options (undefined without --excite). Only here is `--excite cat,frog` split on
 * commas (a comma cannot be part of a prompt word on the command line); digit-only items are token positions.
 */
export function exciteOptionsFromFlags(o: ExciteCliOptions): ExciteOptions | undefined {
  if (o.excite === undefined) return undefined;
  const spec = o.excite.trim();
  const subjects: ExciteOptions['subjects'] = spec === 'auto'
    ? 'auto'
    : spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  return {
    subjects,
    ...(o.aeMaxIterToAlter !== undefined ? { maxIterToAlter: o.aeMaxIterToAlter } : {}),
    ...(o.aeThresholds ? { thresholds: Object.fromEntries(Object.entries(o.aeThresholds)) } : {}),
    ...(o.aeScaleFactor !== undefined ? { scaleFactor: o.aeScaleFactor } : {}),
    ...(o.aeMaxRefinement !== undefined ? { maxRefinement: o.aeMaxRefinement } : {}),
    ...(o.aeRes !== undefined ? { res: o.aeRes } : {}),
    ...(o.aeNoSmoothing ? { smoothing: false } : {}),
    ...(o.aeSigma !== undefined ? { sigma: o.aeSigma } : {}),
    ...(o.aeKernel !== undefined ? { kernel: o.aeKernel } : {}),
    ...(o.aeSd2 ? { sd2: true } : {}),
    ...(o.aeLoss !== undefined ? { method: o.aeLoss } : {}),
    ...(o.aeModifiers ? { modifiers: o.aeModifiers } : {}),
    ...(o.compare ? { compare: true } : {}),
  };
}
