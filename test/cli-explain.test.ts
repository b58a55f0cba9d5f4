// `heed explain` as a child process on the reference ViT and CLIP exports: the flags reach the explain engine and the
// traced arrays equal what vit-explain / probing-vits / the Chefer notebook computed (../shared/reference), at the
// tolerances of the engine's own conformance tests (rollout masks 2e-5, distance 1e-4 px, Chefer image 1e-6).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';
import { heed } from './cli-helpers.js';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe('cli: explain on the reference exports (child process)', function () {
  let ref: string;
  let tmp: string;
  before(function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-explain-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('ViT: rollout (mean/min, discard 0 and 0.9), gradient rollout of --class 3, distance — files and reference values', async function () {
    const out = join(tmp, 'vit');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--image', join(ref, 'synthetic_image.png'),
      '--method', 'rollout,grad-rollout', '--method', 'distance', '--head-fusion', 'mean', '--head-fusion', 'min', '--discard', '0,0.9',
      '--class', '3', '--out', out, '--trace', join(out, 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { files: string[]; traceFiles: string[]; classes: { index: number }[] };
    // reference logits: class 9 (2.798) > class 1 (2.468) > class 7 (1.257)
    assert.deepEqual(j.classes.slice(0, 3).map((c) => c.index), [9, 1, 7]);
    for (const [fusion, d] of [['mean', '0.0'], ['mean', '0.9'], ['min', '0.0'], ['min', '0.9']] as const) {
      const got = readNpyFloat32(join(out, 'trace', `rollout_${fusion}_${d}.npy`));
      assert.deepEqual(got.shape, [14, 14]);
      const diff = maxAbsDiff(got.data, readNpyFloat32(join(ref, 'vit-tiny/ref', `rollout_${fusion}_discard${d}.npy`)).data);
      assert.ok(diff <= 2e-5, `rollout ${fusion} ${d}: ${diff}`);
      assert.ok(existsSync(join(out, `rollout_${fusion}_${d}.png`)));
    }
    for (const d of ['0.0', '0.9']) {
      const name = `grad_rollout_3_${d}.npy`;
      assert.ok(j.traceFiles.includes(name), `${name} in ${j.traceFiles.join(', ')}`);
      const diff = maxAbsDiff(readNpyFloat32(join(out, 'trace', name)).data, readNpyFloat32(join(ref, 'vit-tiny/ref', `grad_rollout_cat3_discard${d}.npy`)).data);
      assert.ok(diff <= 2e-5, `grad rollout ${d}: ${diff}`);
    }
    const dist = readNpyFloat32(join(out, 'trace', 'distance.npy'));
    assert.deepEqual(dist.shape, [4, 4]);
    assert.ok(maxAbsDiff(dist.data, readNpyFloat32(join(ref, 'vit-tiny/ref/mean_attention_distance.npy')).data) <= 1e-4);
    const chart = await sharp(join(out, 'distance.png')).metadata();
    assert.ok(chart.width! > 100 && chart.height! > 100);
    const ex = JSON.parse(readFileSync(join(out, 'explain.json'), 'utf8')) as { methods: { rollout: unknown[] } };
    assert.equal(ex.methods.rollout.length, 4);
  });

  it('CLIP: --text pairs give the reference similarities and Chefer image relevance', async function () {
    const out = join(tmp, 'clip');
    const r = await heed(['explain', '--model', join(ref, 'clip-tiny'), '--image', join(ref, 'synthetic_image.png'),
      '--text', 'a red disk', '--text', 'a blue square', '--method', 'chefer', '--out', out, '--trace', join(out, 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { similarities: { text: string; logit: number }[] };
    const refLogits = [0.1997557282447815, -1.4657422304153442];
    j.similarities.forEach((s, t) => assert.ok(Math.abs(s.logit - refLogits[t]!) <= 2e-5, `${s.text}: ${s.logit}`));
    // image relevance of text t: the reference stores both texts, last-layer start (the notebook's default)
    const refRel = readNpyFloat32(join(ref, 'clip-tiny/ref/image_relevance_default_last_layer.npy'));
    const per = refRel.data.length / 2;
    for (const t of [0, 1]) {
      const got = readNpyFloat32(join(out, 'trace', `chefer_image_${t}.npy`)).data;
      const diff = maxAbsDiff(got, refRel.data.subarray(t * per, (t + 1) * per));
      assert.ok(diff <= 1e-6, `chefer image ${t}: ${diff}`);
    }
  });
});
