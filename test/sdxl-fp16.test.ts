// An fp16 SDXL folder: the tiny SDXL export converted to float16 as a whole (weights, constants, inputs and outputs;
// test/helpers/float16.ts, the way onnxconverter-common's convert_float_to_float16 does it, giving Optimum's `--fp16`
// interface) loads and runs, and its outputs stay close to diffusers' fp32 reference (tiny/ref, the "zeros" case).
// Tolerances are float16 ones: half rounding of every weight and activation (2^-11 relative each) accumulated over
// 2-3 encoder layers, 4 UNet calls and the VAE.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { StableDiffusionPipeline, type GenerateResult } from '../engine/diffusion/pipeline.js';
import { float16Folder } from './helpers/float16.js';
import { DataType, toNumbers } from '../engine/onnx/tensor.js';
import { seededLatents } from '../engine/diffusion/latents.js';
import { sdxlTimeIds } from '../engine/diffusion/sdxl-conditioning.js';
import { AE_DEFAULTS, AttendExcite } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));
const REF = join(FIXTURE, 'ref');
const r = (name: string): Float32Array => readNpyFloat32(join(REF, name)).data;
const meta = JSON.parse(readFileSync(join(REF, 'meta.json'), 'utf8')) as { prompt: string; height: number; width: number; steps: number; guidance_scale: number };

function rel(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

describe('float16 constants in shape folding', () => {
  it('are read as their values, not their bit patterns (1, -2, 32768, 2^-24, bfloat16 1.5)', () => {
    assert.deepEqual(toNumbers({ dataType: DataType.FLOAT16, dims: [4], data: new Uint16Array([0x3c00, 0xc000, 0x7800, 0x0001]) }), [1, -2, 32768, 2 ** -24]);
    assert.deepEqual(toNumbers({ dataType: DataType.BFLOAT16, dims: [1], data: new Uint16Array([0x3fc0]) }), [1.5]);
  });
});

describe('SDXL fp16 folder (tiny export converted to float16) vs the fp32 diffusers reference', function () {
  this.timeout(600_000);
  let tmp: string;
  let pipe: StableDiffusionPipeline;
  let res: GenerateResult;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'heed-sdxl-fp16-'));
    const folder = float16Folder(FIXTURE, join(tmp, 'sdxl-fp16'), ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder']);
    pipe = await StableDiffusionPipeline.load(folder, { threads: 1 });
    res = await pipe.generate({
      prompt: meta.prompt, guidance: meta.guidance_scale, steps: meta.steps, width: meta.width, height: meta.height,
      latents: join(REF, 'latents_init.npy'), maps: true,
    });
  });
  after(async () => {
    await pipe?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('reads float16 inputs and outputs from the graphs (ids and timestep stay integer)', () => {
    assert.equal(pipe.architecture, 'sdxl');
    assert.equal(pipe.unet.io.sample.type, 'float16');
    assert.equal(pipe.unet.io.timestep.type, 'int64');
    assert.ok(res.warnings.some((w) => /fp16|float16|upcast/i.test(w)), `warnings: ${res.warnings.join(' | ')}`);
  });

  it('outputs stay within float16 tolerances of the fp32 reference', () => {
    const emb = rel(res.textEmbeddings.cond, r('zeros_prompt_embeds.npy'));
    const pooled = rel(res.added?.cond.textEmbeds ?? new Float32Array(), r('zeros_pooled_prompt_embeds.npy'));
    const lat = rel(res.latents, r('zeros_final_latents.npy'));
    const img = rel(res.image.data, r('zeros_image.npy'));
    console.log(`      fp16 vs fp32 reference (max|Δ|/max|ref|): prompt embeds ${emb.toExponential(2)}, pooled ${pooled.toExponential(2)}, final latents ${lat.toExponential(2)}, image ${img.toExponential(2)}`);
    assert.ok(emb > 0 && emb < 5e-3, `prompt embeds ${emb}`);
    assert.ok(pooled > 0 && pooled < 5e-3, `pooled ${pooled}`);
    assert.ok(lat > 0 && lat < 2e-2, `final latents ${lat}`);
    assert.ok(img > 0 && img < 2e-2, `image ${img}`);
  });

  it('DAAM maps come out of the fp16 UNet\'s attention (float16 probabilities read at the boundary)', () => {
    const store = res.attention;
    assert.ok(store);
    const cat = res.prompt.words.find((w) => w.word === 'cat')?.tokenIndices ?? [];
    const map = store.wordMap(cat);
    assert.ok(map.every((v) => Number.isFinite(v) && v >= 0) && map.some((v) => v > 0));
  });

  it('Attend-and-Excite on the fp16 UNet: step-0 loss and ∂loss/∂latents close to the fp32 UNet\'s (VJP in float16)', async () => {
    const shape: [number, number, number, number] = [1, 4, 32, 32];
    const opts = {
      tokenIndices: [2, 5], maxIterToAlter: 1, thresholds: {}, scaleFactor: AE_DEFAULTS.scaleFactor,
      maxRefinementSteps: 0, resolution: 8, loss: DEFAULT_AE_LOSS,
    };
    const fp32 = await StableDiffusionPipeline.load(FIXTURE, { threads: 1 });
    const at = async (p: StableDiffusionPipeline) => {
      const ae = await AttendExcite.create(p, shape, opts);
      try {
        const enc = await p.encodePrompts(meta.prompt, undefined);
        assert.ok(enc.pooled);
        const added = { textEmbeds: enc.pooled.cond, timeIds: sdxlTimeIds(p.unet.io, enc.pooled.dim, { height: 256, width: 256 }) };
        return await ae.lossAndGradient(seededLatents(11, shape).latents, 751, enc.cond, enc.dims, added);
      } finally {
        await ae.dispose();
      }
    };
    try {
      const want = await at(fp32);
      const got = await at(pipe);
      const g = rel(Float32Array.from(got.grad), Float32Array.from(want.grad));
      console.log(`      A&E fp16 vs fp32 UNet: loss ${got.loss.toFixed(6)} vs ${want.loss.toFixed(6)}, gradient max|Δ|/max|ref| ${g.toExponential(2)}`);
      assert.ok(Math.abs(got.loss - want.loss) < 1e-3, `loss ${got.loss} vs ${want.loss}`);
      assert.ok(g > 0 && g < 5e-2, `gradient ${g}`);
    } finally {
      await fp32.dispose();
    }
  });
});
