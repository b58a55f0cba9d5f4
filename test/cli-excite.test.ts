// `heed generate --excite …` end to end on the tiny SD pipeline: the Attend-and-Excite flags reach the guidance
// engine (checked through the traced update z1 = z0 − 20·∂loss/∂z0), excite.json / the loss chart / --compare files
// are written, report.json compares subjects with and without guidance, and bad subjects or flags fail cleanly.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { assertUserError, heed } from './cli-helpers.js';

interface AeEventJson { step: number; phase: string; kind: string; loss: number; scores?: number[]; stepSize?: number; iteration?: number }

describe('cli: generate --excite (Attend-and-Excite, child process)', function () {
  let models: TinyModels;
  let tmp: string;
  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-ae-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the default A&E grid is diffusers\' attn_res=(16, 16) at any size, or the nearest grid the UNet has (with a warning)', async function () {
    // diffusers' StableDiffusionAttendAndExcitePipeline.__call__ defaults attn_res to (16, 16) (v0.21.4 and later).
    // The tiny UNet has cross-attention at latent/1, /2, /4: at 128² that is 16, 8, 4; at 64² it is 8, 4, 2 (no 16).
    const run = async (size: string, name: string) => {
      const out = join(tmp, name);
      const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '1', '--size', size, '--seed', '3',
        '--out', out, '--excite', 'cat,frog', '--ae-max-iter-to-alter', '1', '--ae-thresholds', '0:0', '--ae-max-refinement', '1']);
      assert.equal(r.code, 0, r.stderr);
      const ex = JSON.parse(readFileSync(join(out, 'excite.json'), 'utf8')) as { options: { resolution: number } };
      const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { warnings?: string[] };
      return { res: ex.options.resolution, warnings: rep.warnings ?? [] };
    };
    const at128 = await run('128', 'grid128');
    assert.equal(at128.res, 16);
    assert.ok(!at128.warnings.some((w) => /attn_res/.test(w)), at128.warnings.join('; '));
    const at64 = await run('64', 'grid64');
    assert.equal(at64.res, 8);
    assert.ok(at64.warnings.some((w) => /no cross-attention layer has 16 rows at 64x64.*using 8.*8, 4, 2/.test(w)), at64.warnings.join('; '));
  });

  it('--excite cat,frog --compare writes excite.json, excite_loss.png, plain/, compare.png and the A&E trace', async function () {
    const out = join(tmp, 'ae');
    // 3 PNDM steps = 4 UNet calls at 128×128 (A&E grid 4×4). One update at step 0 only (max-iter-to-alter 1, no
    // threshold there) so the traced latents can be checked by hand; a refinement at loop index 2.
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '3', '--size', '128', '--seed', '7',
      '--out', out, '--maps', '--trace', join(out, 'trace'), '--excite', 'cat,frog', '--compare',
      '--ae-max-iter-to-alter', '1', '--ae-thresholds', '2:0.5', '--ae-max-refinement', '4', '--ae-res', '4']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Attend-and-Excite on 'cat' \(token 2\), 'frog' \(token 5\) at 4x4/);
    for (const f of ['image.png', 'maps.png', 'report.json', 'excite.json', 'excite_loss.png', 'compare.png', 'plain/image.png', 'plain/report.json',
      'trace/ae_grad_step0.npy', 'trace/ae_loss_step0.json', 'trace/latents_after_ae_step0.npy']) assert.ok(existsSync(join(out, f)), f);

    const ex = JSON.parse(readFileSync(join(out, 'excite.json'), 'utf8')) as {
      subjects: { word: string; tokenIndex: number }[]; options: { maxIterToAlter: number; thresholds: Record<string, number>; scaleFactor: number; resolution: number; maxRefinementSteps: number };
      events: AeEventJson[]; perStep: { step: number; loss: number; scores: number[] }[];
    };
    assert.deepEqual(ex.subjects.map((s) => [s.word, s.tokenIndex]), [['cat', 2], ['frog', 5]]);
    assert.deepEqual(ex.options.thresholds, { 2: 0.5 });
    assert.equal(ex.options.maxIterToAlter, 1);
    assert.equal(ex.options.scaleFactor, 20);
    assert.equal(ex.options.resolution, 4);
    assert.equal(ex.options.maxRefinementSteps, 4);
    // the loss is the worst subject's 1 − score
    for (const p of ex.perStep) assert.ok(Math.abs(p.loss - Math.max(...p.scores.map((s) => Math.max(0, 1 - s)))) < 1e-9);
    const updates = ex.events.filter((e) => e.kind === 'update');
    assert.deepEqual(updates.filter((e) => e.phase === 'main').map((e) => e.step), [0]);
    const refine = ex.events.filter((e) => e.phase === 'refine' && e.kind === 'update');
    assert.ok(refine.length >= 1 && refine.length <= 4 && refine.every((e) => e.step === 2), 'refinement at loop index 2, at most 4 iterations');
    const refineLoss = ex.events.filter((e) => e.phase === 'refine' && e.kind === 'loss').map((e) => e.loss);
    const step2Main = ex.events.find((e) => e.step === 2 && e.kind === 'loss' && e.phase === 'main')!;
    assert.ok(refineLoss.at(-1)! < step2Main.loss, `refinement lowers the loss (${step2Main.loss} → ${refineLoss.at(-1)})`);

    // step 0's update by hand: z1 = fl(z0 − fl(20 · g)) (PNDM's init_noise_sigma is 1, step size 20·sqrt(1.0))
    const z0 = readNpyFloat32(join(out, 'trace', 'latents_init.npy'));
    const g = readNpyFloat32(join(out, 'trace', 'ae_grad_step0.npy'));
    const z1 = readNpyFloat32(join(out, 'trace', 'latents_after_ae_step0.npy'));
    assert.deepEqual(g.shape, [1, 4, 16, 16]);
    let gmax = 0;
    for (let i = 0; i < g.data.length; i++) {
      assert.ok(Number.isFinite(g.data[i]!));
      gmax = Math.max(gmax, Math.abs(g.data[i]!));
      assert.equal(z1.data[i], Math.fround(z0.data[i]! - Math.fround(20 * g.data[i]!)), `latent ${i}`);
    }
    assert.ok(gmax > 0, 'a non-zero gradient');
    const l0 = JSON.parse(readFileSync(join(out, 'trace', 'ae_loss_step0.json'), 'utf8')) as { firstUpdate: { step: number; stepSize: number; loss: number } };
    assert.deepEqual([l0.firstUpdate.step, l0.firstUpdate.stepSize], [0, 20]);
    assert.equal(l0.firstUpdate.loss, ex.perStep[0]!.loss);

    // report.json: subjects with and without guidance
    const rep = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { excite: { compare: { word: string; plain: { lastStepScore: number; daamMax: number }; excited: { lastStepScore: number; daamMax: number } }[]; comparePng: string } };
    assert.deepEqual(rep.excite.compare.map((c) => c.word), ['cat', 'frog']);
    for (const c of rep.excite.compare) {
      for (const v of [c.plain.lastStepScore, c.excited.lastStepScore, c.plain.daamMax, c.excited.daamMax]) assert.ok(Number.isFinite(v) && v > 0);
    }
    assert.equal(rep.excite.comparePng, 'compare.png');
    // the plain run is unguided: its report carries no excite events, and its image differs from the guided one
    const plainRep = JSON.parse(readFileSync(join(out, 'plain', 'report.json'), 'utf8')) as { seed: number; excite: { guided: boolean } };
    assert.equal(plainRep.seed, 7);
    assert.equal(plainRep.excite.guided, false);
    assert.ok(!readFileSync(join(out, 'plain', 'image.png')).equals(readFileSync(join(out, 'image.png'))));
    const chart = await sharp(join(out, 'excite_loss.png')).metadata();
    assert.deepEqual([chart.width, chart.height], [720, 420]);
    const cmp = await sharp(join(out, 'compare.png')).metadata();
    assert.ok(cmp.width! > 2 * 256 && cmp.height! > 256, 'two enlarged panels side by side');
  });

  it('bad subjects and A&E flags: one line, exit code 2', async function () {
    const base = ['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '1', '--size', '128', '--seed', '1', '--out', join(tmp, 'bad')];
    assertUserError(await heed([...base, '--excite', 'dog']), /subject 'dog' is not a word of the prompt/);
    assertUserError(await heed([...base, '--excite', ' ']), /--excite is empty/);
    assertUserError(await heed([...base, '--excite', 'cat', '--ae-thresholds', '0:2']), /--ae-thresholds entry '0:2' must be step:threshold/);
    assertUserError(await heed([...base, '--excite', 'cat', '--ae-kernel', '4']), /--ae-kernel must be an odd integer/);
    assertUserError(await heed([...base, '--compare', '--ae-scale-factor', '10']), /--ae-scale-factor, --compare only apply to Attend-and-Excite: add --excite/);
    assertUserError(await heed([...base, '--excite', '9']), /token index 9 is not a prompt token/);
    // auto picks the nouns; a grid the UNet does not have is refused with the sides it does have
    const r = await heed([...base, '--excite', 'auto', '--ae-res', '3']);
    assertUserError(r, /no cross-attention layer at 3x3.*--ae-res/);
    assert.match(r.stdout, /Attend-and-Excite on 'cat' \(token 2\), 'frog' \(token 5\)/);
  });
});
