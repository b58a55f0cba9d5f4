// `heed explain`: what a ViT / DeiT / DINO / CLIP model looks at in one image — raw attention heads, rollout,
// gradient rollout, Chefer relevance, mean attention distance (engine/explain does the work; this is the CLI face).
import { relative } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type {
  ExplainMethod, ExplainOptions, ExplainResult, HeadFusion, RolloutNormalization, GradRolloutVariant, StartLayer,
} from '../explain/index.js';
import type { AttnLrpAttention } from '../explain/lrp/attn-rules.js';
import { existingDir, existingFile, ms, outputDir, say, warn, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { HeedError } from '../errors.js';
import { collect, collectNumbers, finiteNumber, integer, oneOf, positiveInt, nonNegativeInt } from './options.js';
import type { WrittenFiles } from '../jobs/explain-outputs.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import { defaultDevice, deviceOption, resolveCliDevice } from './device.js';

const FUSIONS: readonly HeadFusion[] = ['mean', 'max', 'min'];
// The engine's choices (engine/explain/api.ts), repeated so that parsing flags loads no model code.
const NORMALIZATIONS: readonly RolloutNormalization[] = ['vit-explain', 'rows'];
const GRAD_VARIANTS: readonly GradRolloutVariant[] = ['vit-explain', 'corrected'];
const ATTN_LRP_ATTENTIONS: readonly AttnLrpAttention[] = ['cp', 'attnlrp'];
/** Layer indices beyond any real model; the engine checks the actual layer count once the model is loaded. */
const MAX_LAYER = 1023;
/** The explain engine's methods (engine/explain EXPLAIN_METHODS; listed here so parsing flags loads no model code). */
export const EXPLAIN_METHODS: readonly ExplainMethod[] = [
  'heads', 'rollout', 'grad-rollout', 'chefer', 'distance', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam',
  'attn-lrp',
];

export interface ExplainCliOptions extends OutputMode {
  model: string;
  image?: string;
  video?: string;
  fps?: number;
  maxFrames?: number;
  images?: string;
  compare?: boolean;
  methods?: string[];
  compareScale?: 'normalized' | 'shared';
  compareRepeat?: number;
  text?: string[];
  method?: string[];
  class?: number;
  top?: number;
  headFusion?: string[];
  discard?: number[];
  cheferStart?: StartLayer;
  rolloutNormalization?: RolloutNormalization;
  gradRollout?: GradRolloutVariant;
  headsLayer?: number;
  attnLrpAttention?: AttnLrpAttention;
  out: string;
  trace?: string;
  threads: number;
  /** --device (default HEED_DEVICE or cpu). */
  device?: string;
}

/** `--method a,b --method c` → validated list. */
export function parseMethods(values: readonly string[] | undefined, flag = '--method'): ExplainMethod[] | undefined {
  if (!values || values.length === 0) return undefined;
  const pick = oneOf(flag, EXPLAIN_METHODS);
  return [...new Set(values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean).map(pick))];
}

export function parseFusions(values: readonly string[] | undefined): HeadFusion[] | undefined {
  if (!values || values.length === 0) return undefined;
  const pick = oneOf('--head-fusion', FUSIONS);
  return [...new Set(values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean).map(pick))];
}

/** `--chefer-start`: 'last', 'all' or a block index from 0 (the engine's StartLayer has no negative indices). */
export function parseCheferStart(v: string): StartLayer {
  const t = v.trim().toLowerCase();
  if (t === 'last' || t === 'all') return t;
  if (/^\d+$/.test(t) && Number(t) <= MAX_LAYER) return Number(t);
  throw new InvalidArgumentError(`--chefer-start must be last, all or a layer index from 0 to ${MAX_LAYER} (0 = the first block), got '${v}'`);
}

