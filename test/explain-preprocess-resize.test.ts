// Images that need resizing: Heed's PIL resampler and transformers-processor reimplementation against arrays made by
// PIL 9.4 + transformers 4.33 (test/fixtures/preprocess/make_fixtures.py; the versions are in its header and in
// meta.json). Targets: resized uint8 pixels identical to PIL for every filter, up and down, non-square;
// `pixel_values` bit-identical (sha256 of the float32 bytes) and within 1e-6 where the array itself is stored; decoding
// of PNG (all modes) and JPEG inputs equal to PIL's. End to end: the reference tiny ViT and CLIP on a 160×120 image get
// Python's pixel_values and the logits of a plain onnxruntime run of model.onnx on them.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { readNpy } from '../engine/io/npy.js';
import { resizeLikePil, type ResampleFilter } from '../engine/image/resample.js';
import { decodeRgb, ImagePreprocessor } from '../engine/explain/preprocess.js';
import { fixedOutputSize, parseProcessorConfig } from '../engine/explain/image-processor.js';
import { ExplainError } from '../engine/explain/errors.js';
import { ExplainModel } from '../engine/explain/model.js';
import { requireReference } from './helpers/reference.js';

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/preprocess');

interface Meta {
  versions: Record<string, string>;
  images: Record<string, { file: string; width: number; height: number }>;
  resizes: { image: string; width: number; height: number; filter: ResampleFilter; code: number; file: string }[];
  processors: { name: string; image: string; config: Record<string, unknown>; class: string; dims: number[]; sha256: string; file?: string }[];
  jpeg: { file: string; decoded: string };
  modes: { mode: string; file: string; rgb: string }[];
  vit_tiny: { image: string; dims: number[]; sha256: string; sum: number; first: number[] };
  clip_tiny: { image: string; dims: number[]; sha256: string; first: number[] };
}

