// `heed eval explain` (for now also the top-level `heed eval-explain`): score explanation methods over a folder of
// images — positive / negative perturbation curves with their AUCs, and segmentation against masks (Chefer et al.
// CVPR 2021). engine/jobs/eval-explain.ts does the work; this is the CLI face.
import { relative } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { existingDir, interruptSignal, ms, outputDir, say, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { nonNegativeInt, oneOf, positiveInt } from './options.js';
import { parseCheferStart } from './explain.js';
import { stepProgress } from './progress.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import { defaultDevice, deviceOption, resolveCliDevice } from './device.js';
import { EVAL_METHODS, type EvalMethod } from '../explain/evaluation/methods.js';
import { PERTURBATION_GRANULARITIES, type PerturbationFill, type PerturbationGranularity } from '../explain/evaluation/perturbation.js';
import type { StartLayer } from '../explain/index.js';
import type { EvalExplainReport, EvalTarget } from '../jobs/eval-explain.js';

const TARGETS: readonly EvalTarget[] = ['predicted', 'label'];

/** `--fill`: black, zero, or an 8-bit colour R,G,B. */
export function parseFill(v: string): PerturbationFill {
  const t = v.trim().toLowerCase();
  if (t === 'black' || t === 'zero') return t;
  const parts = t.split(',').map((s) => s.trim());
  if (parts.length === 3 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return [Number(parts[0]), Number(parts[1]), Number(parts[2])];
  throw new InvalidArgumentError(`--fill must be black, zero or a colour R,G,B with 0..255 each (e.g. 240,240,240), got '${v}'`);
}

export interface EvalExplainCliOptions extends OutputMode {
  model: string;
  images: string;
  methods?: string[];
  out: string;
  target: EvalTarget;
  fill: PerturbationFill;
  granularity: PerturbationGranularity;
  limit?: number;
  seed: number;
  cheferStart?: StartLayer;
  threads: number;
  device?: string;
}

/** `--methods a,b --methods c` → validated list (default: every method). */
export function parseEvalMethods(values: readonly string[] | undefined): EvalMethod[] {
  if (!values || values.length === 0) return [...EVAL_METHODS];
  const pick = oneOf('--methods', EVAL_METHODS);
  return [...new Set(values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean).map(pick))];
}

/** The command's flags and action on `cmd` (shared by `heed eval explain` and `heed eval-explain`). */
function configure(cmd: Command): Command {
  return cmd
    .description('score explanation methods over a folder of images: positive/negative perturbation AUCs and segmentation against masks (Chefer et al. CVPR 2021)')
    .requiredOption('--model <dir>', 'ViT-like classifier ONNX folder (config.json, preprocessor_config.json, model.onnx)')
    .requiredOption('--images <dir>', 'folder of images <stem>.png|jpg|webp, optional masks <stem>.mask.png (white = object) and labels <stem>.label.txt (index or id2label name)')
    .option('--methods <list>', `methods, comma-separated or repeated: ${EVAL_METHODS.join(', ')} (default: all)`, (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option('--out <dir>', 'output folder: eval-explain.json, eval-explain.md, perturbation.png', 'out/eval-explain')
    .option('--target <t>', "class explained and scored: 'predicted' (the model's top class) or 'label' (<stem>.label.txt)", oneOf('--target', TARGETS), 'predicted')
    .option('--fill <f>', "removed pixels: 'black' (0 in the [0, 1] image, as the paper's code), 'zero' (0 in the normalised input) or a colour R,G,B (e.g. the background)", parseFill, 'black')
    .option('--granularity <g>', "rank 'pixel's of the bilinearly upsampled map (the paper's code) or whole 'patch'es", oneOf('--granularity', PERTURBATION_GRANULARITIES), 'pixel')
    .option('--limit <n>', 'use only the first N images (name order)', positiveInt('--limit'))
    .option('--seed <n>', 'seed of the random baseline', nonNegativeInt('--seed'), 0)
    .option('--chefer-start <layer>', "first block of chefer / transformer-attribution: 'last', 'all' or an index (default: the engine's)", parseCheferStart)
    .option('--threads <n>', 'threads per ONNX Runtime operator', positiveInt('--threads', 256), DEFAULT_THREADS)
    .addOption(deviceOption())
    .option('--quiet', 'print nothing but errors')
    .option('--json', 'print the report (without per-image records) as JSON on stdout')
    .action(async (opts: EvalExplainCliOptions) => {
      await runEvalExplainCli(opts);
    });
}

/** Mounts `explain` under an existing `heed eval` command, so that `heed eval --help` lists it. */
export function evalExplain(evalCommand: Command): Command {
  return configure(evalCommand.command('explain'));
}

/** The command `heed eval explain …` runs: main.ts rewrites those two words to this hidden one, because commander
 *  lets the parent `eval` consume the flags it shares with explain (--out, --json, --threads…) when they follow a
 *  nested sub-command (positional options would have to be enabled on the root, breaking `--verbose` anywhere). */
export const EVAL_EXPLAIN_COMMAND = 'eval-explain';
export function registerEvalExplain(program: Command): Command {
  return configure(program.command(EVAL_EXPLAIN_COMMAND, { hidden: true }));
}

export async function runEvalExplainCli(o: EvalExplainCliOptions): Promise<{ report: EvalExplainReport; files: string[] }> {
  const model = existingDir(o.model, '--model', 'point it at a ViT ONNX folder (e.g. models/shapes/vit)');
  const images = existingDir(o.images, '--images', 'give a folder of images (models/shapes/train/explain_eval_set.py makes one from the Shapes world)');
  const methods = parseEvalMethods(o.methods);
  if (methods.length === 0) throw new UsageError('--methods is empty: name at least one method');
  const out = outputDir(o.out, '--out');
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const device = await resolveCliDevice(o.device ?? defaultDevice(), mode);
  const { runEvalExplain } = await import('../jobs/eval-explain.js');
  const { writeEvalExplainOutputs } = await import('../jobs/eval-explain-outputs.js');
  say(mode, `evaluating ${methods.join(', ')} on ${images} with ${model}`);
  const bar = stepProgress({ enabled: !o.quiet && !o.json, label: 'images' });
  const interrupt = interruptSignal();
  let report: EvalExplainReport;
  try {
    report = await runEvalExplain({
      modelDir: model, imagesDir: images, methods, target: o.target, fill: o.fill, granularity: o.granularity, seed: o.seed,
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
      ...(o.cheferStart !== undefined ? { explain: { cheferStart: o.cheferStart } } : {}),
      load: { intraOpThreads: o.threads, device },
    }, { signal: interrupt.signal, onImage: (done, total, stem) => bar.update(done, total, stem) });
  } finally {
    bar.stop();
    interrupt.dispose();
  }
  const files = await writeEvalExplainOutputs(report, out);
  if (o.json) {
    const { perImage: _perImage, ...summary } = report;
    process.stdout.write(JSON.stringify({ ...summary, files }, null, 2) + '\n');
  } else {
    const { evalExplainMarkdown } = await import('../jobs/eval-explain-outputs.js');
    say(mode, '');
    say(mode, evalExplainMarkdown(report).split('\n').filter((l) => l.startsWith('|')).slice(0, report.methods.length + 2).join('\n'));
    say(mode, '');
    say(mode, `files (${relative(process.cwd(), out) || '.'}/): ${files.map((f) => relative(out, f)).join(', ')}; ${report.images.count} images in ${ms(report.totalMs)}`);
  }
  return { report, files };
}
