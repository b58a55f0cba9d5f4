// Memory of a whole Attend-and-Excite generation (issue 17 §1) and what sharing the weights costs in step time.
//  - peak proportional (Pss) and anonymous memory of a child process that runs an A&E generation (the plain UNet
//    session plus the A&E forward and backward sessions), sampled from /proc/<pid>/smaps_rollup by this process
//    every 500 ms (each read walks every mapping: sampling more often costs real CPU); Pss, not VmRSS, because the
//    three sessions map one weights file and VmRSS would count it once per mapping;
//  - that peak divided by the bytes of the model's weight files (all ONNX files and external data of the folder);
//  - the CFG step time with the weights shared (the default) vs each session's private prepacked copy, each in its
//    own child process, in this one run;
//  - the CFG step as two batch-1 calls (the CPU default from 64×64 latents) vs one batch-2 call: time and peaks.
// Children run with the malloc settings that `bin/heed.js` and the server's workers use (engine/onnx/memory.ts);
// HEED_MALLOC_TUNING=0 measures without them.
// `HEED_BENCH_SD=<folder>` picks the model (default the tiny one; a full-width SD 1.5 from
// `node dist/models/build.js --kind sd --size sd15` is the case the goal is about; an SDXL folder works the same, e.g.
// `--kind sdxl --size wide`), `HEED_BENCH_SIZE` the image side,
// `HEED_BENCH_AE_STEPS` the steps of the A&E generation (default 2).
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTinyModels } from '../models/cache.js';
import { withMallocEnv } from '../engine/onnx/memory.js';

interface SmapsSample { pssMb: number; anonMb: number }

/** Pss and anonymous memory of a process, or undefined once it has gone. */
function smapsRollup(pid: number): SmapsSample | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { pssMb: kb('Pss') / 1024, anonMb: kb('Anonymous') / 1024 };
}

/** Bytes of every file under the model's component folders (graphs and their external weights). */
function weightBytes(dir: string): number {
  let total = 0;
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (/\.onnx$|\.onnx_data$|\.pb$|\.bin$/.test(name)) total += st.size;
    }
  };
  walk(dir);
  return total;
}

/** Runs this file as a child with `args`, sampling its smaps_rollup; returns its last stdout line and the peaks. */
function runSampled(args: string[]): Promise<{ line: string; peak: SmapsSample }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: withMallocEnv(process.env) });
    const peak: SmapsSample = { pssMb: 0, anonMb: 0 };
    const timer = setInterval(() => {
      const s = child.pid === undefined ? undefined : smapsRollup(child.pid);
      if (!s) return;
      peak.pssMb = Math.max(peak.pssMb, s.pssMb);
      peak.anonMb = Math.max(peak.anonMb, s.anonMb);
    }, 500);
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('RESULT ')) reject(new Error(`memory bench child ${args.join(' ')} failed (exit ${code})`));
      else resolvePromise({ line: line.slice('RESULT '.length), peak });
    });
  });
}

export async function benchMemory(): Promise<Record<string, number | string>> {
  const dir = process.env.HEED_BENCH_SD ?? (await ensureTinyModels()).sd;
  const size = Number(process.env.HEED_BENCH_SIZE ?? 512);
  const steps = Number(process.env.HEED_BENCH_AE_STEPS ?? 2);
  const weightsMb = weightBytes(dir) / 2 ** 20;
  const out: Record<string, number | string> = { model: dir, size, ae_steps: steps, weights_mb: weightsMb };

  const ae = await runSampled(['--ae-generation', dir, String(size), String(steps)]);
  out.ae_generation_ms = Number(ae.line);
  out.ae_generation_peak_pss_mb = ae.peak.pssMb;
  out.ae_generation_peak_anon_mb = ae.peak.anonMb;
  out.ratio_ae_generation_peak_pss_vs_weights = ae.peak.pssMb / weightsMb;

  out.malloc_tuning = withMallocEnv(process.env) === process.env ? 'off' : 'on';
  const shared = await runSampled(['--cfg-step', dir, String(size), 'shared']);
  const priv = await runSampled(['--cfg-step', dir, String(size), 'private']);
  const batched = await runSampled(['--cfg-step', dir, String(size), 'batched']);
  out.cfg_step_ms_split = Number(shared.line);
  out.cfg_step_ms_batched = Number(batched.line);
  out.ratio_cfg_step_split_vs_batched = Number(shared.line) / Number(batched.line);
  out.cfg_step_peak_anon_mb_split = shared.peak.anonMb;
  out.cfg_step_peak_anon_mb_batched = batched.peak.anonMb;
  out.cfg_step_ms_shared_weights = Number(shared.line);
  out.cfg_step_ms_private_weights = Number(priv.line);
  out.ratio_cfg_step_shared_vs_private = Number(shared.line) / Number(priv.line);
  out.cfg_step_peak_pss_mb_shared = shared.peak.pssMb;
  out.cfg_step_peak_anon_mb_shared = shared.peak.anonMb;
  out.cfg_step_peak_anon_mb_private = priv.peak.anonMb;
  return out;
}

