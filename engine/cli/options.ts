// Parsers for flag values. Each throws commander's InvalidArgumentError with a message that names the flag, the value
// and what would be accepted — commander prefixes "option '--x <v>' argument 'v' is invalid." and we print one line.
import { InvalidArgumentError } from 'commander';

export function positiveInt(flag: string, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${flag} must be an integer from 1 to ${max}, got '${v}'`);
    return n;
  };
}

export function nonNegativeInt(flag: string, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`${flag} must be an integer from 0 to ${max}, got '${v}'`);
    return n;
  };
}

/** Any integer in [min, max] (e.g. a layer index where negative counts from the end). */
export function integer(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be an integer from ${min} to ${max}, got '${v}'`);
    return n;
  };
}

export function finiteNumber(flag: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      const range = min > -Infinity && max < Infinity ? ` between ${min} and ${max}` : min > -Infinity ? ` ≥ ${min}` : '';
      throw new InvalidArgumentError(`${flag} must be a number${range}, got '${v}'`);
    }
    return n;
  };
}

/** Seeds are the torch generator's: non-negative integers below 2^53 (torch takes 64-bit; JS numbers end at 2^53). */
export const parseSeed = nonNegativeInt('--seed', Number.MAX_SAFE_INTEGER);

export interface ImageSize {
  width: number;
  height: number;
}

/** `WxH` (also `W×H`, `W*H`) or a single `N` for a square; both sides positive multiples of 8. */
/**
 * `--original-size` / `--target-size` (WxH, like --size; any non-negative integers, SDXL conditions on them as numbers)
 * and `--crop-coords` (TOP,LEFT): SDXL's micro-conditioning, returned in diffusers' (height, width) / (top, left) order.
 */
export function pixelPair(flag: string, form: 'WxH' | 'TOP,LEFT'): (v: string) => [number, number] {
  return (v: string) => {
    const m = form === 'WxH' ? /^\s*(\d+)\s*[x×*X]\s*(\d+)\s*$/.exec(v) : /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(v);
    if (!m) throw new InvalidArgumentError(`${flag} must look like ${form === 'WxH' ? '1024x1024 (width x height)' : '0,0 (top,left)'}, got '${v}'`);
    const a = Number(m[1]);
    const b = Number(m[2]);
    if (a > 65536 || b > 65536) throw new InvalidArgumentError(`${flag} values must be at most 65536, got '${v}'`);
    return form === 'WxH' ? [b, a] : [a, b];
  };
}

export function parseSize(v: string): ImageSize {
  const m = /^\s*(\d+)\s*(?:[x×*X]\s*(\d+))?\s*$/.exec(v);
  if (!m) throw new InvalidArgumentError(`--size must look like 512x512 (width x height) or 512, got '${v}'`);
  const width = Number(m[1]);
  const height = Number(m[2] ?? m[1]);
  for (const [name, s] of [['width', width], ['height', height]] as const) {
    if (s < 8) throw new InvalidArgumentError(`--size ${name} ${s} is too small: use at least 8 (64 or more is sensible)`);
    if (s % 8 !== 0) {
      const lo = s - (s % 8);
      throw new InvalidArgumentError(`--size ${name} ${s} is not a multiple of 8 (the VAE works on 8×8 blocks): use ${lo} or ${lo + 8}`);
    }
    if (s > 8192) throw new InvalidArgumentError(`--size ${name} ${s} is larger than 8192`);
  }
  return { width, height };
}

/** One of a fixed list, case-insensitive. */
export function oneOf<T extends string>(flag: string, choices: readonly T[]) {
  return (v: string): T => {
    const found = choices.find((c) => c.toLowerCase() === v.toLowerCase());
    if (!found) throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, got '${v}'`);
    return found;
  };
}

/** Repeatable flag: collects values into an array. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Repeatable numeric flag (e.g. `--discard 0 --discard 0.9`, or `--discard 0,0.9`). */
export function collectNumbers(flag: string, min: number, max: number) {
  const one = finiteNumber(flag, min, max);
  return (value: string, previous: number[] | undefined): number[] => [...(previous ?? []), ...value.split(',').map((s) => one(s.trim()))];
}