export function registerExplain(program: Command): Command {
  return program
    .command('explain')
    .description('explain a ViT/DeiT/DINO classifier or a CLIP model on one image: attention heads, rollout, gradient rollout, Chefer relevance, the LRP family, attention distance; --compare the methods side by side, --video every frame, --images DIR distance over a folder')
    .requiredOption('--model <dir>', 'transformers.js/Optimum ONNX folder (config.json, preprocessor_config.json, onnx/model.onnx or model.onnx)')
    .option('--image <file>', 'the image (PNG, JPEG, WebP…)')
    .option('--video <file>', 'explain every frame: animated GIF / WebP (decoded by sharp) or, with ffmpeg on PATH, any video ffmpeg reads; writes <method>.webp / .gif (input | map per frame) and <method>.npy [frames, h, w]')
    .option('--fps <n>', '--video through ffmpeg: frames per second to sample (default: every frame)', finiteNumber('--fps', 0.001, 1000))
    .option('--max-frames <n>', '--video: explain at most the first N frames', positiveInt('--max-frames', 100000))
    .option('--images <dir>', 'with --method distance: mean attention distance per block and head averaged over every image in the folder (distance_set.png, distance_set.json)')
    .option('--compare', 'run every map method that applies to the model (or those of --methods) on one image and class, timed one by one; compare.png side by side on one colour scale, compare.json')
    .option('--methods <list>', '--compare: the methods to compare, comma-separated (default: every map method that applies)', collect)
    .option('--compare-repeat <n>', '--compare: timed runs per method; the time shown is their median (default 1)', positiveInt('--compare-repeat', 100))
    .option('--compare-scale <scale>', "--compare: 'normalized' (each map min–max scaled to [0, 1]; default) or 'shared' (raw values on one range)", oneOf('--compare-scale', ['normalized', 'shared'] as const))
    .option('--text <text>', 'CLIP: a text to compare the image with (repeat for several)', collect)
    .option('--method <name>', `method(s), repeatable or comma-separated: ${EXPLAIN_METHODS.join(', ')} (default: all that apply except the LRP family transformer-attribution, partial-lrp, raw-attention, gradcam, attn-lrp, which run when named)`, collect)
    .option('--class <n>', 'ViT: class index to explain with grad-rollout / Chefer (default: the top class)', nonNegativeInt('--class'))
    .option('--top <k>', 'ViT: explain the top K classes', positiveInt('--top', 1000))
    .option('--head-fusion <f>', 'rollout head fusion: mean, max or min (repeatable; default max)', collect)
    .option('--discard <r>', 'rollout discard ratio in [0, 1) (repeatable or comma-separated; default 0.9)', collectNumbers('--discard', 0, 0.999999))
    .option('--rollout-normalization <n>', "rollout and gradient rollout normalisation: 'vit-explain' (the repo's column-wise division by row sums; default) or 'rows' (row-stochastic)", oneOf('--rollout-normalization', NORMALIZATIONS))
    .option('--grad-rollout <variant>', "gradient rollout: 'vit-explain' (the repo's hook: gradient w.r.t. the softmax input, layers paired in reverse; default) or 'corrected' (∂y/∂A of the same layer)", oneOf('--grad-rollout', GRAD_VARIANTS))
    .option('--chefer-start <layer>', "Chefer relevance: first block accumulated — 'last', 'all' or a block index from 0 (default: all for ViT, as the ViT notebook; last for CLIP, as the CLIP notebook; CLIP applies it to the image and text encoders; also transformer-attribution's start_layer, default 0)", parseCheferStart)
    .option('--heads-layer <n>', 'layer of the per-head CLS attention maps (heads method); negative counts from the end (default -1, the last)', integer('--heads-layer', -MAX_LAYER - 1, MAX_LAYER))
    .option('--attn-lrp-attention <rule>', "attn-lrp: how relevance crosses the attention — 'cp' (CP-LRP: none through the softmax, LXT's choice for ViTs; default) or 'attnlrp' (AttnLRP's softmax rule and uniform split at Q·Kᵀ and A·V)", oneOf('--attn-lrp-attention', ATTN_LRP_ATTENTIONS))
    .requiredOption('--out <dir>', 'output folder: PNG overlays, explain.json')
    .option('--trace <dir>', 'write raw arrays as .npy (attentions per layer, rollout, gradient rollout, Chefer, distance)')
    .option('--threads <n>', 'threads per ONNX Runtime operator', positiveInt('--threads', 256), DEFAULT_THREADS)
    .addOption(deviceOption())
    .option('--quiet', 'print nothing but errors')
    .option('--json', 'print a JSON summary on stdout: files, top classes or similarities, skipped methods, timings')
    .action(async (opts: ExplainCliOptions) => {
      const which = explainMode(opts);
      if (which === 'compare') await (await import('./explain-compare.js')).runExplainCompare(opts);
      else if (which === 'video') await (await import('./explain-video.js')).runExplainVideo(opts);
      else if (which === 'images') await (await import('./explain-set.js')).runExplainSet(opts);
      else await runExplain(opts);
    });
}

