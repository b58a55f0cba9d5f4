// Initial latents: from a seed through the torch-compatible generator (so `--seed S` gives the latents a diffusers
// user gets from `torch.Generator('cpu').manual_seed(S)`), or from a .npy file, validated before any model runs.
import { readNpy, toFloat32, NpyError } from '../io/npy.js';
import { TorchGenerator } from './random.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** The initial latents file (or seed) the caller gave does not fit this generation. */
export class LatentsError extends HeedError {
  constructor(message: string, field: string | undefined = 'latents', kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'LatentsError';
  }
}

/** An image width/height the UNet and VAE cannot take; the field says which side. */
export class ImageSizeError extends HeedError {
  constructor(message: string, field?: string, kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'ImageSizeError';
  }
}

/** The VAE of SD 1.x/2.x downsamples by 8. */
export const VAE_SCALE_FACTOR = 8;

export type LatentShape = [number, number, number, number];

/** Latent shape [1, C, H/8, W/8] for an image size; both sides must be positive multiples of 8. */
export function latentShape(width: number, height: number, channels = 4): LatentShape {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new ImageSizeError(`image ${name} must be a positive integer (got ${v})`, name);
    if (v % VAE_SCALE_FACTOR !== 0) {
      const lo = Math.max(VAE_SCALE_FACTOR, v - (v % VAE_SCALE_FACTOR));
      throw new ImageSizeError(`image ${name} ${v} is not a multiple of ${VAE_SCALE_FACTOR} (the VAE downsamples by 8): ` +
        `use ${lo} or ${lo + VAE_SCALE_FACTOR}`, name);
    }
  }
  return [1, channels, height / VAE_SCALE_FACTOR, width / VAE_SCALE_FACTOR];
}

/**
 * `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))`, as diffusers' prepare_latents draws it
 * (before scaling by the scheduler's init_noise_sigma). Also returns the generator so that samplers which draw
 * noise per step continue the same stream, as diffusers does with one generator.
 */
export function seededLatents(seed: number, shape: LatentShape): { latents: Float32Array; generator: TorchGenerator } {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new LatentsError(`seed must be a non-negative integer (got ${seed})`, 'seed');
  }
  const generator = new TorchGenerator(seed);
  return { latents: generator.randn(shape), generator };
}

/** Checks user-supplied latents: exact shape and finite values. */
export function validateLatents(data: Float32Array, shape: readonly number[], expected: LatentShape, source: string): Float32Array {
  const same = shape.length === expected.length && shape.every((d, i) => d === expected[i]);
  if (!same) {
    const hint = shape.length === 4 && shape[0] === 1 && shape[1] === expected[1]
      ? ` They fit an image of ${shape[3] * VAE_SCALE_FACTOR}x${shape[2] * VAE_SCALE_FACTOR}: pass that size (--size ${shape[3] * VAE_SCALE_FACTOR}x${shape[2] * VAE_SCALE_FACTOR}).`
      : '';
    throw new LatentsError(`${source} has shape [${shape.join(', ')}] but this generation needs [${expected.join(', ')}] ` +
      `(1, latent channels, height/8, width/8).${hint}`);
  }
  let bad = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    throw new LatentsError(`${source} holds ${bad} non-finite value(s) (first at flat index ${first}: ${data[first]}); ` +
      'initial latents must be finite numbers.');
  }
  return data;
}

/** Checks a flat latent buffer against the expected shape (by length) and copies it. */
export function validateLatentData(data: ArrayLike<number>, expected: LatentShape, source: string): Float32Array {
  const n = expected.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new LatentsError(`${source} hold ${data.length} values but this generation needs [${expected.join(', ')}] = ${n} ` +
      '(1, latent channels, height/8, width/8).');
  }
  return validateLatents(Float32Array.from(data), expected, expected, source);
}

/** Reads initial latents from a .npy file (float32/float64/float16) and validates them. */
export function loadLatents(path: string, expected: LatentShape): Float32Array {
  let arr;
  try {
    arr = readNpy(path);
  } catch (e) {
    if (e instanceof NpyError) throw new LatentsError(`cannot use ${path} as latents: ${e.message}`);
    throw e;
  }
  if (!arr.dtype.startsWith('float')) {
    throw new LatentsError(`${path} holds ${arr.dtype} values; latents must be a float array (float32, float64 or float16).`);
  }
  return validateLatents(Float32Array.from(toFloat32(arr)), arr.shape, expected, path);
}
