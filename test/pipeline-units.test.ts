// Fast unit tests of the pipeline's pieces: the float16 boundary, latents validation, image size rules, model-folder
// errors, and the PNG conversion.
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { floatToHalf, halfToFloat, floatsToHalf, halfsToFloat } from '../engine/diffusion/boundary.js';
import { halfToFloat as npyHalfToFloat, encodeNpy } from '../engine/io/npy.js';
import { latentShape, loadLatents, seededLatents, validateLatentData, ImageSizeError, LatentsError } from '../engine/diffusion/latents.js';
import { resolveModelFolder, ModelFolderError } from '../engine/diffusion/folder.js';
import { imageToPng, imageToRgb8 } from '../engine/diffusion/vae.js';
import { referenceDir, requireReference } from './helpers/reference.js';

describe('pipeline units', () => {
  describe('float16 boundary', () => {
    it('converts known values with round-to-nearest-even', () => {
      const cases: [number, number][] = [
        [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff],
        [65519.99, 0x7bff], // below the midpoint to 65536: stays finite
        [65520, 0x7c00], // exact midpoint between 65504 and 65536 (2^16, not representable): ties to even → Inf
        [1e6, 0x7c00], [-Infinity, 0xfc00], [2 ** -14, 0x0400], [2 ** -24, 0x0001],
        [2 ** -25, 0x0000], // midpoint between 0 and the smallest subnormal: ties to even (0)
        [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002], // 1.5 ulp: tie between 1 and 2 → even 2
        [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10 → even (1)
        [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 and 1+2^-9 → even mantissa 2
        [0.1, 0x2e66], [0.18215, 0x31d4], [-3.140625, 0xc248],
      ];
      for (const [v, h] of cases) assert.equal(floatToHalf(v), h, `${v} → 0x${h.toString(16)}, got 0x${floatToHalf(v).toString(16)}`);
      assert.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))));
    });

    it('round-trips every finite half exactly and agrees with the .npy decoder', () => {
      for (let h = 0; h < 0x10000; h++) {
        const e = (h >> 10) & 0x1f;
        if (e === 31 && (h & 0x3ff) !== 0) continue; // NaNs
        const f = halfToFloat(h);
        assert.equal(floatToHalf(f), h);
        assert.ok(Object.is(f, npyHalfToFloat(h)), `0x${h.toString(16)}`);
      }
    });

    it('rounds random float32 values to the nearer neighbouring half', () => {
      let s = 12345;
      for (let i = 0; i < 20000; i++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        const x = Math.fround((s / 2 ** 32) * 2 ** ((s % 42) - 26)); // magnitudes 2^-26 .. 2^16
        const h = floatToHalf(x);
        if (h === 0x7c00) {
          assert.ok(x >= 65520, `${x} overflowed`);
          continue;
        }
        const err = Math.abs(halfToFloat(h) - x);
        assert.ok(err <= Math.abs(halfToFloat(h + 1) - x), `x=${x}: the half above is nearer`);
        if (h > 0) assert.ok(err <= Math.abs(halfToFloat(h - 1) - x), `x=${x}: the half below is nearer`);
      }
      assert.deepEqual(Array.from(halfsToFloat(floatsToHalf([1, -0.5, 3]))), [1, -0.5, 3]);
    });
  });

  describe('latents', () => {
    it('latent shape is size/8 and sizes must be multiples of 8', () => {
      assert.deepEqual(latentShape(512, 768), [1, 4, 96, 64]);
      assert.throws(() => latentShape(500, 512), (e: unknown) => e instanceof ImageSizeError && /500 is not a multiple of 8.*496 or 504/.test(e.message));
      assert.throws(() => latentShape(0, 512), ImageSizeError);
    });

    it('seeded latents continue one generator stream', () => {
      const { latents, generator } = seededLatents(7, [1, 4, 2, 2]);
      const again = seededLatents(7, [1, 4, 2, 2]);
      assert.deepEqual(latents, again.latents);
      assert.notDeepEqual(generator.randn([1, 1, 2, 2]), seededLatents(7, [1, 1, 2, 2]).latents);
    });

    it('rejects wrong shapes (with a size hint), non-finite values and non-float files', () => {
      const dir = mkdtempSync(join(tmpdir(), 'heed-latents-'));
      try {
        const good = join(dir, 'good.npy');
        writeFileSync(good, encodeNpy(new Float32Array(4 * 8 * 8).fill(0.5), [1, 4, 8, 8]));
        assert.equal(loadLatents(good, [1, 4, 8, 8]).length, 256);
        assert.throws(() => loadLatents(good, [1, 4, 64, 64]),
          (e: unknown) => e instanceof LatentsError && /shape \[1, 4, 8, 8\].*needs \[1, 4, 64, 64\].*--size 64x64/.test(e.message));
        const bad = new Float32Array(256).fill(1);
        bad[17] = NaN;
        bad[30] = Infinity;
        const badPath = join(dir, 'bad.npy');
        writeFileSync(badPath, encodeNpy(bad, [1, 4, 8, 8]));
        assert.throws(() => loadLatents(badPath, [1, 4, 8, 8]), (e: unknown) => e instanceof LatentsError && /2 non-finite value\(s\) \(first at flat index 17/.test(e.message));
        const ints = join(dir, 'ints.npy');
        writeFileSync(ints, encodeNpy(new Int32Array(256), [1, 4, 8, 8]));
        assert.throws(() => loadLatents(ints, [1, 4, 8, 8]), /int32 values; latents must be a float array/);
        assert.throws(() => loadLatents(join(dir, 'missing.npy'), [1, 4, 8, 8]), (e: unknown) => e instanceof LatentsError && /cannot use/.test(e.message));
        assert.throws(() => validateLatentData(new Float32Array(10), [1, 4, 8, 8], 'x'), /hold 10 values/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('model folder', () => {
    const ref = referenceDir();
    const onnx = ref ? join(ref, 'sd-tiny-v1', 'onnx') : '';

    it('resolves the reference layout (also from its parent folder)', function () {
      const refDir = requireReference(this);
      const f = resolveModelFolder(onnx);
      assert.equal(f.unet, join(onnx, 'unet', 'model.onnx'));
      assert.equal(f.vaeScalingFactor, 0.18215);
      assert.equal(f.defaultImageSize, 512);
      assert.equal(f.schedulerConfig._class_name, 'PNDMScheduler');
      assert.equal(resolveModelFolder(join(refDir, 'sd-tiny-v1')).root, onnx);
    });

    it('names the missing file and the expected layout', function () {
      requireReference(this);
      const dir = mkdtempSync(join(tmpdir(), 'heed-folder-'));
      try {
        for (const c of ['model_index.json', 'text_encoder', 'tokenizer', 'scheduler', 'vae_decoder']) symlinkSync(join(onnx, c), join(dir, c));
        assert.throws(() => resolveModelFolder(dir),
          (e: unknown) => e instanceof ModelFolderError && /no unet\/ folder \(missing unet\/model\.onnx\).*Expected the diffusers\/Optimum ONNX layout/.test(e.message));
        mkdirSync(join(dir, 'unet'));
        writeFileSync(join(dir, 'unet', 'unet_fp16.onnx'), '');
        assert.throws(() => resolveModelFolder(dir), /missing unet\/model\.onnx.*It holds unet_fp16\.onnx: rename/);
        rmSync(join(dir, 'unet'), { recursive: true });
        symlinkSync(join(onnx, 'unet'), join(dir, 'unet'));
        rmSync(join(dir, 'scheduler'));
        assert.throws(() => resolveModelFolder(dir), /missing scheduler\/scheduler_config\.json.*prediction_type/);
        symlinkSync(join(onnx, 'scheduler'), join(dir, 'scheduler'));
        writeFileSync(join(dir, 'model_index.json.bak'), '');
        rmSync(join(dir, 'model_index.json'));
        writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionXLPipeline', text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'] }));
        // An SDXL model_index is read as SDXL, whose second encoder this SD folder lacks.
        assert.throws(() => resolveModelFolder(dir), /no text_encoder_2\/ folder \(missing text_encoder_2\/model\.onnx\)/);
        rmSync(join(dir, 'model_index.json'));
        assert.match(resolveModelFolder(dir).warnings.join(' '), /no model_index\.json/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      assert.throws(() => resolveModelFolder(join(tmpdir(), 'no-such-heed-model')), /model folder not found/);
    });
  });

  it('image → uint8 is round(x·255) with numpy half-to-even, and PNG decodes back', async () => {
    // float32(0.0019607844)·255 = 0.5 and float32(0.0098039219)·255 = 2.5 exactly: numpy gives 0 and 2 (Math.round: 1, 3).
    const image = { width: 2, height: 1, data: Float32Array.from([0, 1, 0.5, 0.0019607844296842813, 0.009803921915590763, 0.2]) };
    assert.deepEqual(Array.from(imageToRgb8(image)), [0, 255, 128, 0, 2, 51]);
    const png = await imageToPng(image);
    const raw = await sharp(png).raw().toBuffer();
    assert.deepEqual(Array.from(raw), [0, 255, 128, 0, 2, 51]);
  });
});