/** The engine options the method flags ask for (shared by one image, --compare, --video and --images). */
export function explainOptionsFromFlags(o: ExplainCliOptions): Omit<ExplainOptions, 'load'> {
  const methods = parseMethods(o.methods ?? [], '--methods') ?? parseMethods(o.method);
  if (o.methods && o.method) throw new UsageError('give the methods to compare with --methods or --method, not both');
  const fusions = parseFusions(o.headFusion);
  return {
    ...(methods ? { methods } : {}),
    ...(o.class !== undefined ? { classIndex: o.class } : {}),
    ...(o.top !== undefined ? { topK: o.top } : {}),
    ...(fusions ? { headFusion: fusions } : {}),
    ...(o.discard && o.discard.length ? { discard: o.discard } : {}),
    ...(o.text && o.text.length ? { texts: o.text } : {}),
    ...(o.rolloutNormalization ? { rolloutNormalization: o.rolloutNormalization } : {}),
    ...(o.gradRollout ? { gradRollout: o.gradRollout } : {}),
    ...(o.cheferStart !== undefined ? { cheferStart: o.cheferStart } : {}),
    ...(o.headsLayer !== undefined ? { headsLayer: o.headsLayer } : {}),
    ...(o.attnLrpAttention ? { attnLrpAttention: o.attnLrpAttention } : {}),
  };
}

/** The engine names its API options; say the flag the user typed instead. */
export function withFlagNames(e: unknown): never {
  if (e instanceof HeedError && e.kind === 'invalid_input') {
    e.message = e.message.replace(/\bclassIndex\b/g, '--class').replace(/\btopK\b/g, '--top').replace(/\bpass texts\b/g, 'pass --text')
      .replace(/\bcheferStart\b/g, '--chefer-start').replace(/^heads layer\b|\bheadsLayer\b/g, '--heads-layer')
      .replace(/\battnLrpAttention\b/g, '--attn-lrp-attention');
  }
  throw e;
}

/** Checks the flags every mode shares; returns the model folder, the output folders and the resolved device. */
export async function commonExplainSetup(o: ExplainCliOptions): Promise<{ model: string; out: string; trace?: string; mode: OutputMode; options: ExplainOptions }> {
  if (o.class !== undefined && o.top !== undefined) throw new UsageError('give --class N or --top K, not both');
  const model = existingDir(o.model, '--model', 'point it at a ViT/DINO/CLIP ONNX folder (run `heed demo` to build tiny ones)');
  if (o.text?.some((t) => t.trim() === '')) throw new UsageError('--text is empty: give the text to compare the image with, e.g. --text "a photo of a cat"');
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const partial = explainOptionsFromFlags(o); // parses the method flags before any folder is created
  const out = outputDir(o.out, '--out');
  const trace = o.trace !== undefined ? outputDir(o.trace, '--trace') : undefined;
  const device = await resolveCliDevice(o.device ?? defaultDevice(), mode);
  return { model, out, ...(trace !== undefined ? { trace } : {}), mode, options: { ...partial, load: { intraOpThreads: o.threads, device } } };
}

