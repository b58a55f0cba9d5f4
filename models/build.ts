#!/usr/bin/env node
// Builds one model folder with deterministic random weights:
//   node dist/models/build.js --kind sd|sdxl|vit|clip --size tiny|sd15|vit-b16 --out DIR --seed N
import { Command, InvalidArgumentError } from 'commander';
import { resolve } from 'node:path';
import { buildSdPipeline, sd15Config, sdTinyConfig } from './sd.js';
import { buildVitFolder, vitB16Config, vitTinyConfig } from './vit.js';
import { buildClipFolder, clipTinyConfig } from './clip.js';
import { buildSdxlPipeline, sdxlTinyConfig, sdxlWideConfig } from './sdxl.js';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got '${v}'`);
  return n;
};

const program = new Command('build-model')
  .description('Write an ONNX model folder (real export layout) with seeded random weights')
  .requiredOption('--kind <kind>', 'sd | sdxl | vit | dino | clip')
  .option('--size <size>', 'tiny | sd15 (sd) | vit-b16 (vit, dino)', 'tiny')
  .requiredOption('--out <dir>', 'output folder (created)')
  .option('--seed <n>', 'weight seed', int, 0)
  .option('--timestep-type <type>', 'sd: float32 | int64 element type of the UNet timestep input', 'float32')
  .option('--linear-projection', 'sd: Linear proj_in/proj_out (SD 2.x style) instead of 1x1 conv')
  .option('--layout <layout>', 'vit/clip: optimum (onnx/model.onnx) | root (model.onnx) | both');

program.parse();
const o = program.opts<{ kind: string; size: string; out: string; seed: number; timestepType: string; linearProjection?: boolean; layout?: string }>();
const out = resolve(o.out);
const t0 = Date.now();

function fail(msg: string): never {
  console.error(`build-model: ${msg}`);
  process.exit(2);
}

if (o.kind === 'sd') {
  if (o.size !== 'tiny' && o.size !== 'sd15') fail(`--size ${o.size} is not an SD size: use tiny or sd15`);
  if (o.timestepType !== 'float32' && o.timestepType !== 'int64') fail(`--timestep-type must be float32 or int64, got ${o.timestepType}`);
  const cfg = o.size === 'sd15' ? sd15Config(o.seed) : sdTinyConfig(o.seed);
  cfg.unet.timestepType = o.timestepType;
  if (o.linearProjection) cfg.unet.useLinearProjection = true;
  const r = buildSdPipeline(out, cfg);
  console.log(`SD pipeline (${o.size}) → ${out}: UNet ${r.parameterCounts.unet} params, text encoder ${r.parameterCounts.textEncoder}, ` +
    `VAE decoder ${r.parameterCounts.vae}, vocab ${r.vocabSize} (${Date.now() - t0} ms)`);
} else if (o.kind === 'sdxl') {
  if (o.size !== 'tiny' && o.size !== 'wide') fail(`--size ${o.size} is not an SDXL size: use tiny or wide (SDXL widths, reduced depth)`);
  const r = buildSdxlPipeline(out, o.size === 'wide' ? sdxlWideConfig(o.seed) : sdxlTinyConfig(o.seed));
  const p = r.parameterCounts;
  console.log(`SDXL pipeline (${o.size}) → ${out}: UNet ${p.unet} params, text encoders ${p.textEncoder} + ${p.textEncoder2}, ` +
    `VAE decoder ${p.vae}, vocab ${r.vocabSize} (${Date.now() - t0} ms)`);
} else if (o.kind === 'vit' || o.kind === 'dino') {
  if (o.size !== 'tiny' && o.size !== 'vit-b16') fail(`--size ${o.size} is not a ViT size: use tiny or vit-b16`);
  const cfg = o.size === 'vit-b16' ? vitB16Config(o.seed) : vitTinyConfig(o.seed);
  if (o.kind === 'dino') cfg.variant = 'dino';
  if (o.layout) {
    if (o.layout !== 'optimum' && o.layout !== 'root' && o.layout !== 'both') fail(`--layout must be optimum, root or both`);
    cfg.layout = o.layout;
  }
  const r = buildVitFolder(out, cfg);
  console.log(`${o.kind} (${o.size}) → ${out}: ${r.parameterCount} params (${Date.now() - t0} ms)`);
} else if (o.kind === 'clip') {
  if (o.size !== 'tiny') fail(`--size ${o.size}: only tiny CLIP is available`);
  const cfg = clipTinyConfig(o.seed);
  if (o.layout) {
    if (o.layout !== 'optimum' && o.layout !== 'root' && o.layout !== 'both') fail(`--layout must be optimum, root or both`);
    cfg.layout = o.layout;
  }
  const r = buildClipFolder(out, cfg);
  console.log(`CLIP (tiny) → ${out}: ${r.parameterCount} params (${Date.now() - t0} ms)`);
} else {
  fail(`--kind ${o.kind} is unknown: use sd, sdxl, vit, dino or clip`);
}
