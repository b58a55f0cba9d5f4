// `heed demo` (`npm run demo`): the main job end to end on the default models of a folder (<dir>/sd, vit, clip) — no
// download. It generates with per-word attention maps on the SD pipeline — a plain run next to an Attend-and-Excite
// run from the same seed — then explains the generated image with the ViT and CLIP. The folder is the committed
// models/shapes/ (trained in this repository on the Shapes world, where a neglected subject and a map that misses its
// shape can be seen) unless --models names another, e.g. the tiny random-weight models of models/demo.ts. A folder's
// `demo.json` gives its demo prompt, seed, size, steps and guidance (flags override them): for the Shapes models a
// prompt and seed where the plain run neglects a subject and A&E draws it.
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { outputDir, say, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { runGenerate } from './generate.js';
import { runExplain } from './explain.js';
import { finiteNumber, parseSeed, parseSize, positiveInt, type ImageSize } from './options.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';

export interface DemoCliOptions extends OutputMode {
  out: string;
  models?: string;
  /** Unset: the folder's demo.json, else the built-in defaults (DEMO_DEFAULTS). */
  steps?: number;
  size?: ImageSize;
  prompt?: string;
  seed?: number;
  guidance?: number;
  explain: boolean;
  excite: boolean;
  threads: number;
}

export const DEMO_PROMPT = 'a cat and a frog';

/** What a models folder's demo.json may say; every field is optional. */
export interface DemoSettings {
  prompt: string;
  seed: number;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  /** Whether the weights are trained (the closing note differs). */
  trained: boolean;
  /** Attend-and-Excite's words, as `--excite` takes them (default 'auto': the prompt's nouns). */
  excite: string;
  /** A&E step size scale (default diffusers' 20). */
  aeScaleFactor?: number;
  /** One line shown before the run: what to look for. */
  note?: string;
}

/** Without a demo.json (e.g. a folder of random-weight models). */
export const DEMO_DEFAULTS: DemoSettings = { prompt: DEMO_PROMPT, seed: 1234, width: 256, height: 256, steps: 10, guidance: 7.5, trained: false, excite: 'auto' };

/** The folder's demo.json over DEMO_DEFAULTS; a malformed file is a usage error naming it. */
export function demoSettings(dir: string): DemoSettings {
  const file = join(dir, 'demo.json');
  if (!existsSync(file)) return DEMO_DEFAULTS;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`${file} is not valid JSON (${(e as Error).message}): fix or delete it`, 'models');
  }
  const out: DemoSettings = { ...DEMO_DEFAULTS };
  const o = (raw ?? {}) as Record<string, unknown>;
  for (const key of ['prompt', 'note', 'excite'] as const) if (typeof o[key] === 'string') out[key] = o[key] as string;
  for (const key of ['seed', 'width', 'height', 'steps', 'guidance', 'aeScaleFactor'] as const) {
    if (o[key] === undefined) continue;
    if (typeof o[key] !== 'number' || !Number.isFinite(o[key]) || (o[key] as number) < 0) {
      throw new UsageError(`${file}: "${key}" must be a non-negative number`, 'models');
    }
    out[key] = o[key] as number;
  }
  if (typeof o.trained === 'boolean') out.trained = o.trained;
  return out;
}

/** The subject phrases of a prompt for CLIP: "a green circle and a yellow square" → a green circle, a yellow square. */
export function subjectPhrases(prompt: string): string[] {
  return prompt.split(/,|;|\band\b|\bwith\b/i).map((p) => p.trim()).filter((p) => contentWords(p.split(/\s+/)).length > 0);
}

// Function words that make poor CLIP texts on their own. A fixed list is enough for a demo prompt; it is not a
// part-of-speech tagger (a prompt word like "over" would still be skipped even where it is a noun).
const FUNCTION_WORDS = new Set(['a', 'an', 'the', 'and', 'or', 'of', 'with', 'in', 'on', 'at', 'to', 'by', 'for', 'from', 'over', 'under', 'is', 'are', 'its', 'his', 'her', 'their']);

