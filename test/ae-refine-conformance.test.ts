// Attend-and-Excite runs whose iterative refinement ENDS EARLY (the loss meets the step's target before
// max_refinement_steps), against diffusers v0.21.4 on the public tiny SD: test/fixtures/ae-refine/make_ae_refine.py
// records every loss evaluation and every update of StableDiffusionAttendAndExcitePipeline. The shared reference only
// has a refinement that runs out its 20 iterations, where a loop that stops one update early looks the same.
// Each event must match in order and kind, each loss to 1e-5 (relative), and the latents after each update, entering
// each step's denoising call and at the end to 1e-5 of their abs-max.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { AttendExcite, AE_DEFAULTS } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { relToMax } from './helpers/compare.js';

const FIXTURES = resolve(fileURLToPath(new URL('../../test/fixtures/ae-refine/', import.meta.url)));

interface RefEvent {
  step: number;
  phase: 'main' | 'refine';
  kind: 'loss' | 'update';
  loss: number;
  scores?: number[];
  step_size?: number;
  iteration?: number;
  latents_index?: number | null;
}

interface RefCase {
  case: string;
  prompt: string;
  negative_prompt: string;
  token_indices: number[];
  guidance_scale: number;
  num_inference_steps: number;
  height: number;
  width: number;
  latent_shape: [number, number, number, number];
  attn_res: [number, number];
  max_iter_to_alter: number;
  thresholds: Record<string, number>;
  scale_factor: number;
  max_refinement_steps: number;
  timesteps: number[];
  refinements: Record<string, { loss_evals: number; updates: number }>;
  npy: { file: string; initial: number; updates: [number, number]; steps: [number, number]; final: number };
  events: RefEvent[];
}


const CASES = ['refine_step0', 'refine_steps_0_10_20'];