/** Which input mode the flags ask for: exactly one of --image, --video, --images. */
export function explainMode(o: ExplainCliOptions): 'image' | 'compare' | 'video' | 'images' {
  const given = [o.image !== undefined && '--image', o.video !== undefined && '--video', o.images !== undefined && '--images'].filter(Boolean);
  if (given.length === 0) throw new UsageError('give the input: --image FILE (one image), --video FILE (every frame) or --images DIR (--method distance over a folder)');
  if (given.length > 1) throw new UsageError(`give one input, not ${given.join(' and ')}`);
  if (o.compare && o.image === undefined) throw new UsageError('--compare compares the methods on one image: give --image FILE');
  if (o.compare) return 'compare';
  if (o.methods !== undefined) throw new UsageError('--methods chooses the methods of --compare; without it use --method a,b');
  if (o.compareScale !== undefined || o.compareRepeat !== undefined) throw new UsageError('--compare-scale and --compare-repeat apply to --compare only');
  if ((o.fps !== undefined || o.maxFrames !== undefined) && o.video === undefined) throw new UsageError('--fps and --max-frames apply to --video only');
  return o.video !== undefined ? 'video' : o.images !== undefined ? 'images' : 'image';
}

export async function runExplain(o: ExplainCliOptions): Promise<{ result: ExplainResult; written: WrittenFiles }> {
  if (o.image === undefined) throw new UsageError('--image is required: give a PNG, JPEG or WebP file');
  const { model, out, trace, mode, options } = await commonExplainSetup(o);
  const image = existingFile(o.image, '--image', 'give a PNG, JPEG or WebP file');
  say(mode, `explaining ${image} with ${model}`);
  const { validateExplainOptions } = await import('../explain/index.js');
  const { openExplainModels, runExplainJob } = await import('../jobs/explain.js');
  const job = await (async () => {
    validateExplainOptions(options); // before loading the model: a mistake fails in milliseconds
    const models = await openExplainModels(model, options.load);
    try {
      return await runExplainJob(models, { image, options, outDir: out, ...(trace !== undefined ? { traceDir: trace } : {}) });
    } finally {
      await models.release();
    }
  })().catch(withFlagNames);
  const { result, written } = job;
  reportExplain(mode, result, written);
  return { result, written };
}

function reportExplain(mode: OutputMode, r: ExplainResult, w: WrittenFiles): void {
  if (mode.json) {
    process.stdout.write(JSON.stringify({ outDir: w.outDir, files: w.files, traceFiles: w.traceFiles, classes: r.classes ?? null, similarities: r.similarities ?? null, skipped: r.skipped, notes: r.notes, timingsMs: r.timings }, null, 2) + '\n');
    return;
  }
  warn(mode, [...r.skipped.map((s) => `${s.method} skipped: ${s.reason}`), ...r.notes]);
  if (r.classes) {
    say(mode, 'top classes:');
    for (const c of r.classes.slice(0, 5)) say(mode, `  ${String(c.index).padStart(5)}  ${(100 * c.probability).toFixed(1).padStart(5)}%  ${c.label}`);
  }
  if (r.similarities) {
    say(mode, 'image–text similarity:');
    for (const s of r.similarities) say(mode, `  ${(100 * s.probability).toFixed(1).padStart(5)}%  logit ${s.logit.toFixed(3)}  ${JSON.stringify(s.text)}`);
  }
  const rel = relative(process.cwd(), w.outDir) || '.';
  say(mode, `files (${rel}/): ${w.files.join(', ')}`);
  if (w.traceFiles.length) say(mode, `trace: ${w.traceFiles.length} .npy files`);
  const fwd = r.timings.forward;
  if (fwd !== undefined) say(mode, `forward pass ${ms(fwd)}`);
}