async function childAeGeneration(dir: string, size: number, steps: number): Promise<number> {
  const { StableDiffusionPipeline } = await import('../engine/diffusion/pipeline.js');
  const { AttendExcite, AE_DEFAULTS } = await import('../engine/guidance/attend-excite.js');
  const { DEFAULT_AE_LOSS } = await import('../engine/guidance/ae-loss.js');
  const pipe = await StableDiffusionPipeline.load(dir);
  try {
    const shape: [number, number, number, number] = [1, 4, size / 8, size / 8];
    // The pipeline's own default grid (16×16 for SD 1.x at 512², latent/4 for SDXL), as `heed generate --excite` uses.
    const ae = await AttendExcite.create(pipe, shape, {
      tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: steps, resolution: pipe.defaultAttentionGrid(size, size).res, loss: DEFAULT_AE_LOSS,
    });
    const t0 = performance.now();
    await pipe.generate({ prompt: 'a cat and a frog', steps, guidance: 7.5, width: size, height: size, seed: 1234, maps: true, beforeStep: ae.hook });
    const ms = performance.now() - t0;
    await ae.dispose();
    return ms;
  } finally {
    await pipe.dispose();
  }
}

/** `mode`: 'shared' (the defaults), 'private' (prepacked weights per session), 'batched' (one batch-2 call). */
async function childCfgStep(dir: string, size: number, mode: string): Promise<number> {
  const { StableDiffusionPipeline } = await import('../engine/diffusion/pipeline.js');
  const { torchRandn } = await import('../engine/diffusion/random.js');
  const { sdxlTimeIds } = await import('../engine/diffusion/sdxl-conditioning.js');
  const pipe = await StableDiffusionPipeline.load(dir, { session: { shareWeights: mode !== 'private' }, cfgBatching: mode === 'batched' ? 'batched' : 'auto' });
  try {
    const h = size / 8;
    const enc = await pipe.encodePrompts('a cat and a frog', '');
    const latents = torchRandn([1, 4, h, h], 1234);
    const sample = new Float32Array(latents.length * 2);
    sample.set(latents, 0);
    sample.set(latents, latents.length);
    const ehs = new Float32Array(enc.uncond.length * 2);
    ehs.set(enc.uncond, 0);
    ehs.set(enc.cond, enc.uncond.length);
    const [, sequence, hidden] = enc.dims;
    // SDXL: the pooled embeddings and size/crop ids of both rows, as the pipeline feeds them.
    let added: { textEmbeds: Float32Array; timeIds: Float32Array } | undefined;
    if (enc.pooled) {
      const ids = sdxlTimeIds(pipe.unet.io, enc.pooled.dim, { height: size, width: size });
      const two = (a: Float32Array, b: Float32Array): Float32Array => {
        const o = new Float32Array(a.length + b.length);
        o.set(a, 0);
        o.set(b, a.length);
        return o;
      };
      added = { textEmbeds: two(enc.pooled.uncond, enc.pooled.cond), timeIds: two(ids, ids) };
    }
    const input = { sample, batch: 2, height: h, width: h, timestep: 901, encoderHiddenStates: ehs, sequence, hidden, ...(added ? { added } : {}) };
    await pipe.unet.run(input); // warm-up: the first run pages the weights in
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await pipe.unet.run(input);
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[1];
  } finally {
    await pipe.dispose();
  }
}

const [mode, dirArg, sizeArg, extra] = process.argv.slice(2);
if (mode === '--ae-generation') {
  process.stdout.write(`RESULT ${await childAeGeneration(dirArg, Number(sizeArg), Number(extra))}\n`);
} else if (mode === '--cfg-step') {
  process.stdout.write(`RESULT ${await childCfgStep(dirArg, Number(sizeArg), extra)}\n`);
}
