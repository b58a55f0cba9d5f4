// `heed eval`: the evaluation a researcher runs on an SD folder plus a CLIP folder (issue 14 §4): word maps against
// the subjects' masks, neglect with and without Attend-and-Excite, CLIP similarities, and the neglect warning scored
// as a predictor. This module parses and checks the flags; engine/jobs/eval runs the job and writes the report.
//
// `eval` is a command that can take sub-modes: a sub-command attached to the Command that registerEval returns
// (e.g. `heed eval explain …`) is dispatched by commander before this action runs. Commander lets `eval` itself parse
// the flags it defines wherever they appear (the program's options are not positional), so a sub-mode that shares a
// flag name (--out, --clip, --seeds…) must read its options with `optsWithGlobals()`, which merges them.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { Command } from 'commander';
import { existingDir, existingFile, interruptSignal, outputDir, say, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { finiteNumber, oneOf, parseSize, positiveInt, type ImageSize } from './options.js';
import { stepProgress } from './progress.js';
import { defaultDevice, deviceOption, resolveCliDevice } from './device.js';
import { parseGuidanceLoss } from './excite.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';
import { GRAMMAR_SETS, evalPrompt, grammarPrompts, parseSeedRange, promptLines, spreadSubset, type EvalPrompt, type GrammarSet } from '../jobs/eval/prompts.js';
import { EVAL_DEFAULTS, EXCITE_WORDS, type EvalSettings, type ExciteWords } from '../jobs/eval/run.js';
import type { EvalReport } from '../jobs/eval/report.js';

export interface EvalCliOptions extends OutputMode {
  sd?: string;
  clip?: string;
  prompts?: string;
  grammar?: GrammarSet;
  maxPrompts?: number;
  subjects?: string;
  seeds: string;
  out?: string;
  steps: number;
  guidance: number;
  scheduler?: string;
  size?: ImageSize;
  excite: boolean;
  aeRes?: number;
  exciteWords?: ExciteWords;
  aeScaleFactor?: number;
  aeLoss?: 'attend-excite' | 'syngen';
  tau: number;
  colourTolerance: number;
  minArea: number;
  presentSim: number;
  resume?: boolean;
  threads: number;
  device?: string;
}

export function registerEval(program: Command): Command {
  return program
    .command('eval')
    .description('evaluate an SD folder with a CLIP folder over prompts × seeds: word maps vs the subjects (pointing game, IoU), neglect with and without Attend-and-Excite, CLIP similarities, the neglect warning as a predictor; report.json, report.md, diagnosis.png')
    .option('--sd <dir>', 'Stable Diffusion ONNX folder (required)')
    .option('--clip <dir>', 'CLIP ONNX folder (full CLIPModel export: image_embeds and text_embeds outputs) (required)')
    .option('--prompts <file>', 'prompts, one per line (# comments); default: the Shapes grammar (--grammar)')
    .option('--grammar <set>', `Shapes grammar prompts when no --prompts: ${GRAMMAR_SETS.join(', ')} (12 single-shape, 72 two-shape prompts)`, oneOf('--grammar', GRAMMAR_SETS))
    .option('--max-prompts <n>', 'evaluate only n prompts, spread evenly over the list', positiveInt('--max-prompts', 1_000_000))
    .option('--subjects <words>', 'for prompts outside the Shapes grammar: the subject words, comma-separated (default: the prompt\'s nouns)')
    .option('--seeds <range>', 'seeds: A..B (inclusive), a seed, or a list such as 0..4,100', '0..1')
    .option('--out <dir>', 'output folder: samples.jsonl, samples/, report.json, report.md, diagnosis.png (required)')
    .option('--steps <n>', 'inference steps', positiveInt('--steps', 1000), 50)
    .option('--guidance <g>', 'classifier-free guidance scale', finiteNumber('--guidance', 0, 100), 7.5)
    .option('--scheduler <name>', "sampler (default: the folder's scheduler)")
    .option('--size <WxH>', "image size (default: the model's)", parseSize)
    .option('--no-excite', 'no Attend-and-Excite runs (neglect is measured on plain runs only)')
    .option('--ae-res <r>', 'A&E: side of the attention grid its loss reads (default: as heed generate)', positiveInt('--ae-res', 1024))
    .option('--excite-words <which>', `A&E strengthens each subject's noun ('subject', the paper's choice), its colour word ('colour') or both (Shapes prompts; default subject)`, oneOf('--excite-words', EXCITE_WORDS))
    .option('--ae-scale-factor <f>', 'A&E: step size scale (default 20)', finiteNumber('--ae-scale-factor', 0, 1e6))
    .option('--ae-loss <excite|syngen>', 'the guided runs\' loss: Attend-and-Excite (default) or SynGen\'s binding loss on each subject\'s noun and its modifiers', parseGuidanceLoss)
    .option('--tau <t>', 'threshold on the normalised word map for IoU (DAAM uses 0.4)', finiteNumber('--tau', 0, 1), EVAL_DEFAULTS.tau)
    .option('--colour-tolerance <d>', 'Shapes prompts: max RGB distance of a pixel to a palette colour', finiteNumber('--colour-tolerance', 0, 442), EVAL_DEFAULTS.colourTolerance)
    .option('--min-area <f>', 'a subject is present when its mask covers at least this share of the image', finiteNumber('--min-area', 0, 1), EVAL_DEFAULTS.minArea)
    .option('--present-sim <s>', 'prompts outside the Shapes grammar: a subject is present when its CLIP cosine similarity to the image is at least this', finiteNumber('--present-sim', -1, 1), EVAL_DEFAULTS.presentSimilarity)
    .option('--resume', 'continue the evaluation in --out (samples already in samples.jsonl are not run again)')
    .option('--threads <n>', 'threads per ONNX Runtime operator', positiveInt('--threads', 256), DEFAULT_THREADS)
    .addOption(deviceOption())
    .option('--quiet', 'print nothing but errors')
    .option('--json', 'print report.json on stdout; no progress bar')
    .action(async (_o: EvalCliOptions, c: Command) => {
      await runEval(c.optsWithGlobals<EvalCliOptions>());
    });
}

export interface EvalPlan {
  settings: EvalSettings;
  prompts: EvalPrompt[];
  seeds: number[];
  out: string;
}

/** A path check of common.ts, with the flag's field on the error. */
function withField<T>(field: string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof UsageError && e.field === undefined) throw new UsageError(e.message, field);
    throw e;
  }
}

