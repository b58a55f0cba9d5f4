// VJP benchmark: what a gradient through the model costs relative to a plain forward.
//   unet: the reference tiny SD UNet at batch 1, 64×64 latents, t = 901 — a full forward (the original export, all
//         blocks) against the VJP from the 16×16 cross-attention maps back to the latents (forward pruned to the
//         blocks those maps need, plus the backward), as one session and in two-phase (A&E) mode with both runner
//         strategies ('residuals': forward outputs the saved tensors; 'recompute': backward reruns the pruned forward).
//   vit:  the reference ViT — forward vs the VJP of one logit w.r.t. every layer's attention probabilities.
// Each measurement runs in its own child process so that each peak RSS is its own. Times are medians of a few runs
// after one warm-up; ratios are what to compare across machines.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { openSession, openSessionFromPath, ort, type SessionOptions } from '../engine/onnx/session.js';
import { numel } from '../engine/onnx/tensor.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { buildVjp, VjpRunner } from '../engine/onnx/autodiff/index.js';
import { referenceDir } from './lib/reference.js';
import { median } from './lib/timing.js';

// One intra-op thread: process CPU time then measures compute only (no spinning pool threads), which keeps the
// ratios meaningful on a shared, loaded machine where wall times swing by 3×. Both are reported.
const SESSION: SessionOptions = { intraOpThreads: 1, memArena: false };
const ATTN_16 = /^\/(down_blocks\.2|up_blocks\.1)\/attentions\.\d\/transformer_blocks\.0\/attn2\/Softmax$/;

type Measurement = Record<string, number>;

let lastCpuMs = 0;

/** Median wall time of `runs` runs after a warm-up; the median CPU time (user + system) is left in lastCpuMs. */
async function timeRuns(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const ms: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  lastCpuMs = median(cpu);
  return median(ms);
}

function randomTensor(dims: number[], seed: number): ort.Tensor {
  let s = seed >>> 0;
  const data = new Float32Array(numel(dims));
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 4294967296 - 0.5;
  }
  return new ort.Tensor('float32', data, dims);
}

function unetInputs(ref: string): Record<string, ort.Tensor> {
  return {
    sample: new ort.Tensor('float32', readNpyFloat32(`${ref}/sd-tiny-v1/ref/latents_init.npy`).data, [1, 4, 64, 64]),
    timestep: new ort.Tensor('float32', Float32Array.from([901]), [1]),
    encoder_hidden_states: new ort.Tensor('float32', readNpyFloat32(`${ref}/sd-tiny-v1/ref/text_embeddings_cond.npy`).data, [1, 77, 32]),
  };
}

const UNET_DIMS = { sample: [1, 4, 64, 64], timestep: [1], encoder_hidden_states: [1, 77, 32] };

