// Export variants the pipeline must read from the models rather than assume: float16 inputs/outputs, an int64
// timestep and int64 input ids (Optimum), and a UNet/text encoder fixed to batch 1 (CFG then runs as two calls).
// Each variant is the reference model wrapped by graph surgery (Casts at the boundary, fixed dims), so its maths
// is known: the fixed-batch and int64 variants must give the fp32 numbers, the fp16 one the fp32 numbers up to
// float16 rounding of the boundary tensors. Also: exposing attention outputs does not change the UNet output.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataType } from '../engine/onnx/tensor.js';
import { StableDiffusionPipeline, type GenerateOptions, type GenerateResult } from '../engine/diffusion/pipeline.js';
import { Unet } from '../engine/diffusion/unet.js';
import { torchRandn } from '../engine/diffusion/random.js';
import { requireReference } from './helpers/reference.js';
import { diff } from './pipeline-helpers.js';
import { fixBatch, retypeInput, retypeOutput, variantFolder } from './helpers/variants.js';

describe('SD export variants: fp16 boundary, int64 timestep/ids, fixed batch 1 (small latents)', function () {
  let ref = '';
  let tmp = '';
  let base: GenerateResult;
  const opts: GenerateOptions = { prompt: 'a cat and a frog', seed: 11, steps: 3, width: 64, height: 64, maps: true };

  before(async function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-variants-'));
    const pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1', 'onnx'), { threads: 1 });
    try {
      base = await pipe.generate(opts);
    } finally {
      await pipe.dispose();
    }
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function run(folder: string): Promise<{ res: GenerateResult; pipe: StableDiffusionPipeline }> {
    const pipe = await StableDiffusionPipeline.load(folder, { threads: 1 });
    try {
      return { res: await pipe.generate(opts), pipe };
    } finally {
      await pipe.dispose();
    }
  }

  it('int64 timestep and input ids, fixed batch 1: same numbers as the fp32 batch-2 run', async () => {
    const folder = variantFolder(ref, join(tmp, 'int64-batch1'), {
      text_encoder: (g) => {
        retypeInput(g, 'input_ids', DataType.INT64);
        fixBatch(g, ['input_ids']);
      },
      unet: (g) => {
        retypeInput(g, 'timestep', DataType.INT64);
        fixBatch(g, ['sample', 'timestep', 'encoder_hidden_states', 'out_sample']);
      },
    });
    const { res, pipe } = await run(folder);
    assert.equal(pipe.unet.io.fixedBatch, 1);
    assert.equal(pipe.unet.io.timestep.type, 'int64');
    for (const [name, a, b] of [
      ['text embeddings', res.textEmbeddings.cond, base.textEmbeddings.cond],
      ['noise_pred uncond step0', res.noisePredictions[0].uncond ?? new Float32Array(), base.noisePredictions[0].uncond ?? new Float32Array()],
      ['final latents', res.latents, base.latents],
      ['image', res.image.data, base.image.data],
      ['DAAM global', res.attention?.daamGlobal().data ?? new Float32Array(), base.attention?.daamGlobal().data ?? new Float32Array()],
      ['A&E-grid map step 0', res.attention?.stepMap(0, res.aeResolution).data ?? new Float32Array(), base.attention?.stepMap(0, base.aeResolution).data ?? new Float32Array()],
    ] as const) {
      const d = diff(a, b);
      assert.ok(a.length > 0 && d.rel <= 1e-5, `${name}: rel ${d.rel}`);
    }
  });

  it('float16 inputs/outputs are converted at the boundary (fp32 numbers up to half rounding)', async () => {
    const F16 = DataType.FLOAT16;
    const folder = variantFolder(ref, join(tmp, 'fp16'), {
      text_encoder: (g) => retypeOutput(g, 'last_hidden_state', F16),
      unet: (g) => {
        retypeInput(g, 'sample', F16);
        retypeInput(g, 'encoder_hidden_states', F16);
        retypeInput(g, 'timestep', F16);
        retypeOutput(g, 'out_sample', F16);
      },
      vae_decoder: (g) => {
        retypeInput(g, 'latent_sample', F16);
        retypeOutput(g, 'sample', F16);
      },
    });
    const { res, pipe } = await run(folder);
    assert.equal(pipe.unet.io.sample.type, 'float16');
    const emb = diff(res.textEmbeddings.cond, base.textEmbeddings.cond);
    // One rounding to half: relative error ≤ 2^-11 of each value.
    assert.ok(emb.maxAbs > 0 && emb.maxAbs <= emb.refMax * 2 ** -11, `embeddings: ${JSON.stringify(emb)}`);
    const lat = diff(res.latents, base.latents);
    assert.ok(lat.rel > 0 && lat.rel < 5e-3, `final latents: ${JSON.stringify(lat)}`);
    const img = diff(res.image.data, base.image.data);
    assert.ok(img.maxAbs < 5e-3, `image: ${JSON.stringify(img)}`);
    console.log(`      fp16 boundary vs fp32: embeddings rel ${emb.rel.toExponential(2)}, final latents rel ${lat.rel.toExponential(2)}, image max|Δ| ${img.maxAbs.toExponential(2)}`);
  });

  it('exposing every attention probability (cross and self) leaves the UNet output unchanged', async () => {
    const unet = Unet.open(join(ref, 'sd-tiny-v1', 'onnx', 'unet', 'model.onnx'), { intraOpThreads: 1 });
    try {
      const input = {
        sample: torchRandn([2, 4, 16, 16], 3), batch: 2, height: 16, width: 16, timestep: 501,
        encoderHiddenStates: torchRandn([2, 77, 32], 4), sequence: 77, hidden: 32,
      };
      const plain = await unet.run(input);
      const sites = unet.attentionSites(16, 16);
      assert.equal(sites.length, 32);
      assert.deepEqual([sites.filter((s) => s.kind === 'cross').length, sites.filter((s) => s.kind === 'self').length], [16, 16]);
      const exposed = await unet.run(input, sites);
      assert.equal(unet.exposedSites.length, 32);
      const d = diff(exposed.noise, plain.noise);
      console.log(`      exposed vs plain UNet output: max|Δ| ${d.maxAbs.toExponential(2)} (max |out| ${d.refMax.toPrecision(3)})`);
      assert.ok(d.rel <= 1e-6, `rel ${d.rel}`);
      // The probabilities are softmax rows: non-negative and summing to 1 over the keys.
      for (const s of sites) {
        const p = exposed.attention.get(s.probs);
        assert.ok(p);
        assert.deepEqual(p.dims, [2 * s.heads, s.queryLength, s.keyLength]);
        for (let row = 0; row < p.dims[0] * p.dims[1]; row += 37) {
          let sum = 0;
          for (let k = 0; k < s.keyLength; k++) sum += p.data[row * s.keyLength + k];
          assert.ok(Math.abs(sum - 1) < 1e-5, `${s.modulePath} row ${row}: ${sum}`);
        }
      }
      // A later plain request reuses the exposing session (no reopen) and still gives the same output.
      const again = await unet.run(input);
      assert.equal(unet.exposedSites.length, 32);
      assert.ok(diff(again.noise, plain.noise).rel <= 1e-6);
    } finally {
      await unet.dispose();
    }
  });
});
