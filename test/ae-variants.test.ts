// Attend-and-Excite on export variants of the reference UNet (graph surgery, test/helpers/variants.ts): a UNet fixed to
// batch 1 with an int64 timestep, and one with float16 inputs/outputs. The step-0 loss and ∂loss/∂latents must be torch
// autograd's (diffusers v0.21.4 on the fp32 model, ref/grad_step0.npy): exactly for batch 1 / int64, up to the float16
// rounding of the boundary tensors for fp16.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataType } from '../engine/onnx/tensor.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { AttendExcite, AE_DEFAULTS } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { fixBatch, retypeInput, retypeOutput, variantFolder, type Edit } from './helpers/variants.js';
import { relToMax } from './helpers/compare.js';

describe('Attend-and-Excite on export variants (fixed batch 1 + int64 timestep, fp16 boundary)', function () {
  let ref = '';
  let tmp = '';
  before(function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-ae-variants-'));
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const cases: { name: string; unet: Edit; lossTol: number; gradTol: number }[] = [
    {
      name: 'batch fixed to 1, int64 timestep',
      unet: (g) => {
        retypeInput(g, 'timestep', DataType.INT64);
        fixBatch(g, ['sample', 'timestep', 'encoder_hidden_states', 'out_sample']);
      },
      lossTol: 1e-5, gradTol: 1e-3, // the fp32 model's tolerances (ae-conformance.test.ts)
    },
    {
      name: 'float16 sample / timestep / encoder_hidden_states / out_sample',
      unet: (g) => {
        for (const n of ['sample', 'timestep', 'encoder_hidden_states']) retypeInput(g, n, DataType.FLOAT16);
        retypeOutput(g, 'out_sample', DataType.FLOAT16);
      },
      // Latents and embeddings rounded to half (relative 2^-11) move the maps, the loss and its gradient by about that.
      lossTol: 1e-3, gradTol: 1e-2, // measured 1.4e-4 and 1.4e-3
    },
  ];

  for (const c of cases) {
    it(`${c.name}: step-0 loss and ∂loss/∂latents match torch autograd`, async function () {
      const folder = variantFolder(ref, join(tmp, c.name.replace(/\W+/g, '-')), { unet: c.unet });
      const pipe = await StableDiffusionPipeline.load(folder, { threads: 2 });
      const ae = await AttendExcite.create(pipe, [1, 4, 64, 64], {
        tokenIndices: [2, 5], ...AE_DEFAULTS, maxIterToAlter: 5, resolution: 16, loss: DEFAULT_AE_LOSS,
      });
      try {
        const meta = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/ref/meta.json'), 'utf8'));
        const latents = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/latents_init.npy')).data;
        const cond = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/text_embeddings_cond.npy')).data;
        const r = await ae.lossAndGradient(latents, 901, cond, [1, 77, 32]);
        const lossErr = Math.abs(r.loss - meta.attend_and_excite.loss_step0_first_update);
        const g = relToMax(r.grad, readNpyFloat32(join(ref, 'sd-tiny-v1/ref/grad_step0.npy')).data);
        console.log(`      ${c.name}: loss |Δ| ${lossErr.toExponential(2)}, gradient ${g.toExponential(2)} of its abs-max`);
        assert.ok(lossErr < c.lossTol, `loss ${r.loss} vs ${meta.attend_and_excite.loss_step0_first_update}`);
        assert.ok(g < c.gradTol, `gradient error ${g} of its abs-max`);
      } finally {
        await ae.dispose();
        await pipe.dispose();
      }
    });
  }
});