/** One measurement, run inside a child process. */
async function measure(name: string, ref: string): Promise<Measurement> {
  const unetPath = `${ref}/sd-tiny-v1/onnx/unet/model.onnx`;
  const vitPath = `${ref}/vit-tiny/model.onnx`;
  switch (name) {
    case 'unet_forward': {
      const s = await openSessionFromPath(unetPath, SESSION);
      const feeds = unetInputs(ref);
      const ms = await timeRuns(2, () => s.run(feeds));
      await s.release();
      return { ms, cpu_ms: lastCpuMs };
    }
    case 'unet_vjp': {
      const model = loadModel(unetPath);
      const seeds = new Graph(model).nodes.filter((n) => ATTN_16.test(n.name)).map((n) => n.output[0]);
      const t0 = performance.now();
      const vjp = buildVjp(model, { seeds, wrt: ['sample'], inputDims: UNET_DIMS });
      const buildMs = performance.now() - t0;
      const s = await openSession(vjp.model, SESSION);
      const feeds = unetInputs(ref);
      seeds.forEach((sd, k) => (feeds[vjp.cotangents[sd]] = randomTensor(vjp.specs[sd].dims, k + 1)));
      const ms = await timeRuns(2, () => s.run(feeds));
      await s.release();
      return { ms, cpu_ms: lastCpuMs, build_ms: buildMs, forward_nodes: vjp.stats.forwardNodes, backward_nodes: vjp.stats.backwardNodes };
    }
    case 'unet_split':
    case 'unet_recompute': {
      const model = loadModel(unetPath);
      const seeds = new Graph(model).nodes.filter((n) => ATTN_16.test(n.name)).map((n) => n.output[0]);
      const strategy = name === 'unet_split' ? 'residuals' : 'recompute';
      const runner = await VjpRunner.create(model, { seeds, wrt: ['sample'], inputDims: UNET_DIMS, session: SESSION, strategy });
      const feeds = unetInputs(ref);
      const cots: Record<string, ort.Tensor> = {};
      seeds.forEach((sd, k) => (cots[sd] = randomTensor(runner.specs[sd].dims, k + 1)));
      let fwdMs = 0;
      let bwdMs = 0;
      const total = await timeRuns(2, async () => {
        const t0 = performance.now();
        const { residuals } = await runner.forward(feeds);
        const t1 = performance.now();
        await runner.backward(residuals, cots);
        fwdMs = t1 - t0;
        bwdMs = performance.now() - t1;
      });
      await runner.dispose();
      return { ms: total, cpu_ms: lastCpuMs, forward_ms: fwdMs, backward_ms: bwdMs, residual_mb: (runner.split?.stats.residualBytes ?? 0) / 2 ** 20 };
    }
    case 'vit_forward': {
      const s = await openSessionFromPath(vitPath, SESSION);
      const x = new ort.Tensor('float32', readNpyFloat32(`${ref}/vit-tiny/ref/pixel_values.npy`).data, [1, 3, 224, 224]);
      const ms = await timeRuns(20, () => s.run({ pixel_values: x }));
      await s.release();
      return { ms, cpu_ms: lastCpuMs };
    }
    case 'vit_vjp': {
      const model = loadModel(vitPath);
      const probs = new Graph(model).nodes.filter((n) => n.opType === 'Softmax').map((n) => n.output[0]);
      const vjp = buildVjp(model, { seeds: ['logits'], wrt: probs, inputDims: { pixel_values: [1, 3, 224, 224] } });
      const s = await openSession(vjp.model, SESSION);
      const cot = new Float32Array(10);
      cot[3] = 1;
      const feeds = {
        pixel_values: new ort.Tensor('float32', readNpyFloat32(`${ref}/vit-tiny/ref/pixel_values.npy`).data, [1, 3, 224, 224]),
        logits__cot: new ort.Tensor('float32', cot, [1, 10]),
      };
      const ms = await timeRuns(20, () => s.run(feeds));
      await s.release();
      return { ms, cpu_ms: lastCpuMs };
    }
    default:
      throw new Error(`unknown VJP measurement '${name}'`);
  }
}

function runChild(name: string): Measurement {
  const here = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [here, '--measure', name], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('VJP_BENCH '));
  if (r.status !== 0 || !line) throw new Error(`VJP bench '${name}' failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line.slice('VJP_BENCH '.length)) as Measurement;
}

export async function benchVjp(): Promise<Record<string, number>> {
  if (!referenceDir()) {
    console.warn('bench vjp: ../shared/reference not found (set HEED_REFERENCE); skipped');
    return {};
  }
  const out: Record<string, number> = {};
  const put = (prefix: string, m: Measurement) => {
    for (const [k, v] of Object.entries(m)) out[`${prefix}_${k}`] = Math.round(v * 100) / 100;
  };
  const uf = runChild('unet_forward');
  const uv = runChild('unet_vjp');
  const us = runChild('unet_split');
  const ur = runChild('unet_recompute');
  const vf = runChild('vit_forward');
  const vv = runChild('vit_vjp');
  put('unet_full_forward', uf);
  put('unet_vjp', uv);
  put('unet_split', us);
  put('unet_recompute', ur);
  put('vit_forward', vf);
  put('vit_vjp', vv);
  const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
  out.unet_vjp_over_full_forward_cpu = ratio(uv.cpu_ms, uf.cpu_ms);
  out.unet_split_over_full_forward_cpu = ratio(us.cpu_ms, uf.cpu_ms);
  out.unet_recompute_over_full_forward_cpu = ratio(ur.cpu_ms, uf.cpu_ms);
  out.vit_vjp_over_forward_cpu = ratio(vv.cpu_ms, vf.cpu_ms);
  out.unet_vjp_over_full_forward = Math.round((uv.ms / uf.ms) * 1000) / 1000;
  out.unet_split_over_full_forward = Math.round((us.ms / uf.ms) * 1000) / 1000;
  out.unet_recompute_over_full_forward = Math.round((ur.ms / uf.ms) * 1000) / 1000;
  out.unet_vjp_peak_rss_over_forward = Math.round((uv.peak_rss_mb / uf.peak_rss_mb) * 1000) / 1000;
  out.vit_vjp_over_forward = Math.round((vv.ms / vf.ms) * 1000) / 1000;
  return out;
}

async function childMain(): Promise<void> {
  const name = process.argv[process.argv.indexOf('--measure') + 1];
  const ref = referenceDir();
  if (!ref) throw new Error('reference folder not found');
  const m = await measure(name, ref);
  m.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`\nVJP_BENCH ${JSON.stringify(m)}\n`);
}

if (process.argv.includes('--measure') && process.argv[1] === fileURLToPath(import.meta.url)) {
  childMain().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