/** Every check that needs no model, so that mistakes fail before anything loads. */
export async function planEval(o: EvalCliOptions): Promise<EvalPlan> {
  if (o.sd === undefined) throw new UsageError('--sd is required: point it at a Stable Diffusion ONNX folder (e.g. models/shapes/sd)', 'sd');
  if (o.clip === undefined) throw new UsageError('--clip is required: point it at a CLIP ONNX folder (e.g. models/shapes/clip)', 'clip');
  if (o.out === undefined) throw new UsageError('--out is required: the folder for samples.jsonl and the report (created if missing)', 'out');
  const sd = withField('sd', () => existingDir(o.sd!, '--sd', 'point it at a Stable Diffusion ONNX folder (e.g. models/shapes/sd)'));
  const clip = withField('clip', () => existingDir(o.clip!, '--clip', 'point it at a CLIP ONNX folder (e.g. models/shapes/clip)'));
  if (o.prompts !== undefined && o.grammar !== undefined) throw new UsageError('--prompts and --grammar both name the prompts: give one of them', 'prompts');
  let texts: string[];
  if (o.prompts !== undefined) {
    const file = withField('prompts', () => existingFile(o.prompts!, '--prompts', 'give a text file with one prompt per line'));
    texts = promptLines(readFileSync(file, 'utf8'));
    if (texts.length === 0) throw new UsageError(`--prompts ${o.prompts} holds no prompt (one per line; empty lines and # comments are skipped)`, 'prompts');
  } else {
    texts = grammarPrompts(o.grammar ?? 'all');
  }
  texts = spreadSubset(texts, o.maxPrompts);
  const subjectWords = o.subjects?.split(',').map((s) => s.trim()).filter(Boolean);
  if (o.subjects !== undefined && (!subjectWords || subjectWords.length === 0)) throw new UsageError('--subjects is empty: give the subject words, e.g. --subjects cat,frog', 'subjects');
  const { autoSubjects } = await import('../guidance/subjects.js');
  const prompts = texts.map((t) => evalPrompt(t, autoSubjects, subjectWords));
  const none = prompts.find((p) => p.subjects.length === 0);
  if (none) throw new UsageError(`no subject found in "${none.text}" (it is not of the Shapes grammar and has no noun the tagger knows): name them with --subjects`, 'subjects');
  if (subjectWords) {
    for (const p of prompts) {
      const words = p.text.toLowerCase().split(/[^\p{L}\p{N}'-]+/u);
      const missing = p.subjects.find((s) => !words.includes(s.word.toLowerCase()));
      if (missing) throw new UsageError(`--subjects: '${missing.word}' is not a word of the prompt "${p.text}"; every prompt must contain every subject word`, 'subjects');
    }
  }
  let seeds: number[];
  try {
    seeds = parseSeedRange(o.seeds);
  } catch (e) {
    throw new UsageError((e as Error).message, 'seeds');
  }
  const out = withField('out', () => outputDir(o.out!, '--out'));
  const settings: EvalSettings = {
    sd, clip, steps: o.steps, guidance: o.guidance,
    ...(o.scheduler !== undefined ? { scheduler: o.scheduler } : {}),
    ...(o.size ? { width: o.size.width, height: o.size.height } : {}),
    ...(o.exciteWords !== undefined && o.exciteWords !== 'subject' ? { exciteWords: o.exciteWords } : {}),
    excite: o.excite === false ? false : {
      ...(o.aeRes !== undefined ? { res: o.aeRes } : {}),
      ...(o.aeScaleFactor !== undefined ? { scaleFactor: o.aeScaleFactor } : {}),
      ...(o.aeLoss !== undefined && o.aeLoss !== 'attend-excite' ? { method: o.aeLoss } : {}),
    },
    tau: o.tau, colourTolerance: o.colourTolerance, minArea: o.minArea, presentSimilarity: o.presentSim,
    relevanceThreshold: EVAL_DEFAULTS.relevanceThreshold,
  };
  if (o.excite === false && (o.aeRes !== undefined || o.aeScaleFactor !== undefined || o.aeLoss !== undefined)) throw new UsageError('--ae-res / --ae-scale-factor / --ae-loss apply to the guided runs, which --no-excite turns off', 'excite');
  if (o.aeLoss === 'syngen' && o.exciteWords !== undefined && o.exciteWords !== 'subject') throw new UsageError('--ae-loss syngen binds each subject\'s colour to its noun itself: drop --excite-words', 'excite');
  return { settings, prompts, seeds, out };
}

export async function runEval(o: EvalCliOptions): Promise<EvalReport> {
  const plan = await planEval(o);
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const device = await resolveCliDevice(o.device ?? defaultDevice(), mode);
  const { runEvalJob } = await import('../jobs/eval/run.js');
  const interrupt = interruptSignal();
  const bar = stepProgress({ enabled: !o.quiet && !o.json, label: 'eval' });
  try {
    const job = await runEvalJob({ ...plan, resume: o.resume === true, device, threads: o.threads }, {
      signal: interrupt.signal,
      onLoaded: ({ skipped, todo }) => {
        if (skipped > 0) say(mode, `resuming: ${skipped} sample${skipped === 1 ? '' : 's'} already in samples.jsonl, ${todo} to run`);
        else say(mode, `${todo} samples: ${plan.prompts.length} prompts × ${plan.seeds.length} seeds`);
      },
      onProgress: (p) => bar.update(p.done, p.total, p.detail),
    });
    bar.stop();
    summarize(mode, job.report, job.files);
    return job.report;
  } finally {
    bar.stop();
    interrupt.dispose();
  }
}

function summarize(mode: OutputMode, r: EvalReport, files: { jsonl: string; json: string; md: string; chart: string }): void {
  if (mode.json) {
    process.stdout.write(JSON.stringify(r, null, 1) + '\n');
    return;
  }
  const pct = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);
  const m = r.maps.subjectWords;
  say(mode, `maps:      pointing ${pct(m.pointing)}, mean IoU ${m.meanIou === null ? '–' : m.meanIou.toFixed(3)} (${m.n} subjects, τ=${r.maps.tau})`);
  if (r.single.images > 0) say(mode, `single:    subject present in ${pct(r.single.all)} of ${r.single.images} images`);
  if (r.pairs.plain.images > 0) say(mode, `pairs:     plain misses a subject in ${pct(r.pairs.plain.missRate)} of ${r.pairs.plain.images} images${r.pairs.excite ? `, A&E in ${pct(r.pairs.excite.missRate)}` : ''}`);
  const d = r.diagnosis.subjects;
  const best = d.bestF1 ? `; best F1 ${d.bestF1.f1.toFixed(3)} at threshold ${d.bestF1.threshold.toFixed(2)} (precision ${pct(d.bestF1.precision)}, recall ${pct(d.bestF1.recall)})` : '';
  if (d.cases > 0) say(mode, `diagnosis: ${d.chosen ? `threshold ${d.chosen.threshold.toFixed(2)} → precision ${pct(d.chosen.precision)}, recall ${pct(d.chosen.recall)}` : `no threshold reaches recall ${r.diagnosis.minRecall}${best}`} (${d.absent} of ${d.cases} subjects absent)`);
  const rel = (p: string): string => relative(process.cwd(), p) || '.';
  say(mode, `report:    ${rel(files.md)}, ${rel(files.json)}, ${rel(files.chart)}; samples: ${rel(files.jsonl)}`);
}