/** The prompt's words minus function words, e.g. "a cat and a frog" → cat, frog. */
export function contentWords(words: readonly string[]): string[] {
  return words.filter((w) => !FUNCTION_WORDS.has(w.toLowerCase()));
}

export function registerDemo(program: Command): Command {
  return program
    .command('demo')
    .description('run Heed end to end on the demo models (npm run demo builds tiny random-weight ones first): generate with maps, then explain the image')
    .option('--out <dir>', 'output folder', join('out', 'demo'))
    .option('--models <dir>', 'folder with the demo models sd/, vit/, clip/ and an optional demo.json (default <repo>/models/shapes, the trained Shapes models)')
    .option('--steps <n>', 'inference steps (default: the folder\'s demo.json, else 10)', positiveInt('--steps', 1000))
    .addOption(new Option('--size <WxH>', 'image size, multiples of 64 for SD UNets (default: demo.json\'s, else 256x256)').argParser(parseSize))
    .option('--prompt <text>', `prompt (default: demo.json's, else "${DEMO_PROMPT}")`)
    .option('--seed <n>', 'seed (default: demo.json\'s, else 1234)', parseSeed)
    .option('--guidance <g>', 'classifier-free guidance scale (default: demo.json\'s, else 7.5)', finiteNumber('--guidance', 0, 100))
    .option('--no-excite', 'skip Attend-and-Excite (one plain run instead of plain vs guided side by side)')
    .option('--no-explain', 'skip the ViT/CLIP explanation part')
    .option('--threads <n>', 'threads per ONNX Runtime operator', positiveInt('--threads', 256), DEFAULT_THREADS)
    .option('--quiet', 'print nothing but errors')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (opts: DemoCliOptions) => {
      await runDemo(opts);
    });
}

export interface DemoSummary {
  outDir: string;
  models: { sd: string; vit: string; clip: string };
  generate: { outDir: string; image: string; mapsGrid: string | null; report: string; trace: string; compare: string | null; excite: string | null };
  explain: { vit: string; clip: string } | null;
}

/** The repository root (this file is compiled to <repo>/dist/engine/cli/demo.js). */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** The demo's model folders: --models, else the committed models/shapes/, else the tiny models npm run demo builds. */
export function demoModels(dirOption: string | undefined): { dir: string; sd: string; vit: string; clip: string } {
  const dir = resolve(dirOption ?? resolve(REPO, 'models', 'shapes'));
  const parts = { sd: join(dir, 'sd'), vit: join(dir, 'vit'), clip: join(dir, 'clip') };
  const missing = Object.entries(parts).filter(([, p]) => !existsSync(p)).map(([k]) => `${k}/`);
  if (missing.length > 0) {
    throw new UsageError(`the demo models are not in ${dir} (missing ${missing.join(', ')}): pass --models DIR holding sd/, vit/ and clip/ ` +
      '(the trained ones are committed in models/shapes/; `node dist/models/demo.js DIR` builds tiny random-weight ones)', 'models');
  }
  return { dir, ...parts };
}

