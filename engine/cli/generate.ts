// `heed generate`: text-to-image with an SD ONNX folder, with per-word attention maps and traces.
import { join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import type { GenerateResult } from '../diffusion/pipeline.js';
import type { MapsOptions } from '../protocol/index.js';
import { COLORMAP_NAMES, type ColormapName } from '../render/colormap.js';
import { existingDir, existingFile, interruptSignal, ms, outputDir, say, warn, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { finiteNumber, oneOf, parseSeed, parseSize, pixelPair, positiveInt, type ImageSize } from './options.js';
import type { WrittenGenerate } from '../jobs/outputs.js';
import { stepProgress, type StepProgress } from './progress.js';
import { addExciteOptions, exciteOptionsFromFlags, validateExciteFlags, type ExciteCliOptions } from './excite.js';
import { runGenerateJob } from '../jobs/generate.js';
import { defaultMaxJobMemoryMb } from '../jobs/size-check.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import { defaultDevice, deviceOption, resolveCliDevice } from './device.js';

export interface GenerateCliOptions extends OutputMode, ExciteCliOptions {
  model: string;
  prompt: string;
  /** Absent: "" for SD 1.x/2.x, zero embeddings for SDXL (diffusers' negative_prompt=None). */
  negative?: string;
  steps: number;
  /** Absent: the pipeline's default (7.5 for SD 1.x/2.x, 5 for SDXL, as diffusers). */
  guidance?: number;
  guidanceRescale?: number;
  /** SDXL micro-conditioning, (height, width) / (top, left) as diffusers takes them. */
  originalSize?: [number, number];
  targetSize?: [number, number];
  cropCoords?: [number, number];
  scheduler?: string;
  maxJobMemoryMb?: number;
  seed?: number;
  latents?: string;
  size?: ImageSize;
  out: string;
  maps?: boolean;
  mapsPerStep?: boolean;
  mapsPerLayer?: boolean;
  mapsRes?: number[];
  mapsDaamGrid?: number;
  trace?: string;
  colormap: ColormapName;
  opacity: number;
  threads: number;
  /** --device (default HEED_DEVICE or cpu). */
  device?: string;
  /** Print the closing summary (file paths); callers composing several runs (demo) turn it off. Default true. */
  summary?: boolean;
  /** Global --verbose: also let onnxruntime print its own error log. */
  verbose?: boolean;
}

/** `--maps-res 16,32` (repeatable). */
function mapResolutions(value: string, previous: number[] | undefined): number[] {
  const one = positiveInt('--maps-res', 1024);
  return [...(previous ?? []), ...value.split(',').map((v) => one(v.trim()))];
}

export function registerGenerate(program: Command): Command {
  const cmd = program
    .command('generate')
    .description('generate an image from a prompt with a Stable Diffusion ONNX folder; --maps adds per-word attention maps')
    .requiredOption('--model <dir>', 'Stable Diffusion ONNX folder (diffusers/Optimum layout: model_index.json, unet/, text_encoder/, vae_decoder/, tokenizer/, scheduler/)')
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--negative <text>', 'negative prompt (the unconditional branch of classifier-free guidance; default "", or zero embeddings on SDXL folders with force_zeros_for_empty_prompt)')
    .option('--steps <n>', 'inference steps', positiveInt('--steps', 1000), 50)
    .option('--guidance <g>', 'classifier-free guidance scale, ≤ 1 disables CFG (default 7.5; 5 on SDXL folders)', finiteNumber('--guidance', 0, 100))
    .option('--guidance-rescale <phi>', 'SDXL only: diffusers\' guidance_rescale, 0..1 (default 0 = off)', finiteNumber('--guidance-rescale', 0, 1))
    .option('--original-size <WxH>', 'SDXL only: original_size conditioning (default: the image size)', pixelPair('--original-size', 'WxH'))
    .option('--target-size <WxH>', 'SDXL only: target_size conditioning (default: the image size)', pixelPair('--target-size', 'WxH'))
    .option('--crop-coords <TOP,LEFT>', 'SDXL only: crops_coords_top_left conditioning (default 0,0)', pixelPair('--crop-coords', 'TOP,LEFT'))
    .option('--scheduler <name>', "sampler (default: the folder's scheduler); e.g. pndm, ddim, euler, euler-ancestral, dpm++2m, dpm++2m-karras, lms, lcm")
    .option('--max-job-memory-mb <n>', 'refuse sizes whose estimated working set exceeds this (default: half the RAM)', positiveInt('--max-job-memory-mb', 2 ** 30))
    .option('--seed <n>', 'seed of the torch-compatible generator (same latents as torch.Generator("cpu").manual_seed(n))', parseSeed)
    .option('--latents <file.npy>', 'initial latents [1, 4, H/8, W/8] float32 .npy (overrides the seed for the latents)')
    .option('--size <WxH>', 'image size, multiples of 8 (default: the model\'s, usually 512x512)', parseSize)
    .requiredOption('--out <dir>', 'output folder: image.png, maps/, maps.png, report.json')
    .option('--maps', 'collect cross-attention and write per-word heat maps (maps/<index>-<word>.png/.npy, maps.png)')
    .option('--maps-per-step', 'also write each word\'s map at every denoising step: maps/steps/<h>x<w>/<index>-<word>.npy [steps, h, w] (implies --maps)')
    .option('--maps-per-layer', 'also write each word\'s map per cross-attention layer: maps/layers/<h>x<w>/<index>-<word>.npy [layers, h, w] (implies --maps)')
    .option('--maps-res <list>', 'attention resolutions (grid heights, e.g. 16,32) for --maps-per-step / --maps-per-layer (default: per step the Attend-and-Excite one, 16 at 512²; per layer all)', mapResolutions)
    .option('--maps-daam-grid <n>', 'DAAM\'s own fixed grid for the word maps, n×n (DAAM: 64 for SD 1.x at 512² and SDXL at 1024², else 96); square images only (implies --maps; default: the latent grid)', positiveInt('--maps-daam-grid', 1024))
    .option('--trace <dir>', 'write the run\'s tensors as .npy + manifest.json (latents, embeddings, noise predictions, attention, DAAM maps)')
    .option('--colormap <name>', `heat-map colormap: ${COLORMAP_NAMES.join(', ')}`, oneOf('--colormap', COLORMAP_NAMES), 'turbo')
    .option('--opacity <a>', 'heat-map opacity over the image, 0..1', finiteNumber('--opacity', 0, 1), 0.5)
    .option('--threads <n>', 'threads per ONNX Runtime operator', positiveInt('--threads', 256), DEFAULT_THREADS)
    .addOption(deviceOption())
    .option('--quiet', 'print nothing but errors')
    .option('--json', 'print report.json (plus file paths) on stdout; no progress bar');
  return addExciteOptions(cmd).action(async (_opts: GenerateCliOptions, c: Command) => {
    await runGenerate(c.optsWithGlobals<GenerateCliOptions>());
  });
}

/** Cheap checks that need no model: run before loading anything so mistakes fail in milliseconds. */
export function validateGenerate(o: GenerateCliOptions): { model: string; latents?: string; out: string; trace?: string } {
  if (o.prompt.trim() === '') throw new UsageError('--prompt is empty: give the text to generate from, e.g. --prompt "a cat and a frog"');
  if (o.mapsDaamGrid !== undefined && o.size && o.size.width !== o.size.height) {
    throw new UsageError(`--maps-daam-grid reproduces DAAM's own code, which only handles square images; --size is ${o.size.width}x${o.size.height}: ` +
      'use a square --size or drop --maps-daam-grid (the default maps work at any size)');
  }
  const model = existingDir(o.model, '--model', 'point it at a Stable Diffusion ONNX folder (run `heed demo` to build a tiny one)');
  const latents = o.latents !== undefined ? existingFile(o.latents, '--latents', 'give a .npy file of shape [1, 4, H/8, W/8]') : undefined;
  const out = outputDir(o.out, '--out');
  const trace = o.trace !== undefined ? outputDir(o.trace, '--trace') : undefined;
  return { model, ...(latents ? { latents } : {}), out, ...(trace ? { trace } : {}) };
}

/**
 * SD UNets halve the latents once per down block and double them back, concatenating skip connections: a latent
 * side that does not divide by 2^(blocks−1) (8 for SD 1.x/2.x, i.e. image sides not multiples of 64) breaks the
 * skip Concat inside ONNX Runtime. diffusers' torch UNet passes explicit upsample sizes, but ONNX exports bake in
 * ×2 Resizes, so the run fails deep inside the graph; say what it means instead.
 */
function explainSizeFailure(e: unknown, size: ImageSize): unknown {
  const msg = e instanceof Error ? e.message : String(e);
  const odd = size.width % 64 !== 0 || size.height % 64 !== 0;
  if (odd && /Concat/.test(msg) && /dimension/i.test(msg)) {
    const near = (v: number): string => (v % 64 === 0 ? `${v}` : `${Math.max(64, v - (v % 64))} or ${v - (v % 64) + 64}`);
    return new UsageError(`image size ${size.width}x${size.height} does not fit this UNet: its down- and up-sampling path needs ` +
      `sides that are multiples of 64 (latents divisible by 8); use width ${near(size.width)} and height ${near(size.height)}`);
  }
  return e;
}

/** --maps, --maps-per-step, --maps-per-layer, --maps-res and --maps-daam-grid as the protocol's `maps` option (the job's spec). */
export function mapsFromFlags(o: Pick<GenerateCliOptions, 'maps' | 'mapsPerStep' | 'mapsPerLayer' | 'mapsRes' | 'mapsDaamGrid'>): { maps?: MapsOptions } {
  const grid = o.mapsDaamGrid !== undefined ? { daamGrid: o.mapsDaamGrid } : {};
  if (!o.maps && !o.mapsPerStep && !o.mapsPerLayer && o.mapsDaamGrid === undefined) return {};
  if (!o.mapsPerStep && !o.mapsPerLayer && o.mapsDaamGrid === undefined) return { maps: true };
  return { maps: { perStep: !!o.mapsPerStep, perLayer: !!o.mapsPerLayer, ...(o.mapsRes ? { resolutions: o.mapsRes } : {}), ...grid } };
}

export interface GenerateRun {
  result: GenerateResult;
  written: WrittenGenerate;
  /** With --compare: the unguided run from the same seed. */
  plain?: { result: GenerateResult; written: WrittenGenerate };
}

/** Progress bar labels, padded so the plain and A&E bars line up. */
const BAR_LABELS = { plain: 'plain     ', guided: 'A&E       ' } as const;

export async function runGenerate(o: GenerateCliOptions): Promise<GenerateRun> {
  const paths = validateGenerate(o);
  validateExciteFlags(o);
  const exciteOptions = exciteOptionsFromFlags(o);
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const device = await resolveCliDevice(o.device ?? defaultDevice(), mode);
  say(mode, `loading ${paths.model}`);
  // Loaded on demand: `heed tokenize` and `--help` should not pay for onnxruntime's start-up.
  const { StableDiffusionPipeline } = await import('../diffusion/pipeline.js');
  const pipe = await StableDiffusionPipeline.load(paths.model, {
    threads: o.threads,
    // ORT logs failing kernels to stderr itself; the CLI reports the error once, in its own words.
    session: { logSeverity: o.verbose ? 2 : 4, device },
  });
  const interrupt = interruptSignal();
  const bars: StepProgress[] = [];
  let bar: StepProgress | undefined;
  try {
    const job = await runGenerateJob(pipe, {
      prompt: o.prompt, steps: o.steps,
      ...(o.negative !== undefined ? { negativePrompt: o.negative } : {}),
      ...(o.guidance !== undefined ? { guidance: o.guidance } : {}),
      ...(o.guidanceRescale !== undefined ? { guidanceRescale: o.guidanceRescale } : {}),
      ...(o.originalSize || o.targetSize || o.cropCoords ? {
        sdxl: {
          ...(o.originalSize ? { originalSize: o.originalSize } : {}),
          ...(o.targetSize ? { targetSize: o.targetSize } : {}),
          ...(o.cropCoords ? { cropsCoordsTopLeft: o.cropCoords } : {}),
        },
      } : {}),
      ...(o.scheduler !== undefined ? { scheduler: o.scheduler } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(paths.latents !== undefined ? { latents: paths.latents } : {}),
      ...(o.size ? { width: o.size.width, height: o.size.height } : {}),
      ...mapsFromFlags(o),
      ...(exciteOptions ? { excite: exciteOptions } : {}),
      outDir: paths.out,
      ...(paths.trace !== undefined ? { traceDir: paths.trace } : {}),
      model: paths.model, colormap: o.colormap, opacity: o.opacity,
      maxJobMemoryMb: o.maxJobMemoryMb ?? await defaultMaxJobMemoryMb(),
    }, {
      signal: interrupt.signal,
      onPlan: (plan) => {
        for (const s of plan.subjects) if (s.note) say(mode, `note: ${s.note}`);
        say(mode, plan.options.method === 'syngen'
          ? `SynGen binding ${plan.bindings.map((b) => `${b.modifiers.map((m) => `'${m.word}'`).join('+') || '(no modifier)'} → '${b.noun}'`).join(', ')} at ${plan.options.resolution}x${plan.options.resolution}`
          : `Attend-and-Excite on ${plan.subjects.map((s) => `'${s.word}' (token ${s.tokenIndex})`).join(', ')} at ${plan.options.resolution}x${plan.options.resolution}`);
      },
      onRunStart: (run) => {
        bar = stepProgress({ enabled: !o.quiet && !o.json, label: run ? BAR_LABELS[run] : 'denoising' });
        bars.push(bar);
      },
      onStep: (_run, s) => bar?.update(s.step + 1, s.total, `t=${s.timestep} ${ms(s.stepMs)}/step`),
      onRunEnd: () => bars.forEach((b) => b.stop()),
      mapError: explainSizeFailure,
    });
    const { written, excite } = job;
    if (o.summary !== false) {
      reportGenerate(mode, paths.out, written);
      if (excite) {
        say(mode, `excite: ${relative(process.cwd(), excite.json) || '.'}, ${relative(process.cwd(), join(paths.out, 'excite_loss.png'))}`);
        if (excite.comparison) {
          say(mode, `compare: ${relative(process.cwd(), join(paths.out, 'compare.png'))} — A&E score at the last step, plain → guided:`);
          for (const c of excite.comparison) say(mode, `  ${c.word}: ${fmtScore(c.plain.lastStepScore)} → ${fmtScore(c.excited.lastStepScore)}`);
        }
      }
    } else warn(mode, (written.report.warnings as string[] | undefined) ?? []);
    return { result: job.result, written, ...(job.plain ? { plain: job.plain } : {}) };
  } finally {
    bars.forEach((b) => b.stop());
    interrupt.dispose();
    await pipe.dispose();
  }
}

function fmtScore(v: number | null): string {
  return v === null ? 'n/a' : v.toFixed(3);
}

export function reportGenerate(mode: OutputMode, outDir: string, w: WrittenGenerate): void {
  if (mode.json) {
    process.stdout.write(JSON.stringify({ outDir, image: w.image, mapsGrid: w.mapsGrid ?? null, traceDir: w.traceDir ?? null, report: w.report }, null, 2) + '\n');
    return;
  }
  const rel = (p: string): string => relative(process.cwd(), p) || '.';
  warn(mode, (w.report.warnings as string[] | undefined) ?? []);
  say(mode, `image:  ${rel(w.image)}`);
  if (w.mapsGrid) say(mode, `maps:   ${rel(w.mapsGrid)} (${w.maps.length} words: ${w.maps.map((m) => m.word).join(', ')})`);
  if (w.traceDir) say(mode, `trace:  ${rel(w.traceDir)}`);
  say(mode, `report: ${rel(resolve(outDir, 'report.json'))}`);
}
