// Explain benchmark (wired into `npm run bench` by bench/run.ts): latency of each method AFTER the forward pass,
// for the tiny ViT and a ViT-B/16-size model with random weights (224×224, 12 layers × 12 heads, 197 tokens).
// Goals (issue 7): rollout < 50 ms; Chefer (one VJP run + the relevance product) < 3× the forward pass.
// `*_compare_<method>_over_forward`: every method end to end as `heed explain --compare` times it (heads and distance,
// which --compare leaves out, timed the same way), over one forward.
// Times are medians of a few runs after a warm-up (sessions open, JIT warm); sessions use one intra-op thread,
// so compare ratios rather than absolute times on a shared machine (`*_cpu_ms` is this process's CPU time). The one-off cost of building the VJP graph
// and opening its sessions is reported separately (`vjp_build_ms`). Gradient methods run the forward through the
// two-phase VJP (`forward_with_residuals_ms`), after which each class costs one backward run (`backward_ms`).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { defaultCacheDir, ensureFolder } from '../models/cache.js';
import { buildVitFolder, vitB16Config, vitTinyConfig, type VitConfig } from '../models/vit.js';
import { ExplainModel } from '../engine/explain/model.js';
import { GradientEngine } from '../engine/explain/gradients.js';
import { attentionRollout, gradientRollout, softmaxInputGradient } from '../engine/explain/rollout.js';
import { cheferRelevanceRow } from '../engine/explain/chefer.js';
import { meanAttentionDistances } from '../engine/explain/distance.js';
import { clsAttentionMaps } from '../engine/explain/heads.js';
import { compareMethods } from '../engine/explain/compare.js';
import { explainWithModel } from '../engine/explain/api.js';
import { NON_MAP_METHODS } from '../engine/explain/method-map.js';
import { attentionGradCam, partialLrp, rawAttention, transformerAttribution } from '../engine/explain/methods/lrp-maps.js';
import { median } from './lib/timing.js';

/** Median wall time and median CPU time (user + system of this process) of `reps` runs after a warm-up. */
async function timed<T>(reps: number, fn: () => Promise<T> | T): Promise<{ ms: number; cpuMs: number; value: T }> {
  let value = await fn(); // warm-up
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    value = await fn();
    times.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { ms: median(times), cpuMs: median(cpu), value };
}

