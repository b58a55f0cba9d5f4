// Attend-and-Excite against diffusers/torch autograd on the reference tiny SD export: the step-0 maps, loss and
// ∂loss/∂latents, finite differences of the whole loss through the real UNet, and the full guided run.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { AttendExcite, AE_DEFAULTS } from '../engine/guidance/attend-excite.js';
import { aeLoss, DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { aeAggregate, type SiteProbs } from '../engine/attention/aggregate.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { seededRandom as rng } from './helpers/rng.js';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): { maxAbs: number; rel: number } {
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    refMax = Math.max(refMax, Math.abs(b[i]));
  }
  return { maxAbs, rel: maxAbs / refMax };
}


describe('Attend-and-Excite vs diffusers (sd-tiny-v1)', function () {
  let ref: string;
  let pipeline: StableDiffusionPipeline;
  let ae: AttendExcite;
  let latents: Float32Array;
  let cond: Float32Array;
  const dims: [number, number, number] = [1, 77, 32];

  before(async function () {
    ref = requireReference(this);
    pipeline = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1/onnx'));
    latents = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy')).data;
    cond = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/text_embeddings_cond.npy')).data;
    ae = await AttendExcite.create(pipeline, [1, 4, 64, 64], {
      tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: 5, resolution: 16, loss: DEFAULT_AE_LOSS,
    });
  });
  after(async function () {
    await ae?.dispose();
    await pipeline?.dispose();
  });

  it('step 0: maps, loss and ∂loss/∂latents match torch autograd', async function () {
    const meta = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/ref/meta.json'), 'utf8'));
    const r = await ae.lossAndGradient(latents, 901, cond, dims);
    const mapsRef = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/attn_maps_step0_16x16.npy')).data;
    const m = relErr(r.maps, mapsRef);
    assert.ok(m.rel < 1e-4, `maps rel ${m.rel}`);
    assert.ok(Math.abs(r.loss - meta.attend_and_excite.loss_step0_first_update) < 1e-5, `loss ${r.loss}`);
    const gradRef = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/grad_step0.npy')).data;
    const g = relErr(r.grad, gradRef);
    console.log(`      A&E step-0 gradient vs torch: max abs ${g.maxAbs.toExponential(2)}, rel to abs-max ${g.rel.toExponential(2)}; maps rel ${m.rel.toExponential(2)}`);
    assert.ok(g.rel < 1e-3, `gradient rel error ${g.rel}`);
  });

  it('∂loss/∂latents matches central finite differences of the loss through the plain UNet', async function () {
    const sites = ae.sites;
    const lossAt = async (z: Float32Array) => {
      const out = await pipeline.unetWithAttention(z, [1, 4, 64, 64], 901, cond, dims, sites);
      const probs: SiteProbs[] = sites.map((site) => {
        const a = out.attention.get(site.probs);
        assert.ok(a);
        return { site, data: a.data, dims: a.dims };
      });
      return aeLoss(aeAggregate(probs, 16, 16, 1, 0).data, 16, 16, 77, [2, 5]).loss;
    };
    const { grad } = await ae.lossAndGradient(latents, 901, cond, dims);
    const rand = rng(3);
    for (let trial = 0; trial < 2; trial++) {
      const dir = new Float32Array(latents.length).map(() => rand() - 0.5);
      const eps = 1e-2;
      const plus = Float32Array.from(latents, (v, i) => v + eps * dir[i]);
      const minus = Float32Array.from(latents, (v, i) => v - eps * dir[i]);
      const fd = ((await lossAt(plus)) - (await lossAt(minus))) / (2 * eps);
      let an = 0;
      for (let i = 0; i < grad.length; i++) an += grad[i] * dir[i];
      console.log(`      direction ${trial}: FD ${fd.toExponential(4)} vs VJP ${an.toExponential(4)}`);
      assert.ok(Math.abs(fd - an) < 0.03 * Math.abs(an) + 1e-6, `FD ${fd} vs VJP ${an}`);
    }
  });

  it('the guided run reproduces the reference loss trace and final latents', async function () {
    const meta = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/ref/meta.json'), 'utf8'));
    const run = await AttendExcite.create(pipeline, [1, 4, 64, 64], {
      tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: 5, resolution: 16, loss: DEFAULT_AE_LOSS,
    });
    try {
      const result = await pipeline.generate({
        prompt: 'a cat and a frog', negativePrompt: '', steps: 10, guidance: 7.5, width: 512, height: 512,
        latents: readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy')).data, beforeStep: run.hook,
      });
      const expected: { step: number; phase: string; kind: string; loss: number }[] = meta.attend_and_excite.events;
      assert.equal(run.events.length, expected.length, `event count ${run.events.length} vs ${expected.length}`);
      let worst = 0;
      run.events.forEach((e, k) => {
        const x = expected[k];
        assert.equal(e.step, x.step, `event ${k} step`);
        assert.equal(e.phase, x.phase, `event ${k} phase`);
        assert.equal(e.kind, x.kind, `event ${k} kind`);
        worst = Math.max(worst, Math.abs(e.loss - x.loss));
      });
      assert.ok(worst < 1e-4, `loss trace differs by up to ${worst}`);
      const first = relErr(run.firstUpdate?.latentsAfter ?? new Float32Array(), readNpyFloat32(join(ref, 'sd-tiny-v1/ref/ae_latents_after_first_update_step0.npy')).data);
      const step0 = relErr(run.latentsAfterStep0 ?? new Float32Array(), readNpyFloat32(join(ref, 'sd-tiny-v1/ref/ae_latents_after_ae_step0.npy')).data);
      const fin = relErr(result.latents, readNpyFloat32(join(ref, 'sd-tiny-v1/ref/ae_final_latents.npy')).data);
      console.log(`      loss trace max diff ${worst.toExponential(2)}; latents after first update rel ${first.rel.toExponential(2)}, ` +
        `after step 0 rel ${step0.rel.toExponential(2)}, final rel ${fin.rel.toExponential(2)}`);
      assert.ok(first.rel < 1e-5 && step0.rel < 1e-5, 'A&E step-0 latents');
      assert.ok(fin.rel < 1e-3, `final latents rel ${fin.rel}`);
    } finally {
      await run.dispose();
    }
  });
});
