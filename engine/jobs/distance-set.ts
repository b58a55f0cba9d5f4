// `heed explain --images DIR --method distance`: mean attention distance per block and head averaged over every
// image of a folder (explain/distance-set.ts), written as
//   distance_set.png   scatter of each head's mean distance against its block (probing-vits' plot), ± 1 std
//   distance_set.json  images (count and names), unit, patch, mean [block][head], std [block][head]
//   distance_set.npy   [2, blocks, heads]: mean, std
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { writeNpy } from '../io/npy.js';
import { renderLineChart } from '../render/index.js';
import { HeedError } from '../errors.js';
import type { ExplainOptions } from '../explain/api.js';
import { DistanceSetAccumulator, type DistanceSetSummary } from '../explain/distance-set.js';
import type { PatchSize } from '../explain/distance.js';
import { prepareJobImage, type ExplainModels } from './explain.js';

/** File types taken from the folder (what sharp decodes as a still image). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif'];

/** The images of a folder (not its subfolders), sorted by name. */
export function listImages(dir: string, field = 'images'): string[] {
  const names = readdirSync(dir).filter((n) => IMAGE_EXTENSIONS.includes(extname(n).toLowerCase()) && statSync(join(dir, n)).isFile()).sort();
  if (names.length === 0) throw new HeedError('invalid_input', `${dir} holds no image (looked for ${IMAGE_EXTENSIONS.join(' ')} files, not in subfolders): put the images in that folder`, { field });
  return names.map((n) => join(dir, n));
}

export interface DistanceSetSpec {
  dir: string;
  options: ExplainOptions;
  outDir: string;
}

export interface DistanceSetOutput {
  summary: DistanceSetSummary;
  patch: PatchSize;
  images: string[];
  outDir: string;
  files: string[];
}

/** Only `distance` is averaged over a set; any other method asked for is refused by name. */
export function checkSetMethods(options: ExplainOptions): void {
  const others = (options.methods ?? []).filter((m) => m !== 'distance');
  if (!options.methods || others.length > 0) {
    throw new HeedError('invalid_input', `--images averages mean attention distance over a folder: give --method distance${others.length ? ` (not ${others.join(', ')}; explain one image with --image)` : ''}`, { field: 'methods' });
  }
}

export async function runDistanceSetJob(models: ExplainModels, spec: DistanceSetSpec, hooks: { signal?: AbortSignal; onImage?(done: number, total: number, file: string): void } = {}): Promise<DistanceSetOutput> {
  const { explainWithModel } = await import('../explain/index.js');
  checkSetMethods(spec.options);
  const images = listImages(spec.dir);
  const acc = new DistanceSetAccumulator();
  let patch: PatchSize | undefined;
  for (const [i, file] of images.entries()) {
    hooks.signal?.throwIfAborted();
    const prepared = await prepareJobImage(models, file, 'images').catch((e: unknown) => {
      throw e instanceof HeedError ? new HeedError(e.kind, `${file}: ${e.message}`, { field: 'images', cause: e }) : e;
    });
    const r = await explainWithModel(models.model, models.gradients, prepared, { ...spec.options, methods: ['distance'] });
    if (!r.distance) throw new HeedError('internal', 'distance ran but gave no values');
    patch = r.distance.patch;
    try {
      acc.add(r.distance.values);
    } catch (e) {
      throw new HeedError('invalid_input', `${file}: ${(e as Error).message} (the model's token count changed with the image size; give images the processor resizes to one size)`, { field: 'images' });
    }
    hooks.onImage?.(i + 1, images.length, file);
  }
  const summary = acc.summary();
  const outDir = resolve(spec.outDir);
  mkdirSync(outDir, { recursive: true });
  const blocks = summary.mean.length;
  const heads = summary.mean[0]!.length;
  // Heads of one block spread a little along x so that their error bars stay apart; the ticks stay at the blocks.
  const spread = heads > 1 ? 0.5 / heads : 0;
  const series = Array.from({ length: heads }, (_, h) => ({
    name: `head ${h}`, line: false, markers: true,
    points: summary.mean.map((row, b) => [b + (h - (heads - 1) / 2) * spread, row[h]!] as const),
    yErrors: summary.std.map((row) => row[h]!),
  }));
  const files: string[] = [];
  writeFileSync(join(outDir, 'distance_set.png'), await renderLineChart({
    series, title: `Mean attention distance over ${summary.images} image${summary.images === 1 ? '' : 's'} (± 1 std)`,
    xLabel: 'block (depth)', yLabel: 'mean distance (pixels)', integerX: true, xDomain: [-0.5, blocks - 0.5], width: 720, height: 440,
  }));
  files.push('distance_set.png');
  writeFileSync(join(outDir, 'distance_set.json'), JSON.stringify({
    images: summary.images, files: images.map((f) => f), unit: 'pixels', patch, blocks, heads, mean: summary.mean, std: summary.std, std_kind: 'population (divides by the number of images)',
  }, null, 1));
  files.push('distance_set.json');
  const stack = Float32Array.from([...summary.mean.flat(), ...summary.std.flat()]);
  writeNpy(join(outDir, 'distance_set.npy'), stack, [2, blocks, heads]);
  files.push('distance_set.npy');
  return { summary, patch: patch!, images, outDir, files };
}