export async function benchModel(name: string, cfg: VitConfig, imagePath: string, reps: number): Promise<Record<string, number>> {
  const dir = ensureFolder(join(defaultCacheDir(), `${name}-bench-s${cfg.seed}`), cfg, (d) => buildVitFolder(d, cfg));
  const out: Record<string, number> = {};
  const model = await ExplainModel.load(dir);
  const grads = new GradientEngine(model);
  try {
    const image = await model.prepareImage(imagePath);
    await model.ready();
    const fwd = await timed(reps, () => model.forward(image));
    out[`${name}_forward_ms`] = fwd.ms;
    const vision = fwd.value.vision;
    const layout = model.layout(image, vision[0].keys);
    const grid = layout.grid;
    const prefixTokens = layout.prefixTokens;
    out[`${name}_heads_ms`] = (await timed(reps, () => clsAttentionMaps(vision[vision.length - 1], grid, prefixTokens))).ms;
    const fused = fwd.value.fused!;
    for (const fusion of ['mean', 'max', 'min'] as const) {
      // As explainImage runs it: heads fused by the forward graph, then discard, normalisation and the CLS-row product.
      const r = await timed(reps, () => attentionRollout(vision, { headFusion: fusion, discardRatio: 0.9, grid, prefixTokens, fused: fused[fusion] }));
      out[`${name}_rollout_${fusion}_0.9_ms`] = r.ms;
      // CPU time of this synchronous JS: on a shared machine it shows the cost without time spent waiting for a core.
      out[`${name}_rollout_${fusion}_0.9_cpu_ms`] = r.cpuMs;
    }
    out[`${name}_rollout_max_0.0_ms`] = (await timed(reps, () => attentionRollout(vision, { headFusion: 'max', discardRatio: 0, grid, prefixTokens, fused: fused.max }))).ms;
    // Rollout from the per-head maps alone: the path after a gradient-runner forward (heads fused by the small ORT
    // fuser session), and with the heads fused in JS for comparison.
    const viaFuser = await timed(reps, async () => {
      const f = await model.fuseHeads(vision);
      return attentionRollout(vision, { headFusion: 'max', discardRatio: 0.9, grid, prefixTokens, fused: f.max });
    });
    out[`${name}_rollout_max_0.9_fuser_ms`] = viaFuser.ms;
    const js = await timed(reps, () => attentionRollout(vision, { headFusion: 'max', discardRatio: 0.9, grid, prefixTokens }));
    out[`${name}_rollout_max_0.9_js_fusion_ms`] = js.ms;
    out[`${name}_rollout_max_0.9_js_fusion_cpu_ms`] = js.cpuMs;
    out[`${name}_distance_ms`] = (await timed(reps, () => meanAttentionDistances(vision, grid, model.info.patch, prefixTokens))).ms;

    const top = fwd.value.logits!.indexOf(Math.max(...fwd.value.logits!));
    let t0 = performance.now();
    await grads.prepareClassForward(image); // builds the two-phase VJP graph and opens its sessions
    out[`${name}_vjp_build_ms`] = performance.now() - t0;
    // The forward that keeps residuals (what explainImage runs when gradient methods are asked for).
    const gradForward = await timed(reps, () => grads.classForward(image));
    out[`${name}_forward_with_residuals_ms`] = gradForward.ms;
    const backward = await timed(reps, () => gradForward.value.gradients(top));
    out[`${name}_backward_ms`] = backward.ms;
    const g = backward.value;
    const gradRollout = await timed(reps, () => {
      const gin = g.vision.map((a, l) => softmaxInputGradient(a, g.visionGrads[l]));
      return gradientRollout(g.vision, gin, { discardRatio: 0.9, grid, prefixTokens });
    });
    out[`${name}_grad_rollout_math_ms`] = gradRollout.ms;
    const chefer = await timed(reps, () => cheferRelevanceRow(g.vision, g.visionGrads, 'all', 0));
    out[`${name}_chefer_math_ms`] = chefer.ms;
    out[`${name}_grad_rollout_after_forward_ms`] = backward.ms + gradRollout.ms;
    out[`${name}_chefer_after_forward_ms`] = backward.ms + chefer.ms;
    out[`${name}_chefer_over_forward`] = (backward.ms + chefer.ms) / fwd.ms;
    // LRP family (engine/explain/lrp, methods/lrp-maps.ts). The relevance session recomputes the forward itself, so
    // `lrp_run_ms` is forward + relevance pass; transformer-attribution and gradcam also need the backward above.
    t0 = performance.now();
    await grads.lrp.prepare(image);
    out[`${name}_lrp_build_ms`] = performance.now() - t0;
    const lrpRun = await timed(reps, () => grads.lrp.relevance(image, top));
    out[`${name}_lrp_run_ms`] = lrpRun.ms;
    const cams = lrpRun.value.cams;
    const ta = await timed(reps, () => transformerAttribution(cams, g.visionGrads, 0, prefixTokens));
    const plrp = await timed(reps, () => partialLrp(cams, prefixTokens));
    const raw = await timed(reps, () => rawAttention(g.vision, prefixTokens));
    const gcam = await timed(reps, () => attentionGradCam(g.vision, g.visionGrads, prefixTokens));
    // attn-lrp (lrp/attn-*.ts): one session of forward + modified backward to the pixels, with LXT's map (CP-LRP)
    // and AttnLRP's attention rules; like the relevance session it recomputes the forward.
    const attn: Record<string, number> = {};
    for (const rule of ['cp', 'attnlrp'] as const) {
      t0 = performance.now();
      await grads.attnLrp.prepare(image, rule);
      out[`${name}_attn_lrp_${rule}_build_ms`] = performance.now() - t0;
      attn[rule] = (await timed(reps, () => grads.attnLrp.relevance(image, top, rule))).ms;
    }
    const after: Record<string, number> = {
      'transformer-attribution': backward.ms + lrpRun.ms + ta.ms,
      'partial-lrp': lrpRun.ms + plrp.ms,
      'raw-attention': raw.ms,
      gradcam: backward.ms + gcam.ms,
      'attn-lrp': attn.cp,
      'attn-lrp-attnlrp': attn.attnlrp,
    };
    for (const [m, v] of Object.entries(after)) {
      out[`${name}_${m}_after_forward_ms`] = v;
      out[`${name}_${m}_over_forward`] = v / fwd.ms;
    }
    // End to end as `heed explain --compare` times them: each map method's own explain run (its forward, gradient /
    // relevance passes and the method, after a warm-up run) relative to one plain forward pass.
    const compared = await compareMethods(model, grads, image, { classIndex: top, repeat: reps });
    for (const m of compared.methods) {
      out[`${name}_compare_${m.method}_wall_ms`] = m.wallMs;
      out[`${name}_compare_${m.method}_over_forward`] = m.wallMs / fwd.ms;
    }
    // --compare leaves out the methods that give no single map (heads, distance); time their own explain runs the
    // same way (one method per run, forward included, median after a warm-up) so that every method has a ratio.
    for (const method of NON_MAP_METHODS) {
      const run = await timed(reps, () => explainWithModel(model, grads, image, { classIndex: top, methods: [method] }));
      out[`${name}_compare_${method}_wall_ms`] = run.ms;
      out[`${name}_compare_${method}_over_forward`] = run.ms / fwd.ms;
    }
    // For comparison: one single-session VJP run (forward + backward together), as used for CLIP and fixed batches.
    t0 = performance.now();
    await grads.forClasses(image, [top]);
    out[`${name}_vjp_single_build_ms`] = performance.now() - t0;
    out[`${name}_vjp_single_run_ms`] = (await timed(reps, () => grads.forClasses(image, [top]))).ms;
  } finally {
    await grads.release();
    await model.release();
  }
  return out;
}

export async function benchExplain(): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'heed-bench-explain-'));
  try {
    const imagePath = join(dir, 'image.png');
    // A 256×192 noisy image: the processors resize it to 224×224 as they would a photo.
    const w = 256;
    const h = 192;
    const px = Buffer.alloc(w * h * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 2654435761) >>> 24;
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(imagePath);
    return {
      ...(await benchModel('vit_tiny', vitTinyConfig(0), imagePath, 5)),
      ...(await benchModel('vit_b16', vitB16Config(0), imagePath, 3)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// `node dist/bench/explain.js` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  benchExplain().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
