// `heed demo` (`npm run demo`): the main job end to end on the default models of a folder (<dir>/sd, vit, clip) — no
// download. It generates with per-word attention maps on the SD pipeline, then explains the generated image with the
// ViT and CLIP. The folder is models/shapes/ when the trained models are there, else the tiny seeded random-weight
// models that `npm run demo` builds first (models/demo.ts; the engine does not import the builders). With random
// weights the image is structured noise and the maps are not meaningful: the point is that every stage runs and
// what the outputs look like. Point `heed generate --model` at a real SD ONNX export for real pictures.
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { outputDir, say, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { runGenerate } from './generate.js';
import { runExplain } from './explain.js';
import { parseSize, positiveInt, type ImageSize } from './options.js';
import { DEFAULT_THREADS } from '../onnx/threads.js';

export interface DemoCliOptions extends OutputMode {
  out: string;
  models?: string;
  steps: number;
  size: ImageSize;
  prompt: string;
  explain: boolean;
  excite: boolean;
  threads: number;
}

export const DEMO_PROMPT = 'a cat and a frog';

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
    .option('--models <dir>', 'folder with the demo models sd/, vit/, clip/ (default <repo>/models/shapes when present, else <repo>/.cache/models/demo, built by npm run demo)')
    .option('--steps <n>', 'inference steps', positiveInt('--steps', 1000), 10)
    .addOption(new Option('--size <WxH>', 'image size (multiples of 64 for SD UNets)').argParser(parseSize).default({ width: 256, height: 256 }, '256x256'))
    .option('--prompt <text>', 'prompt', DEMO_PROMPT)
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
  const shapes = resolve(REPO, 'models', 'shapes');
  const dir = resolve(dirOption ?? (existsSync(join(shapes, 'sd')) ? shapes : resolve(REPO, '.cache', 'models', 'demo')));
  const parts = { sd: join(dir, 'sd'), vit: join(dir, 'vit'), clip: join(dir, 'clip') };
  const missing = Object.entries(parts).filter(([, p]) => !existsSync(p)).map(([k]) => `${k}/`);
  if (missing.length > 0) {
    throw new UsageError(`the demo models are not in ${dir} (missing ${missing.join(', ')}): run \`npm run demo\`, which builds tiny ones ` +
      '(or `node dist/models/demo.js DIR`), or pass --models DIR holding sd/, vit/ and clip/', 'models');
  }
  return { dir, ...parts };
}

export async function runDemo(o: DemoCliOptions): Promise<DemoSummary> {
  const mode: OutputMode = { quiet: o.quiet, json: o.json };
  const out = outputDir(o.out, '--out');
  const models = demoModels(o.models);
  say(mode, `demo models in ${models.dir}; the whole demo takes a minute or a few on 2 cores`);
  const sub: OutputMode = { quiet: true };

  say(mode, `\n[1/3] generate "${o.prompt}" on the tiny SD pipeline: ${o.size.width}x${o.size.height}, ${o.steps} steps, seed 1234, per-word maps` +
    (o.excite ? ';\n      a plain run and an Attend-and-Excite run on the prompt\'s nouns, side by side' : ''));
  const genDir = join(out, 'generate');
  const gen = await runGenerate({
    model: models.sd, prompt: o.prompt, negative: '', steps: o.steps, guidance: 7.5, seed: 1234, size: o.size,
    out: genDir, maps: true, trace: join(genDir, 'trace'), colormap: 'turbo', opacity: 0.5, threads: o.threads,
    quiet: o.quiet, json: o.json, summary: false,
    ...(o.excite ? { excite: 'auto', compare: true } : {}),
  });
  const timings = gen.result.timings;
  say(mode, `      ${gen.result.timesteps.length} UNet calls in ${(timings.denoiseMs / 1000).toFixed(1)} s; words: ${gen.written.maps.map((m) => m.word).join(', ')}`);

  let explain: DemoSummary['explain'] = null;
  if (o.explain) {
    say(mode, '[2/3] explain the generated image with the tiny ViT classifier (rollout, gradient rollout, Chefer, heads, distance)');
    const vitDir = join(out, 'explain-vit');
    await runExplain({ model: models.vit, image: gen.written.image, out: vitDir, trace: join(vitDir, 'trace'), threads: o.threads, ...sub });
    say(mode, '[3/3] explain it with the tiny CLIP against the prompt\'s words (Chefer image and text relevance)');
    const clipDir = join(out, 'explain-clip');
    const words = contentWords(gen.written.maps.map((m) => m.word)).slice(0, 4).map((w) => `a ${w}`);
    await runExplain({ model: models.clip, image: gen.written.image, text: words.length ? words : [o.prompt], out: clipDir, threads: o.threads, ...sub });
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
  say(mode, 'The weights are random, so the image is noise-like and the maps carry no meaning; use --model with a real export for real pictures.');
  return summary;
}
