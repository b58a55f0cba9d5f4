// Bad input gets a clear error that names the cause and the fix; methods that do not apply say why.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { explainImage, ExplainError, MethodNotApplicableError } from '../engine/explain/index.js';
import { writeExplainOutputs } from '../engine/jobs/explain-outputs.js';
import { readNpy } from '../engine/io/npy.js';
import { buildVitFolder, vitTinyConfig } from '../models/vit.js';
import { buildClipFolder, clipTinyConfig } from '../models/clip.js';
import { buildForcedVit, buildNoAttentionModel, writeTestImage } from './explain-fixtures.js';

describe('explain: bad input and methods that do not apply', function () {
  let dir: string;
  let vit: string;
  let image: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heed-explain-errors-'));
    vit = buildForcedVit(join(dir, 'vit'), { target: 3 });
    image = await writeTestImage(join(dir, 'img.png'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function rejects(p: Promise<unknown>, pattern: RegExp, type: new (...a: never[]) => Error = ExplainError): Promise<void> {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof type, `expected ${type.name}, got ${(e as Error).name}: ${(e as Error).message}`);
      assert.match((e as Error).message, pattern);
      return true;
    });
  }

  it('an unreadable image names the file and the formats that work', async () => {
    const bad = join(dir, 'not-an-image.png');
    writeFileSync(bad, 'this is text, not a PNG');
    await rejects(explainImage(vit, bad), /cannot read image .*not-an-image\.png.*PNG, JPEG/);
    await rejects(explainImage(vit, join(dir, 'missing.jpg')), /image not found: .*missing\.jpg/);
    await rejects(explainImage(vit, new Uint8Array([1, 2, 3])), /cannot decode the image bytes \(3 bytes\)/);
  });

  it('a class out of range names the valid range', async () => {
    await rejects(explainImage(vit, image, { classIndex: 7 }), /class 7 is out of range: .* has 3 classes \(0\.\.2\)/);
    await rejects(explainImage(vit, image, { classIndex: -1 }), /class -1 is out of range/);
  });

  it('a model without attention layers says so and why', async () => {
    const conv = buildNoAttentionModel(join(dir, 'convnet'));
    await rejects(explainImage(conv, image), /no self-attention layers found in .*model\.onnx.*without fused attention/);
  });

  it('a folder that is not a model folder is refused with what is missing', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await rejects(explainImage(empty, image), /has no config\.json/);
    await rejects(explainImage(join(dir, 'nope'), image), /model folder not found/);
    const noOnnx = join(dir, 'no-onnx');
    mkdirSync(noOnnx);
    writeFileSync(join(noOnnx, 'config.json'), '{"model_type":"vit"}');
    writeFileSync(join(noOnnx, 'preprocessor_config.json'), '{}');
    await rejects(explainImage(noOnnx, image), /no ONNX model .*onnx\/model\.onnx.*model\.onnx/);
  });

  it('invalid options are refused before any work', async () => {
    await rejects(explainImage(vit, image, { discard: 1.2 }), /discard ratio must be in \[0, 1\)/);
    await rejects(explainImage(vit, image, { headFusion: 'avg' as 'mean' }), /unknown head fusion 'avg'/);
    await rejects(explainImage(vit, image, { methods: ['saliency' as 'rollout'] }), /unknown method 'saliency'/);
    await rejects(explainImage(vit, image, { texts: ['a cat'] }), /texts are only used with CLIP models/);
    await rejects(explainImage(vit, image, { methods: ['heads'], headsLayer: 5 }), /heads layer 5 is out of range: the model has 2 layers \(use 0\.\.1, or -2\.\.-1 from the end\)/);
    await rejects(explainImage(vit, image, { headsLayer: 0.5 }), /headsLayer must be an integer \(got 0\.5\)/);
    // The string options pick a branch by comparison with 'vit-explain': a typo must not silently run the other one.
    await rejects(explainImage(vit, image, { rolloutNormalization: 'row' as 'rows' }), /unknown rolloutNormalization 'row' \(choose vit-explain or rows\)/);
    await rejects(explainImage(vit, image, { gradRollout: 'fixed' as 'corrected' }), /unknown gradRollout variant 'fixed' \(choose vit-explain or corrected\)/);
    await rejects(explainImage(vit, image, { cheferStart: -1 }), /cheferStart must be 'last', 'all' or a layer index from 0 \(got -1\)/);
    await rejects(explainImage(vit, image, { methods: ['chefer'], cheferStart: 2 }), /cheferStart 2 is out of range: the model has 2 layers \(use 0\.\.1, 'last' or 'all'\)/);
  });

  it('a model without CLS token: CLS-row methods are skipped with the reason, or refused when asked for', async () => {
    const nocls = buildForcedVit(join(dir, 'nocls'), { target: 2, cls: false });
    const res = await explainImage(nocls, image);
    assert.equal(res.model.prefixTokens, 0);
    assert.deepEqual(res.skipped.map((s) => s.method).sort(), ['chefer', 'grad-rollout', 'heads', 'rollout']);
    assert.match(res.skipped[0].reason, /no CLS token \(6 tokens = the 2×3 patches\)/);
    assert.ok(res.distance, 'mean attention distance needs no CLS token');
    await rejects(explainImage(nocls, image, { methods: ['rollout'] }), /method 'rollout' does not apply: the model has no CLS token/, MethodNotApplicableError);
  });

  it('a backbone without classification head (DINO-style): gradient methods do not apply, the others run', async () => {
    const dino = join(dir, 'dino');
    buildVitFolder(dino, { ...vitTinyConfig(0), variant: 'dino' });
    const res = await explainImage(dino, image, { discard: 0.9 });
    assert.equal(res.classes, undefined);
    assert.deepEqual(res.skipped.map((s) => s.method).sort(), ['chefer', 'grad-rollout']);
    assert.match(res.skipped[0].reason, /no 'logits' output/);
    assert.equal(res.heads!.maps.length, 4);
    assert.equal(res.rollout.length, 1);
    await rejects(explainImage(dino, image, { classIndex: 1 }), /no 'logits' output \(no classification head\)/);
  });

  describe('CLIP', function () {
    let clip: string;
    before(() => {
      clip = join(dir, 'clip');
      buildClipFolder(clip, clipTinyConfig(0));
    });

    it('a text over 77 tokens is refused with its token count (not silently truncated)', async () => {
      const long = Array.from({ length: 90 }, () => 'cat').join(' ');
      await rejects(explainImage(clip, image, { texts: ['a dog', long] }), /text 2 \("cat cat .*"\) is 90 tokens, but CLIP reads at most 75 .*Shorten it/);
    });

    it('Chefer without texts does not apply; a class index is refused', async () => {
      await rejects(explainImage(clip, image, { methods: ['chefer'] }), /give at least one text/, MethodNotApplicableError);
      await rejects(explainImage(clip, image, { classIndex: 0, texts: ['a cat'] }), /classIndex applies to image classifiers/);
      const res = await explainImage(clip, image, { methods: ['heads', 'rollout', 'distance'] });
      assert.equal(res.similarities, undefined);
      assert.equal(res.rollout.length, 1);
    });

    it('explains an image–text pair on the built CLIP folder', async () => {
      const res = await explainImage(clip, image, { texts: ['a photo of a cat', 'a dog'] });
      assert.equal(res.similarities!.length, 2);
      assert.equal(res.chefer.length, 2);
      assert.deepEqual(res.skipped.map((s) => s.method), ['grad-rollout']);
      for (const c of res.chefer) {
        assert.deepEqual([c.image.height, c.image.width], [7, 7]);
        assert.ok(c.tokens!.length >= 2);
        assert.ok(Math.abs(c.tokens!.reduce((a, t) => a + t.normalized, 0) - 1) < 1e-9);
      }
      const written = await writeExplainOutputs(res, join(dir, 'clip-out'), join(dir, 'clip-trace'));
      for (const f of ['chefer_image_0.png', 'chefer_text_0.png', 'chefer_image_1.png', 'chefer_text_1.png']) assert.ok(written.files.includes(f), f);
      assert.deepEqual(readNpy(join(dir, 'clip-trace', 'chefer_text_1.npy')).shape, [77, 77]);
      assert.deepEqual(readNpy(join(dir, 'clip-trace', 'chefer_image_0.npy')).shape, [7, 7]);
      assert.deepEqual(readNpy(join(dir, 'clip-trace', 'attentions_text_layer0.npy')).shape, [2, 4, 77, 77]);
    });
  });
});
