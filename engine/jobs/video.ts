// `heed explain --video`: every frame of a video explained as a single image is (same options, same class rule:
// --class, else each frame's top class), then per method an animation with the frame the model saw beside its map
// and the stack of raw maps:
//   <stem>.webp, <stem>.gif   input | map overlay (heads: input | one overlay per head), one frame per video frame
//   <stem>.npy                [frames, h, w] (heads: [frames, heads, h, w]) raw maps on the patch grid
//   video.json                frames, delays, decoder, per frame the explained class and the timings; the files
// Stems: rollout, grad_rollout, chefer, transformer_attribution, … and heads_layer<k>.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { writeNpy } from '../io/npy.js';
import { overlayHeatmap, type RgbImage } from '../render/index.js';
import { HeedError } from '../errors.js';
import type { ExplainMethod, ExplainOptions, ExplainResult } from '../explain/api.js';
import { isMapMethod, methodMap } from '../explain/method-map.js';
import type { GridMap } from '../explain/tensor.js';
import { readVideoFrames, type VideoFrames } from '../image/frames.js';
import { prepareJobImage, type ExplainModels } from './explain.js';

export interface VideoJobSpec {
  video: string;
  options: ExplainOptions;
  outDir: string;
  maxFrames?: number;
  fps?: number;
  /** Also write the animation as GIF (default true). */
  gif?: boolean;
}

export interface VideoJobHooks {
  signal?: AbortSignal;
  /** Frames are decoded; `total` will be explained. */
  onFrames?(frames: VideoFrames): void;
  /** After each frame (1-based). */
  onFrame?(done: number, total: number): void;
}

export interface VideoFrameRecord {
  index: number;
  delayMs: number;
  classIndex?: number;
  label?: string;
  timingsMs: Record<string, number>;
}

export interface VideoMethodOutput {
  method: ExplainMethod;
  stem: string;
  /** Maps per frame (heads: one per head). */
  panels: number;
  /** [frames][panels] raw maps. */
  maps: GridMap[][];
}

export interface VideoJobOutput {
  frames: VideoFrameRecord[];
  methods: VideoMethodOutput[];
  decoder: VideoFrames['decoder'];
  outDir: string;
  files: string[];
}

/** The methods a video explains: those asked for (default rollout, which needs no class); distance gives no map. */
export function videoMethods(options: ExplainOptions): ExplainMethod[] {
  const methods = [...(options.methods ?? ['rollout'])];
  for (const m of methods) {
    if (m !== 'heads' && !isMapMethod(m)) {
      throw new HeedError('invalid_input', `--video draws maps per frame and '${m}' gives none (mean attention distance is one number per head; use --images DIR for distance over many images)`, { field: 'methods' });
    }
  }
  if (options.topK !== undefined && options.topK > 1) throw new HeedError('invalid_input', 'a video explains one class per frame: give --class N (default: each frame\'s top class), not --top', { field: 'top' });
  return methods;
}

function panelsOf(r: ExplainResult, method: ExplainMethod): { stem: string; maps: GridMap[] } {
  if (method === 'heads') {
    if (!r.heads) throw new HeedError('internal', 'heads ran but left no maps');
    return { stem: `heads_layer${r.heads.layer}`, maps: r.heads.maps };
  }
  const m = methodMap(r, method);
  if (!m) throw new HeedError('internal', `method '${method}' produced no map`);
  return { stem: method.replace(/-/g, '_'), maps: [m.map] };
}

const GAP = 4;

/** One animation frame: the input, then each map as an overlay, in a row with a white gap. */
function composeRow(input: RgbImage, maps: readonly GridMap[]): RgbImage {
  const tiles = [input, ...maps.map((g) => overlayHeatmap(input, { width: g.width, height: g.height, data: g.data }, { colormap: 'turbo', normalize: 'minmax', resample: 'bilinear', opacity: 0.5 }))];
  const width = tiles.length * input.width + (tiles.length - 1) * GAP;
  const out = new Uint8Array(width * input.height * 3).fill(255);
  tiles.forEach((t, i) => {
    const x0 = i * (input.width + GAP);
    for (let y = 0; y < input.height; y++) out.set(t.data.subarray(y * input.width * 3, (y + 1) * input.width * 3), (y * width + x0) * 3);
  });
  return { width, height: input.height, data: out };
}