describe('Attend-and-Excite with early-ending refinement vs diffusers (sd-tiny-v1, own fixtures)', function () {
  let ref: string;
  let pipeline: StableDiffusionPipeline;

  before(async function () {
    ref = requireReference(this);
    pipeline = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1/onnx'));
  });
  after(async function () {
    await pipeline?.dispose();
  });

  for (const name of CASES) {
    it(`${name}: every loss evaluation and update, the latents after each, per step and at the end`, async function () {
      const metaPath = join(FIXTURES, `${name}.json`);
      assert.ok(existsSync(metaPath), `missing fixture ${metaPath}: run test/fixtures/ae-refine/make_ae_refine.py`);
      const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as RefCase;
      const stack = readNpyFloat32(join(FIXTURES, meta.npy.file));
      const [, c, h, w] = meta.latent_shape;
      const size = c * h * w;
      const at = (k: number) => stack.data.subarray(k * size, (k + 1) * size);
      assert.equal(meta.attn_res[0], meta.attn_res[1], 'square attn_res');
      const thresholds: Record<number, number> = {};
      for (const [k, v] of Object.entries(meta.thresholds)) thresholds[Number(k)] = v;

      const run = await AttendExcite.create(pipeline, meta.latent_shape, {
        tokenIndices: meta.token_indices, ...AE_DEFAULTS, maxIterToAlter: meta.max_iter_to_alter, thresholds,
        scaleFactor: meta.scale_factor, maxRefinementSteps: meta.max_refinement_steps, resolution: meta.attn_res[0],
        loss: DEFAULT_AE_LOSS,
      });
      const updates: Float32Array[] = [];
      run.onUpdate = (_event, latentsAfter) => updates.push(latentsAfter.slice());
      const stepLatents: Float32Array[] = [];
      try {
        const result = await pipeline.generate({
          prompt: meta.prompt, negativePrompt: meta.negative_prompt, steps: meta.num_inference_steps,
          guidance: meta.guidance_scale, width: meta.width, height: meta.height, latents: at(meta.npy.initial).slice(),
          beforeStep: async (ctx) => {
            const out = await run.hook(ctx);
            stepLatents.push((out ?? ctx.latents).slice());
            return out;
          },
        });
        assert.deepEqual(result.timesteps, meta.timesteps, 'timesteps');

        // 1. The event sequence: same steps, phases, kinds and refinement iterations, in the same order.
        const seq = (e: { step: number; phase: string; kind: string }) => `${e.step}/${e.phase}/${e.kind}`;
        assert.deepEqual(run.events.map(seq), meta.events.map(seq), 'A&E event sequence (step/phase/kind)');
        let worstLoss = 0;
        let worstScore = 0;
        run.events.forEach((e, k) => {
          const x = meta.events[k];
          if (x.phase === 'refine' && x.iteration !== undefined) assert.equal(e.iteration, x.iteration, `event ${k} iteration`);
          const lossErr = Math.abs(e.loss - x.loss) / Math.max(Math.abs(x.loss), 1e-12);
          worstLoss = Math.max(worstLoss, lossErr);
          assert.ok(lossErr <= 1e-5, `event ${k} (${seq(x)}): loss ${e.loss} vs diffusers ${x.loss}`);
          if (x.kind === 'loss' && x.scores) {
            x.scores.forEach((s, j) => { worstScore = Math.max(worstScore, Math.abs((e.scores?.[j] ?? NaN) - s)); });
          }
          if (x.kind === 'update' && x.step_size !== undefined) {
            assert.ok(Math.abs((e.stepSize ?? NaN) - x.step_size) < 1e-9, `event ${k} step size ${e.stepSize} vs ${x.step_size}`);
          }
        });
        assert.ok(worstScore < 1e-5, `subject scores differ by up to ${worstScore}`);

        // 2. The latents after every update, entering every step's denoising call, and at the end.
        // (The fixture stores the latents of every update, or for long refinements their first and last: the per-step
        // latents and every loss evaluation in between check the others.)
        const refUpdates = meta.events.filter((e) => e.kind === 'update');
        assert.equal(updates.length, refUpdates.length, 'number of updates');
        let worstUpdate = 0;
        let compared = 0;
        refUpdates.forEach((x, k) => {
          if (x.latents_index === undefined || x.latents_index === null) return;
          const e = relToMax(updates[k], at(x.latents_index));
          worstUpdate = Math.max(worstUpdate, e);
          compared++;
          assert.ok(e <= 1e-5, `latents after update ${k} (step ${x.step} ${x.phase}): error ${e.toExponential(2)} of their abs-max`);
        });
        assert.equal(compared, meta.npy.updates[1] - meta.npy.updates[0], 'every stored update compared');
        const [s0, s1] = meta.npy.steps;
        assert.equal(stepLatents.length, s1 - s0, 'number of steps');
        let worstStep = 0;
        stepLatents.forEach((z, k) => {
          const e = relToMax(z, at(s0 + k));
          worstStep = Math.max(worstStep, e);
          assert.ok(e <= 1e-5, `latents entering step ${k}'s denoising call: error ${e.toExponential(2)} of their abs-max`);
        });
        const fin = relToMax(result.latents, at(meta.npy.final));
        const refined = Object.entries(meta.refinements).map(([s, r]) => `step ${s}: ${r.updates} updates`).join(', ');
        console.log(`      ${name} (${meta.timesteps.length} timesteps, ${h}x${w} latents, refinement ${refined}): ` +
          `${run.events.length} events; loss rel ≤ ${worstLoss.toExponential(2)}, scores ≤ ${worstScore.toExponential(2)}; ` +
          `latents after ${compared} updates ≤ ${worstUpdate.toExponential(2)}, per step ≤ ${worstStep.toExponential(2)}, final ${fin.toExponential(2)} (of abs-max)`);
        assert.ok(fin <= 1e-5, `final latents: error ${fin.toExponential(2)} of their abs-max`);
      } finally {
        await run.dispose();
      }
    });
  }
});