const meta = JSON.parse(readFileSync(join(FIXTURES, 'meta.json'), 'utf8')) as Meta;
const sha256 = (a: Float32Array): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe(`explain preprocessing of images that need resizing (vs Pillow ${meta.versions.pillow} + transformers ${meta.versions.transformers})`, function () {
  const image = (name: string) => decodeRgb(join(FIXTURES, meta.images[name].file));

  it('decodes the PNG inputs to their exact size (lossless)', async () => {
    for (const [name, info] of Object.entries(meta.images)) {
      const img = await image(name);
      assert.deepEqual([img.width, img.height, img.channels], [info.width, info.height, 3], name);
    }
  });

  for (const filter of ['nearest', 'box', 'bilinear', 'hamming', 'bicubic', 'lanczos'] as const) {
    it(`resizes exactly like PIL with ${filter} (up, down, non-square, mixed)`, async () => {
      const cases = meta.resizes.filter((r) => r.filter === filter);
      assert.ok(cases.length >= 6, 'fixture cases missing');
      for (const r of cases) {
        const src = await image(r.image);
        const out = resizeLikePil(src, r.width, r.height, filter);
        const want = readNpy(join(FIXTURES, r.file));
        assert.deepEqual(want.shape, [r.height, r.width, 3]);
        let differing = 0;
        for (let i = 0; i < out.data.length; i++) if (out.data[i] !== want.data[i]) differing++;
        assert.equal(differing, 0, `${r.image} → ${r.width}×${r.height} ${filter}: ${differing} of ${out.data.length} values differ from PIL`);
      }
      console.log(`      ${cases.length} cases, ${cases.map((r) => `${meta.images[r.image].width}×${meta.images[r.image].height}→${r.width}×${r.height}`).join(', ')}: identical`);
    });
  }

  describe('transformers image processors (ViT, DINO-style ViT, DeiT, CLIP, Bit/DINOv2)', function () {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'heed-preprocess-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    for (const p of meta.processors) {
      it(`${p.name}: ${p.class} ${JSON.stringify(p.config.size ?? 'default size')} on ${p.image} → ${p.dims.slice(2).join('×')}`, async () => {
        const folder = join(dir, p.name);
        mkdirSync(folder);
        writeFileSync(join(folder, 'preprocessor_config.json'), JSON.stringify(p.config));
        const prep = await ImagePreprocessor.fromFolder(folder);
        const got = await prep.prepare(join(FIXTURES, meta.images[p.image].file));
        assert.deepEqual(got.dims, p.dims);
        // When the output size does not depend on the input, the size predicted from the config is the real one.
        const fixed = fixedOutputSize(prep.spec);
        if (fixed) assert.deepEqual([fixed.height, fixed.width], p.dims.slice(2), 'fixedOutputSize');
        if (p.file) {
          const want = readNpy(join(FIXTURES, p.file));
          const d = maxAbsDiff(got.pixelValues, want.data as Float32Array);
          console.log(`      max |pixel_values − transformers| = ${d.toExponential(2)}`);
          assert.ok(d <= 1e-6, `max diff ${d}`);
        }
        assert.equal(sha256(got.pixelValues), p.sha256, 'pixel_values are not bit-identical to transformers\'');
        assert.deepEqual(got.originalSize, { height: meta.images[p.image].height, width: meta.images[p.image].width });
      });
    }
  });

  it('decodes a 4:2:0 JPEG like PIL (measured; libjpeg-turbo on both sides)', async () => {
    const got = await decodeRgb(join(FIXTURES, meta.jpeg.file));
    const want = readNpy(join(FIXTURES, meta.jpeg.decoded));
    let differing = 0;
    let maxDiff = 0;
    for (let i = 0; i < got.data.length; i++) {
      const d = Math.abs(got.data[i] - (want.data[i] as number));
      if (d) differing++;
      maxDiff = Math.max(maxDiff, d);
    }
    console.log(`      JPEG decode vs PIL: ${differing} of ${got.data.length} values differ, max |diff| ${maxDiff}`);
    assert.equal(differing, 0);
  });

  it('decodes grey, grey+alpha, RGBA and palette PNGs to the RGB that PIL\'s convert("RGB") gives', async () => {
    assert.equal(meta.modes.length, 4);
    for (const m of meta.modes) {
      const got = await decodeRgb(join(FIXTURES, m.file));
      const want = readNpy(join(FIXTURES, m.rgb));
      assert.deepEqual([got.height, got.width, 3], want.shape, m.mode);
      assert.deepEqual(got.data, want.data, `${m.mode} PNG decodes differently from PIL`);
    }
  });

  describe('bad preprocessor_config.json values name the key', function () {
    const bad = (config: Record<string, unknown>, pattern: RegExp, modelType?: string) => {
      assert.throws(() => parseProcessorConfig(config, 'preprocessor_config.json', modelType), (e: unknown) => {
        assert.ok(e instanceof ExplainError);
        assert.match((e as Error).message, pattern);
        return true;
      });
    };
    it('unsupported processors, sizes, filters and option combinations', () => {
      bad({ image_processor_type: 'SiglipImageProcessor' }, /`image_processor_type` SiglipImageProcessor is not supported/);
      bad({}, /no `image_processor_type`.*model_type "swin"/, 'swin');
      bad({ image_processor_type: 'CLIPImageProcessor', size: { height: 224, width: 224 } }, /`size` must give shortest_edge for CLIPImageProcessor/);
      bad({ image_processor_type: 'ViTImageProcessor', size: { shortest_edge: 224 } }, /`size` must give height and width for ViTImageProcessor/);
      bad({ image_processor_type: 'ViTImageProcessor', size: { height: 224 } }, /`size` must have the keys/);
      bad({ image_processor_type: 'ViTImageProcessor', resample: 7 }, /`resample` 7 is not a PIL filter code/);
      bad({ image_processor_type: 'DeiTImageProcessor', crop_size: { shortest_edge: 3 } }, /`crop_size` must give height and width/);
      bad({ image_processor_type: 'ViTImageProcessor', do_rescale: false }, /`do_rescale` false together with do_normalize true is not supported/);
      bad({ image_processor_type: 'ViTImageProcessor', image_mean: [0.5, 0.5] }, /`image_mean` must be a number or 3 numbers/);
    });
    it('missing keys take the class defaults; the class may come from config.json model_type', () => {
      const vit = parseProcessorConfig({}, 'p', 'vit');
      assert.equal(vit.className, 'ViTImageProcessor');
      assert.deepEqual([vit.size, vit.resample, vit.doCenterCrop, vit.mean], [{ kind: 'fixed', height: 224, width: 224 }, 'bilinear', false, [0.5, 0.5, 0.5]]);
      const deit = parseProcessorConfig({ feature_extractor_type: 'DeiTFeatureExtractor', size: 256, crop_size: 224 }, 'p');
      assert.deepEqual([deit.size, deit.resample, deit.doCenterCrop, deit.cropSize], [{ kind: 'fixed', height: 256, width: 256 }, 'bicubic', true, { height: 224, width: 224 }]);
      assert.deepEqual(fixedOutputSize(deit), { height: 224, width: 224 });
      assert.deepEqual(fixedOutputSize(vit), { height: 224, width: 224 });
      assert.equal(fixedOutputSize(parseProcessorConfig({ image_processor_type: 'CLIPImageProcessor', do_center_crop: false }, 'p')), undefined);
      const dinov2 = parseProcessorConfig({}, 'p', 'dinov2');
      assert.deepEqual(fixedOutputSize(dinov2), { height: 224, width: 224 });
      assert.deepEqual([dinov2.className, dinov2.size, dinov2.resample], ['BitImageProcessor', { kind: 'shortestEdge', shortestEdge: 224 }, 'bicubic']);
    });
  });

  describe('end to end: the reference tiny ViT on a 160×120 image', function () {
    let ref: string;
    let model: ExplainModel;
    before(async function () {
      ref = join(requireReference(this), 'vit-tiny');
      model = await ExplainModel.load(ref);
    });
    after(async () => {
      await model?.release();
    });

    it('gets transformers\' pixel_values and the logits onnxruntime gives on them', async () => {
      const img = await model.prepareImage(join(FIXTURES, meta.images[meta.vit_tiny.image].file));
      assert.deepEqual(img.dims, meta.vit_tiny.dims);
      assert.deepEqual(img.originalSize, { height: 120, width: 160 });
      // Bit-identical to ViTImageProcessor's output (only its hash fits in the fixtures), so the ORT run below gets
      // exactly Python's pixel_values.
      assert.equal(sha256(img.pixelValues), meta.vit_tiny.sha256);
      assert.deepEqual(Array.from(img.pixelValues.subarray(0, 4)), meta.vit_tiny.first);
      const fwd = await model.forward(img);
      const session = await ort.InferenceSession.create(join(ref, 'model.onnx'));
      try {
        const out = await session.run({ pixel_values: new ort.Tensor('float32', Float32Array.from(img.pixelValues), img.dims) });
        const logits = out.logits.data as Float32Array;
        const d = maxAbsDiff(fwd.logits!, logits);
        console.log(`      logits vs plain ORT run of model.onnx on Python's pixel_values: max |diff| = ${d.toExponential(2)}; top class ${argmax(logits)}`);
        assert.ok(d <= 2e-5, `logits differ by ${d}`);
        assert.equal(argmax(fwd.logits!), argmax(logits));
      } finally {
        await session.release();
      }
    });
  });
});