async function writeAnimation(rows: readonly RgbImage[], delays: readonly number[], path: string, format: 'webp' | 'gif'): Promise<void> {
  const { width, height } = rows[0]!;
  const all = Buffer.alloc(width * height * 3 * rows.length);
  rows.forEach((r, i) => all.set(r.data, i * width * height * 3));
  const img = sharp(all, { raw: { width, height: height * rows.length, channels: 3, pageHeight: height } });
  const delay = delays.map((d) => Math.max(10, Math.round(d)));
  await (format === 'webp' ? img.webp({ loop: 0, delay, quality: 90 }) : img.gif({ loop: 0, delay })).toFile(path);
}

export async function runVideoJob(models: ExplainModels, spec: VideoJobSpec, hooks: VideoJobHooks = {}): Promise<VideoJobOutput> {
  const { explainWithModel, validateExplainOptions } = await import('../explain/index.js');
  const methods = videoMethods(spec.options);
  validateExplainOptions(spec.options);
  const video = await readVideoFrames(spec.video, { ...(spec.maxFrames !== undefined ? { maxFrames: spec.maxFrames } : {}), ...(spec.fps !== undefined ? { fps: spec.fps } : {}) });
  hooks.onFrames?.(video);
  const records: VideoFrameRecord[] = [];
  const perMethod = new Map<ExplainMethod, { stem: string; maps: GridMap[][]; rows: RgbImage[] }>();
  const explainFrame = async (i: number): Promise<void> => {
    const prepared = await prepareJobImage(models, await video.frame(i), 'video');
    const r = await explainWithModel(models.model, models.gradients, prepared, { ...spec.options, methods });
    const input: RgbImage = { width: prepared.width, height: prepared.height, data: prepared.rgb };
    const explained = r.lrp[0] ?? r.gradRollout[0] ?? r.chefer.find((c) => c.classIndex !== undefined);
    records.push({
      index: i, delayMs: video.delays[i]!, timingsMs: r.timings,
      ...(explained && 'classIndex' in explained && explained.classIndex !== undefined ? { classIndex: explained.classIndex, label: explained.label } : {}),
    });
    for (const m of methods) {
      const { stem, maps } = panelsOf(r, m);
      let entry = perMethod.get(m);
      if (!entry) perMethod.set(m, (entry = { stem, maps: [], rows: [] }));
      entry.maps.push(maps);
      entry.rows.push(composeRow(input, maps));
    }
    hooks.onFrame?.(i + 1, video.count);
  };
  try {
    for (let i = 0; i < video.count; i++) {
      hooks.signal?.throwIfAborted();
      await explainFrame(i);
    }
  } finally {
    video.dispose();
  }

  const outDir = resolve(spec.outDir);
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const outputs: VideoMethodOutput[] = [];
  for (const [method, { stem, maps, rows }] of perMethod) {
    await writeAnimation(rows, video.delays, join(outDir, `${stem}.webp`), 'webp');
    files.push(`${stem}.webp`);
    if (spec.gif ?? true) {
      await writeAnimation(rows, video.delays, join(outDir, `${stem}.gif`), 'gif');
      files.push(`${stem}.gif`);
    }
    const first = maps[0]![0]!;
    const panels = maps[0]!.length;
    const stack = new Float32Array(maps.length * panels * first.height * first.width);
    maps.flat().forEach((g, k) => stack.set(g.data, k * first.height * first.width));
    writeNpy(join(outDir, `${stem}.npy`), stack, panels === 1 && method !== 'heads' ? [maps.length, first.height, first.width] : [maps.length, panels, first.height, first.width]);
    files.push(`${stem}.npy`);
    outputs.push({ method, stem, panels, maps });
  }
  writeFileSync(join(outDir, 'video.json'), JSON.stringify({
    video: resolve(spec.video), decoder: video.decoder, frames: records.length, ...(video.totalFrames !== undefined ? { framesInFile: video.totalFrames } : {}),
    size: { width: video.width, height: video.height },
    methods: outputs.map((o) => ({ method: o.method, stem: o.stem, panels: o.panels, files: [`${o.stem}.webp`, ...(spec.gif ?? true ? [`${o.stem}.gif`] : []), `${o.stem}.npy`] })),
    perFrame: records,
  }, null, 1));
  files.push('video.json');
  return { frames: records, methods: outputs, decoder: video.decoder, outDir, files };
}