export async function runDemo(o: DemoCliOptions): Promise<DemoSummary> {
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const out = outputDir(o.out, '--out');
  const models = demoModels(o.models);
  const settings = demoSettings(models.dir);
  const prompt = o.prompt ?? settings.prompt;
  const seed = o.seed ?? settings.seed;
  const size = o.size ?? { width: settings.width, height: settings.height };
  const steps = o.steps ?? settings.steps;
  const guidance = o.guidance ?? settings.guidance;
  const what = settings.trained ? 'trained' : 'random-weight';
  say(mode, `demo models (${what}) in ${models.dir}; the whole demo takes a minute or a few on 2 cores`);
  if (settings.note) say(mode, settings.note);
  const sub: OutputMode = { quiet: true };

  say(mode, `\n[1/3] generate "${prompt}" on the ${what} SD pipeline: ${size.width}x${size.height}, ${steps} steps, guidance ${guidance}, seed ${seed}, per-word maps` +
    (o.excite ? `;\n      a plain run and an Attend-and-Excite run on ${settings.excite === 'auto' ? 'the prompt\'s nouns' : settings.excite}${settings.aeScaleFactor !== undefined ? ` (scale factor ${settings.aeScaleFactor})` : ''}, side by side` : ''));
  const genDir = join(out, 'generate');
  const gen = await runGenerate({
    model: models.sd, prompt, negative: '', steps, guidance, seed, size,
    out: genDir, maps: true, trace: join(genDir, 'trace'), colormap: 'turbo', opacity: 0.5, threads: o.threads,
    quiet: o.quiet, json: o.json, summary: false,
    ...(o.excite ? { excite: settings.excite, compare: true, ...(settings.aeScaleFactor !== undefined ? { aeScaleFactor: settings.aeScaleFactor } : {}) } : {}),
  });
  const timings = gen.result.timings;
  say(mode, `      ${gen.result.timesteps.length} UNet calls in ${(timings.denoiseMs / 1000).toFixed(1)} s; words: ${gen.written.maps.map((m) => m.word).join(', ')}`);

  let explain: DemoSummary['explain'] = null;
  if (o.explain) {
    say(mode, `[2/3] explain the generated image with the ${what} ViT classifier (rollout, gradient rollout, Chefer, heads, distance)`);
    const vitDir = join(out, 'explain-vit');
    await runExplain({ model: models.vit, image: gen.written.image, out: vitDir, trace: join(vitDir, 'trace'), threads: o.threads, ...sub });
    const phrases = subjectPhrases(prompt).slice(0, 4);
    const texts = phrases.length > 1 ? [...phrases, prompt] : [prompt];
    say(mode, `[3/3] explain it with the ${what} CLIP against ${texts.map((t) => `"${t}"`).join(', ')} (Chefer image and text relevance)`);
    const clipDir = join(out, 'explain-clip');
    await runExplain({ model: models.clip, image: gen.written.image, text: texts, out: clipDir, threads: o.threads, ...sub });
    explain = { vit: vitDir, clip: clipDir };
  }

  const summary: DemoSummary = {
    outDir: out,
    models: { sd: models.sd, vit: models.vit, clip: models.clip },
    generate: {
      outDir: genDir, image: gen.written.image, mapsGrid: gen.written.mapsGrid ?? null, report: join(genDir, 'report.json'), trace: join(genDir, 'trace'),
      compare: gen.plain ? join(genDir, 'compare.png') : null, excite: o.excite ? join(genDir, 'excite.json') : null,
    },
    explain,
  };
  if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  const rel = (p: string): string => relative(process.cwd(), p) || '.';
  say(mode, `\ndone. Files:`);
  say(mode, `  ${rel(gen.written.image)}        generated image${o.excite ? ' (with Attend-and-Excite)' : ''}`);
  if (summary.generate.compare) say(mode, `  ${rel(summary.generate.compare)}      plain | Attend-and-Excite, same seed (plain run's files in ${rel(join(genDir, 'plain'))}/)`);
  if (summary.generate.excite) say(mode, `  ${rel(summary.generate.excite)}      A&E loss and subject scores per step (chart: excite_loss.png)`);
  if (gen.written.mapsGrid) say(mode, `  ${rel(gen.written.mapsGrid)}         per-word attention maps (grid); single maps in ${rel(join(genDir, 'maps'))}/`);
  say(mode, `  ${rel(summary.generate.report)}      tokens, alignment, timings, max attention per word`);
  if (explain) say(mode, `  ${rel(explain.vit)}/, ${rel(explain.clip)}/   explanation overlays and explain.json`);
  if (!settings.trained) say(mode, 'The weights are random, so the image is noise-like and the maps carry no meaning; use --model with a real export for real pictures.');
  else say(mode, `These models know only the Shapes world (models/shapes/README.md); point \`heed generate --model\` at a real SD ONNX export for real pictures.`);
  return summary;
}
