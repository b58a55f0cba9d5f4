// SynGen's binding loss as a guidance method, on the committed Shapes SD export: its ∂loss/∂latents through Heed's
// VJP graph against central finite differences of the loss through the plain UNet, the schedule the SynGen pipeline
// runs (one update per step for the first maxIterToAlter steps, constant step size, no refinement), the bindings a
// prompt yields, and the errors of options that do not fit it.
import { strict as assert } from 'node:assert';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { seededLatents } from '../engine/diffusion/latents.js';
import { AttendExcite } from '../engine/guidance/attend-excite.js';
import { synGenLoss } from '../engine/guidance/syngen-loss.js';
import { aeAggregate, type SiteProbs } from '../engine/attention/aggregate.js';
import { planExcite } from '../engine/jobs/excite.js';
import { HeedError } from '../engine/errors.js';
import { seededRandom } from './helpers/rng.js';

const SD = join(resolve(fileURLToPath(new URL('../../', import.meta.url))), 'models', 'shapes', 'sd');
const PROMPT = 'a red triangle and a green circle';
const SIZE = { width: 128, height: 128 };

describe('SynGen guidance (Shapes SD)', function () {
  let pipe: StableDiffusionPipeline;
  before(async function () {
    pipe = await StableDiffusionPipeline.load(SD);
  });
  after(async function () {
    await pipe?.dispose();
  });

  it('binds each colour to the noun after it and pushes both away from every other prompt token', async function () {
    const plan = await planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle', 'circle'], method: 'syngen' });
    assert.deepEqual(plan.bindings.map((b) => [b.noun, b.modifiers.map((m) => m.word)]), [['triangle', ['red']], ['circle', ['green']]]);
    assert.deepEqual(plan.options.bindings, [{ noun: [3], modifiers: [[2]] }, { noun: [7], modifiers: [[6]] }]);
    assert.deepEqual(plan.options.promptTokens, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(plan.options.thresholds, {}, 'no refinement');
    const given = await planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle', 'circle'], method: 'syngen', modifiers: { triangle: ['green'] } });
    assert.deepEqual(given.bindings.map((b) => [b.noun, b.modifiers.map((m) => m.word), b.source]), [['triangle', ['green'], 'given'], ['circle', ['green'], 'prompt']]);
  });

  it('refuses options that do not fit the method, naming the field', async function () {
    const field = (f: string) => (e: unknown) => e instanceof HeedError && e.kind === 'invalid_input' && e.field === f;
    await assert.rejects(planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle'], method: 'syngen', thresholds: { 0: 0.5 } }), field('excite.thresholds'));
    await assert.rejects(planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle'], method: 'syngen', maxRefinement: 3 }), field('excite.maxRefinement'));
    await assert.rejects(planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle'], modifiers: { triangle: ['red'] } }), field('excite.modifiers'));
    await assert.rejects(planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle'], method: 'syngen', modifiers: { circle: ['red'] } }), field('excite.modifiers'));
    await assert.rejects(planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle'], method: 'syngen', modifiers: { triangle: ['purple'] } }), field('excite.modifiers'));
    const lone = await planExcite(pipe, 'a triangle', SIZE, { subjects: ['triangle'], method: 'syngen' });
    await assert.rejects(AttendExcite.create(pipe, [1, 4, 16, 16], lone.options), field('excite.modifiers'));
  });

  it('∂loss/∂latents matches central finite differences of the loss through the plain UNet', async function () {
    const plan = await planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle', 'circle'], method: 'syngen', res: 16 });
    const ae = await AttendExcite.create(pipe, [1, 4, 16, 16], plan.options);
    try {
      const enc = await pipe.encodePrompts(PROMPT, '');
      const { latents } = seededLatents(3, [1, 4, 16, 16]);
      const t = 801;
      const lossAt = async (z: Float32Array): Promise<number> => {
        const out = await pipe.unetWithAttention(z, [1, 4, 16, 16], t, enc.cond, enc.dims, ae.sites);
        const probs: SiteProbs[] = ae.sites.map((site) => {
          const a = out.attention.get(site.probs);
          assert.ok(a, site.probs);
          return { site, data: a.data, dims: a.dims };
        });
        return synGenLoss(aeAggregate(probs, 16, 16, 1, 0).data, 16, 16, enc.dims[1], plan.options.bindings!, plan.options.promptTokens!).loss;
      };
      const r = await ae.lossAndGradient(latents, t, enc.cond, enc.dims);
      assert.ok(Math.abs(r.loss - (await lossAt(latents))) < 1e-5, 'the VJP forward gives the plain UNet\'s loss');
      const rand = seededRandom(11);
      for (let trial = 0; trial < 2; trial++) {
        const dir = Float32Array.from(latents, () => rand() - 0.5);
        const eps = 1e-2;
        const fd = ((await lossAt(Float32Array.from(latents, (v, i) => v + eps * dir[i]!))) - (await lossAt(Float32Array.from(latents, (v, i) => v - eps * dir[i]!)))) / (2 * eps);
        let an = 0;
        for (let i = 0; i < r.grad.length; i++) an += r.grad[i]! * dir[i]!;
        console.log(`      direction ${trial}: FD ${fd.toExponential(4)} vs VJP ${an.toExponential(4)}`);
        assert.ok(Math.abs(an) > 1e-6, 'the loss depends on the latents');
        assert.ok(Math.abs(fd - an) < 0.03 * Math.abs(an) + 1e-6, `direction ${trial}: FD ${fd} vs VJP ${an}`);
      }
    } finally {
      await ae.dispose();
    }
  });

  it('runs SynGen\'s schedule: one update per step for maxIterToAlter steps, constant step size, no scoring after', async function () {
    const plan = await planExcite(pipe, PROMPT, SIZE, { subjects: ['triangle', 'circle'], method: 'syngen', maxIterToAlter: 3, scaleFactor: 50 });
    const ae = await AttendExcite.create(pipe, [1, 4, 16, 16], plan.options);
    try {
      await pipe.generate({ prompt: PROMPT, steps: 6, guidance: 5, seed: 0, ...SIZE, beforeStep: ae.hook });
      const updates = ae.events.filter((e) => e.kind === 'update');
      assert.deepEqual(updates.map((e) => e.step), [0, 1, 2]);
      assert.ok(updates.every((e) => e.stepSize === 50 && e.phase === 'main'));
      assert.deepEqual(ae.events.filter((e) => e.kind === 'loss').map((e) => e.step), [0, 1, 2]);
      assert.ok(ae.events.every((e) => e.kind !== 'loss' || (e.bindingLosses?.length === 2 && e.scores?.length === 2)));
    } finally {
      await ae.dispose();
    }
  });
});