describe('explain preprocessing end to end: the reference tiny CLIP on a 160×120 image', function () {
  let ref: string;
  let model: ExplainModel;
  before(async function () {
    ref = join(requireReference(this), 'clip-tiny');
    model = await ExplainModel.load(ref);
  });
  after(async () => {
    await model?.release();
  });

  it('gets CLIPImageProcessor\'s pixel_values (shortest edge 224, bicubic, crop) and plain ORT\'s logits_per_image', async () => {
    const img = await model.prepareImage(join(FIXTURES, meta.images[meta.clip_tiny.image].file));
    assert.deepEqual(img.dims, meta.clip_tiny.dims);
    assert.equal(sha256(img.pixelValues), meta.clip_tiny.sha256, 'pixel_values are not bit-identical to CLIPImageProcessor\'s');
    assert.deepEqual(Array.from(img.pixelValues.subarray(0, 4)), meta.clip_tiny.first);
    const tok = model.tokenize(['a red disk', 'a blue square']);
    const fwd = await model.forward(img, tok);
    const session = await ort.InferenceSession.create(join(ref, 'model.onnx'));
    try {
      const out = await session.run({
        input_ids: new ort.Tensor('int64', tok.ids, [2, tok.length]),
        attention_mask: new ort.Tensor('int64', tok.mask, [2, tok.length]),
        pixel_values: new ort.Tensor('float32', Float32Array.from(img.pixelValues), img.dims),
      });
      const want = out.logits_per_image.data as Float32Array;
      const d = maxAbsDiff(fwd.similarities!, want);
      console.log(`      logits_per_image vs plain ORT on Python's pixel_values: max |diff| = ${d.toExponential(2)}`);
      assert.ok(d <= 2e-5, `logits_per_image differ by ${d}`);
    } finally {
      await session.release();
    }
  });
});

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
