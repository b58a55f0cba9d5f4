// `heed generate` and `heed demo` end to end on the tiny built SD pipeline (random weights), as a child process:
// the files exist with the documented names and sizes, report.json describes the run, the per-word maps agree with
// the trace, --latents reproduces a seeded run, and bad inputs fail with one line and exit code 2.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { defaultDemoDir, ensureDemoModels } from '../models/demo.js';
import { encodeNpy, readNpy, readNpyFloat32 } from '../engine/io/npy.js';
import { torchRandn } from '../engine/diffusion/random.js';
import { assertUserError, CLI, heed, REPO } from './cli-helpers.js';
import { MALLOC_ENV } from '../engine/onnx/memory.js';

const LAUNCHER = join(REPO, 'bin', 'heed.js');

interface Report {
  prompt: string;
  seed: number | null;
  settings: { steps: number; width: number; height: number; scheduler: string };
  timesteps: number[];
  tokens: { index: number; id: number; token: string; text?: string }[];
  words: { word: string; start: number; end: number; tokenIndices: number[] }[];
  truncated: boolean;
  droppedWords: string[];
  maps: { word: string; tokenIndices: number[]; maxAttention: number; png: string; npy: string }[];
  tokenMaxAttention: { index: number; maxAttention: number }[];
  timingsMs: { total: number; steps: number[] };
  warnings: string[];
}

async function pngSize(path: string): Promise<[number, number]> {
  const m = await sharp(path).metadata();
  return [m.width!, m.height!];
}

describe('cli: generate on the tiny SD pipeline (child process)', function () {
  let models: TinyModels;
  let tmp: string;
  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-gen-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const out = (): string => join(tmp, 'run1');

  it('writes image.png, maps/<index>-<word>.png/.npy, maps.png, report.json and the trace', async function () {
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '2', '--size', '128x64',
      '--seed', '1234', '--out', out(), '--maps', '--trace', join(out(), 'trace'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { image: string; mapsGrid: string; report: Report };
    assert.equal(j.image, join(out(), 'image.png'));
    assert.deepEqual(await pngSize(join(out(), 'image.png')), [128, 64]);

    const rep = JSON.parse(readFileSync(join(out(), 'report.json'), 'utf8')) as Report;
    assert.deepEqual(rep, j.report);
    assert.equal(rep.prompt, 'a cat and a frog');
    assert.equal(rep.seed, 1234);
    assert.deepEqual([rep.settings.steps, rep.settings.width, rep.settings.height], [2, 128, 64]);
    assert.equal(rep.timingsMs.steps.length, rep.timesteps.length);
    assert.ok(rep.timingsMs.total > 0);
    // SOT a cat and a frog EOT; alignment by characters of the prompt
    assert.equal(rep.tokens.length, 7);
    assert.deepEqual(rep.tokens.map((t) => t.text), ['<|startoftext|>', 'a', 'cat', 'and', 'a', 'frog', '<|endoftext|>']);
    assert.deepEqual(rep.words.map((w) => [w.word, w.start, w.end, w.tokenIndices]), [['a', 0, 1, [1]], ['cat', 2, 5, [2]], ['and', 6, 9, [3]], ['a', 10, 11, [4]], ['frog', 12, 16, [5]]]);
    assert.equal(rep.truncated, false);
    // distinct words (DAAM's merge: both "a" → tokens 1 and 4), files named by the first token index
    assert.deepEqual(rep.maps.map((m) => [m.word, m.tokenIndices, m.png, m.npy]), [
      ['a', [1, 4], 'maps/1-a.png', 'maps/1-a.npy'], ['cat', [2], 'maps/2-cat.png', 'maps/2-cat.npy'],
      ['and', [3], 'maps/3-and.png', 'maps/3-and.npy'], ['frog', [5], 'maps/5-frog.png', 'maps/5-frog.npy'],
    ]);
    for (const m of rep.maps) {
      assert.deepEqual(await pngSize(join(out(), m.png)), [128, 64]);
      const npy = readNpyFloat32(join(out(), m.npy));
      assert.deepEqual(npy.shape, [8, 16]); // latent grid (H/8, W/8)
      let max = -Infinity;
      for (const v of npy.data) { assert.ok(Number.isFinite(v)); max = Math.max(max, v); }
      assert.ok(Math.abs(max - m.maxAttention) <= 1e-6 * Math.max(1, max), `${m.word}: report max ${m.maxAttention} vs map ${max}`);
      assert.ok(max > 0);
    }
    // per-token max attention over SOT..EOT; the word map of "cat" is token 2's row
    assert.equal(rep.tokenMaxAttention.length, 7);
    assert.equal(rep.tokenMaxAttention[2]!.maxAttention, rep.maps[1]!.maxAttention);
    // grid: image + 4 words = 5 tiles → 3 columns × 2 rows
    const [gw, gh] = await pngSize(join(out(), 'maps.png'));
    assert.ok(gw > 3 * 128 && gh > 2 * 64, `grid ${gw}×${gh}`);

    // trace: the documented files, and the same word maps as maps/*.npy (one aggregation, two writers)
    const manifest = JSON.parse(readFileSync(join(out(), 'trace', 'manifest.json'), 'utf8')) as { files: { file: string; shape: number[] }[] };
    const names = manifest.files.map((f) => f.file);
    for (const f of ['latents_init.npy', 'text_embeddings.npy', 'noise_pred_step0.npy', 'noise_pred_step1.npy', 'latents_final.npy', 'image.npy', 'daam_global_heat_map.npy', 'daam_word_cat.npy', 'daam_word_frog.npy']) {
      assert.ok(names.includes(f), `${f} in manifest`);
      assert.ok(existsSync(join(out(), 'trace', f)), f);
    }
    const traceCat = readNpyFloat32(join(out(), 'trace', 'daam_word_cat.npy'));
    assert.deepEqual([...traceCat.data], [...readNpyFloat32(join(out(), 'maps', '2-cat.npy')).data]);
    // --seed 1234 draws torch.randn((1,4,12,16), generator=manual_seed(1234))
    const init = readNpyFloat32(join(out(), 'trace', 'latents_init.npy'));
    assert.deepEqual(init.shape, [1, 4, 8, 16]);
    assert.deepEqual([...init.data], [...torchRandn([1, 4, 8, 16], 1234)]);
    // image.png is the quantised image.npy
    const img = readNpyFloat32(join(out(), 'trace', 'image.npy'));
    const { data: px } = await sharp(join(out(), 'image.png')).raw().toBuffer({ resolveWithObject: true });
    let maxDiff = 0;
    for (let i = 0; i < img.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(px[i]! - Math.min(1, Math.max(0, img.data[i]!)) * 255));
    assert.ok(maxDiff <= 0.5 + 1e-3, `png vs image.npy max diff ${maxDiff}`);
  });

  it('--latents with the traced initial latents reproduces the seeded image byte for byte', async function () {
    assert.ok(existsSync(join(out(), 'trace', 'latents_init.npy')), 'needs the traced run of the first test of this file (run the file whole)');
    const dir = join(tmp, 'run2');
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '2', '--size', '128x64',
      '--latents', join(out(), 'trace', 'latents_init.npy'), '--out', dir, '--trace', join(dir, 'trace'), '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '', '--quiet prints nothing');
    assert.ok(readFileSync(join(dir, 'image.png')).equals(readFileSync(join(out(), 'image.png'))));
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Report & { latentsFile: string };
    assert.equal(rep.latentsFile, join(out(), 'trace', 'latents_init.npy'));
    assert.deepEqual(rep.maps, []); // no --maps
    assert.ok(!existsSync(join(dir, 'maps.png')));
    // --trace alone still collects attention: the DAAM maps and the A&E-grid step-0 map (8 rows at 64 px: the nearest to diffusers' 16) are traced
    for (const f of ['daam_global_heat_map.npy', 'daam_word_cat.npy', 'attn8_step0.npy']) assert.ok(existsSync(join(dir, 'trace', f)), f);
    assert.deepEqual([...readNpyFloat32(join(dir, 'trace', 'daam_word_cat.npy')).data], [...readNpyFloat32(join(out(), 'trace', 'daam_word_cat.npy')).data]);
  });

  it('--maps-per-step / --maps-per-layer / --maps-res write [calls, h, w] and [layers, h, w] stacks described in report.json', async function () {
    const dir = join(tmp, 'stacks');
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '2', '--size', '128x64',
      '--seed', '1234', '--out', dir, '--maps-per-step', '--maps-per-layer', '--maps-res', '4,2', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Omit<Report, 'maps'> & {
      stepMaps: { height: number; width: number; calls: number; timesteps: number[] }[];
      layerMaps: { height: number; width: number; layers: string[] }[];
      maps: { word: string; npy: string; perStep: string[]; perLayer: string[] }[];
    };
    // 128x64 → latents 8x16; grid heights 4 and 2 are the 4x8 and 2x4 grids. PNDM, 2 steps = 3 UNet calls.
    assert.deepEqual(rep.stepMaps.map((g) => [g.height, g.width, g.calls]), [[4, 8, 3], [2, 4, 3]]);
    assert.deepEqual(rep.stepMaps[0]!.timesteps, rep.timesteps);
    assert.deepEqual(rep.layerMaps.map((g) => [g.height, g.width, g.layers.length]), [[4, 8, 5], [2, 4, 5]]);
    assert.ok(rep.layerMaps[0]!.layers[0]!.startsWith('down_blocks.1.'), rep.layerMaps[0]!.layers.join());
    const cat = rep.maps.find((m) => m.word === 'cat')!;
    assert.deepEqual(cat.perStep, ['maps/steps/4x8/2-cat.npy', 'maps/steps/2x4/2-cat.npy']);
    assert.deepEqual(cat.perLayer, ['maps/layers/4x8/2-cat.npy', 'maps/layers/2x4/2-cat.npy']);
    const steps = readNpyFloat32(join(dir, cat.perStep[1]!));
    const layers = readNpyFloat32(join(dir, cat.perLayer[1]!));
    assert.deepEqual([steps.shape, layers.shape], [[3, 2, 4], [5, 2, 4]]);
    // Same attention, two aggregations: the layer mean of the per-layer maps is the per-step maps' sum over calls.
    for (let i = 0; i < 8; i++) {
      const layerMean = [0, 1, 2, 3, 4].reduce((a, l) => a + layers.data[l * 8 + i]!, 0) / 5;
      const callSum = [0, 1, 2].reduce((a, c) => a + steps.data[c * 8 + i]!, 0);
      assert.ok(Math.abs(layerMean - callSum) < 1e-5 * Math.max(1, callSum), `query ${i}: ${layerMean} vs ${callSum}`);
    }
    // An attention map is a distribution over the 77 keys: a word's share at any call lies in [0, 1].
    assert.ok(steps.data.every((v) => v >= 0 && v <= 1));
    const bad = await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--out', join(tmp, 'bad'), '--maps-res', '0']);
    assertUserError(bad, /--maps-res/);
  });

  it('a prompt over 77 tokens is truncated with a warning recorded in report.json', async function () {
    const dir = join(tmp, 'long');
    const words = Array.from({ length: 80 }, (_, i) => (i === 79 ? 'zebra' : `cat${i % 10}`));
    const r = await heed(['generate', '--model', models.sd, '--prompt', words.join(' '), '--steps', '1', '--size', '64', '--seed', '1', '--out', dir, '--maps']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*(truncat|dropped)/i);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Report;
    assert.equal(rep.truncated, true);
    assert.ok(rep.droppedWords.includes('zebra'));
    assert.ok(rep.warnings.some((w) => /truncat|dropped/i.test(w)));
    assert.equal(rep.tokens.length, 77);
    assert.ok(!rep.maps.some((m) => m.word === 'zebra'), 'no map for a word that was cut off');
  });

  it('bad latents files and unknown schedulers: one line, exit code 2', async function () {
    const nan = join(tmp, 'nan.npy');
    const data = new Float32Array(1 * 4 * 8 * 8);
    data[5] = NaN;
    writeFileSync(nan, encodeNpy(data, [1, 4, 8, 8], 'float32'));
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64', '--latents', nan, '--out', join(tmp, 'x')]), /non-finite|NaN/i);
    const wrong = join(tmp, 'wrong.npy');
    writeFileSync(wrong, encodeNpy(new Float32Array(4 * 16 * 16), [1, 4, 16, 16], 'float32'));
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64', '--latents', wrong, '--out', join(tmp, 'x')]), /shape|1, ?4, ?8, ?8|1x4x8x8/i);
    const notNpy = join(tmp, 'junk.npy');
    writeFileSync(notNpy, 'not numpy');
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64', '--latents', notNpy, '--out', join(tmp, 'x')]), /junk\.npy/);
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64', '--scheduler', 'warp-drive', '--out', join(tmp, 'x')]), /warp-drive/);
    // LCM takes at most original_inference_steps (50) steps
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '60', '--size', '64', '--scheduler', 'lcm', '--out', join(tmp, 'x')]),
      /steps 60 do not fit the lcm scheduler: .*original_inference_steps \(50\)/);
    // multiples of 8 pass the flag check but not an SD UNet's skip connections: a clear message, not ORT's
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64x72', '--seed', '0', '--out', join(tmp, 'x')]),
      /image size 64x72 does not fit this UNet.*multiples of 64.*height 64 or 128/);
    // a folder that is not an SD export names what is missing
    assertUserError(await heed(['generate', '--model', tmp, '--prompt', 'a cat', '--out', join(tmp, 'x')]), /unet|text_encoder|model_index/);
    void readNpy;
  });
});

describe('cli: few-step runs without classifier-free guidance (child process)', function () {
  let models: TinyModels;
  let tmp: string;
  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-fewstep-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  interface FewStepReport extends Report {
    settings: Report['settings'] & { guidance: number; cfg: boolean };
    stepMaps: { height: number; width: number; calls: number; timesteps: number[] }[];
  }
  const run = async (name: string, extra: string[]): Promise<{ dir: string; rep: FewStepReport; final: Float32Array }> => {
    const dir = join(tmp, name);
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--size', '64', '--seed', '21',
      '--out', dir, '--trace', join(dir, 'trace'), '--quiet', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as FewStepReport;
    return { dir, rep, final: readNpyFloat32(join(dir, 'trace', 'latents_final.npy')).data };
  };

  it('--guidance 1 --steps 2: one conditional UNet call per step (the negative prompt has no effect), maps written', async function () {
    const base = ['--scheduler', 'ddim', '--steps', '2', '--maps-per-step'];
    const a = await run('g1-a', [...base, '--guidance', '1', '--negative', 'blurry']);
    const b = await run('g1-b', [...base, '--guidance', '1', '--negative', 'a dog in the rain']);
    assert.equal(a.rep.settings.cfg, false);
    assert.deepEqual(a.rep.timesteps, [501, 1]); // DDIM, the folder's leading spacing with steps_offset 1
    // One UNet call per step: the per-call stacks hold exactly one (conditional) map per timestep.
    assert.deepEqual(a.rep.stepMaps.map((g) => [g.calls, g.timesteps]), [[2, [501, 1]]]);
    assert.equal(a.rep.timingsMs.steps.length, 2);
    // No unconditional branch: a different negative prompt changes nothing, bit for bit ...
    assert.deepEqual([...a.final], [...b.final]);
    // ... whereas with CFG (guidance 7.5, same seed) it does, so the comparison can fail.
    const c = await run('g75-a', [...base, '--guidance', '7.5', '--negative', 'blurry']);
    const d = await run('g75-b', [...base, '--guidance', '7.5', '--negative', 'a dog in the rain']);
    assert.equal(c.rep.settings.cfg, true);
    assert.notDeepEqual([...c.final], [...d.final]);
    // Maps: every word has a finite, positive map and a [calls, h, w] stack.
    assert.deepEqual(a.rep.maps.map((m) => m.word), ['a', 'cat', 'and', 'frog']);
    for (const m of a.rep.maps) {
      const map = readNpyFloat32(join(a.dir, m.npy));
      assert.ok(map.data.every(Number.isFinite) && m.maxAttention > 0, m.word);
    }
    const stack = readNpyFloat32(join(a.dir, 'maps', 'steps', '8x8', '2-cat.npy'));
    assert.deepEqual(stack.shape, [2, 8, 8]);
  });

  it('an SD-Turbo scheduler config (Euler, trailing): --steps 1 --guidance 0 denoises from t=999 to x0 = x − σ·ε', async function () {
    // The tiny model's files with SD-Turbo's scheduler_config.json.
    const folder = join(tmp, 'turbo-model');
    mkdirSync(join(folder, 'scheduler'), { recursive: true });
    for (const entry of readdirSync(models.sd)) if (entry !== 'scheduler') symlinkSync(join(models.sd, entry), join(folder, entry));
    writeFileSync(join(folder, 'scheduler', 'scheduler_config.json'), JSON.stringify({
      _class_name: 'EulerDiscreteScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, clip_sample: false,
      interpolation_type: 'linear', num_train_timesteps: 1000, prediction_type: 'epsilon', set_alpha_to_one: false, skip_prk_steps: true,
      steps_offset: 1, timestep_spacing: 'trailing', timestep_type: 'discrete', trained_betas: null, use_karras_sigmas: false,
    }));
    const dir = join(tmp, 'turbo');
    const r = await heed(['generate', '--model', folder, '--prompt', 'a cat and a frog', '--size', '64', '--seed', '3', '--steps', '1',
      '--guidance', '0', '--maps', '--out', dir, '--trace', join(dir, 'trace'), '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as FewStepReport;
    assert.deepEqual([rep.settings.scheduler, rep.settings.cfg, rep.timesteps], ['euler', false, [999]]);
    assert.ok(rep.maps.length === 4 && rep.maps.every((m) => m.maxAttention > 0));
    // σ(999) = sqrt((1 − ᾱ)/ᾱ) from the float64 scaled-linear schedule; the latents start at σ·z (trailing: no +1).
    let ab = 1;
    for (let i = 0; i < 1000; i++) ab *= 1 - (Math.sqrt(0.00085) + (i * (Math.sqrt(0.012) - Math.sqrt(0.00085))) / 999) ** 2;
    const sigma = Math.sqrt((1 - ab) / ab);
    const z = readNpyFloat32(join(dir, 'trace', 'latents_init.npy')).data;
    const eps = readNpyFloat32(join(dir, 'trace', 'noise_pred_step0.npy')).data;
    const final = readNpyFloat32(join(dir, 'trace', 'latents_final.npy')).data;
    for (let i = 0; i < final.length; i++) {
      const want = sigma * z[i]! - sigma * eps[i]!;
      assert.ok(Math.abs(final[i]! - want) <= 2e-5 * Math.max(1, Math.abs(want)), `latent ${i}: ${final[i]} vs ${want}`);
    }
  });

  it('--scheduler lcm --steps 4 --guidance 1 with --excite: LCM timesteps, A&E updates every step with sizes 20·sqrt(linspace(1, 0.5, 4))', async function () {
    const dir = join(tmp, 'lcm-ae');
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--size', '128', '--seed', '5', '--steps', '4',
      '--guidance', '1', '--scheduler', 'lcm', '--excite', 'cat,frog', '--maps', '--out', dir, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as FewStepReport;
    assert.deepEqual([rep.settings.scheduler, rep.settings.cfg, rep.timesteps], ['lcm', false, [999, 759, 519, 279]]);
    assert.ok(rep.maps.every((m) => m.maxAttention > 0));
    const ex = JSON.parse(readFileSync(join(dir, 'excite.json'), 'utf8')) as {
      events: { step: number; phase: string; kind: string; stepSize?: number }[];
    };
    // max_iter_to_alter (25) exceeds the 4 steps, so every step gets its main update; of the thresholds {0, 10, 20}
    // only step 0's can trigger a refinement.
    const main = ex.events.filter((e) => e.kind === 'update' && e.phase === 'main');
    assert.deepEqual(main.map((e) => e.step), [0, 1, 2, 3]);
    main.forEach((e, i) => assert.ok(Math.abs(e.stepSize! - 20 * Math.sqrt(1 - (0.5 * i) / 3)) < 1e-9, `step ${i}: ${e.stepSize}`));
    assert.ok(ex.events.filter((e) => e.phase === 'refine').every((e) => e.step === 0));
    const png = await sharp(join(dir, 'image.png')).stats();
    assert.ok(png.channels.every((c) => Number.isFinite(c.mean)));
  });
});

describe('cli: demo (child process)', function () {
  it('runs on the demo models folder and writes plain vs A&E generation + explain outputs, printing where they are', async function () {
    const tmp = mkdtempSync(join(tmpdir(), 'heed-cli-demo-'));
    try {
      // What `npm run demo` does first: build the tiny models into the demo folder (the engine cannot build them).
      const models = ensureDemoModels(defaultDemoDir());
      const r = await heed(['demo', '--models', models, '--out', tmp, '--steps', '2', '--size', '64x64']);
      assert.equal(r.code, 0, r.stderr);
      for (const f of ['generate/image.png', 'generate/maps.png', 'generate/report.json', 'generate/trace/manifest.json',
        'generate/compare.png', 'generate/excite.json', 'generate/excite_loss.png', 'generate/plain/image.png',
        'explain-vit/explain.json', 'explain-vit/input.png', 'explain-clip/explain.json']) {
        assert.ok(existsSync(join(tmp, f)), f);
        assert.ok(r.stdout.includes('generate') && r.stdout.includes('random'), 'summary printed');
      }
      const rep = JSON.parse(readFileSync(join(tmp, 'generate/report.json'), 'utf8')) as Report;
      assert.deepEqual(rep.maps.map((m) => m.word), ['a', 'cat', 'and', 'frog']);
      const clip = JSON.parse(readFileSync(join(tmp, 'explain-clip/explain.json'), 'utf8')) as { similarities: { text: string }[] };
      assert.deepEqual(clip.similarities.map((s) => s.text), ['a cat', 'a frog', 'a cat and a frog']); // each subject phrase, then the whole prompt
      // A folder without the models: a user error that says how to get them.
      assertUserError(await heed(["demo", "--models", join(tmp, "generate"), "--out", join(tmp, "again")]), /missing sd\/, vit\/, clip\/.*--models DIR/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('cli: interrupting a generation (child process)', function () {
  for (const [label, script] of [['the CLI', CLI], ['the bin/heed.js launcher (re-executes the CLI with the malloc settings)', LAUNCHER]] as const) {
  it(`Ctrl-C (SIGINT) stops between steps with exit code 130 and one line, no stack: ${label}`, async function () {
    const models = await ensureTinyModels();
    const tmp = mkdtempSync(join(tmpdir(), 'heed-cli-int-'));
    try {
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, [script, 'generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '500', '--size', '64', '--seed', '0', '--out', tmp],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      const started = new Promise<void>((res) => child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/step \d+\/\d+/.test(stderr)) res(); // the first progress line: the denoising loop is running
      }));
      const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      // If the child ends before its first step (a crash), fail with its output instead of waiting forever.
      const first = await Promise.race([started.then(() => 'started' as const), exited.then((c) => c)]);
      assert.equal(first, 'started', `the generation ended before its first step (exit ${String(first)}): ${stderr}`);
      if (script === LAUNCHER && process.platform === 'linux') {
        // The generation runs in the launcher's child, whose environment carries the malloc settings.
        const pid = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).find((d) => {
          try {
            return readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1] === String(child.pid);
          } catch {
            return false;
          }
        });
        assert.ok(pid, 'the launcher runs the CLI in a child process');
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        for (const [k, v] of Object.entries(MALLOC_ENV)) assert.ok(environ.includes(`${k}=${v}`), `${k}=${v} in the CLI's environment`);
      }
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 130, stderr);
      assert.match(stderr, /stopping after the current step/);
      assert.match(stderr, /heed: generation cancelled before step \d+ of 501/);
      assert.doesNotMatch(stderr, /\n\s+at /);
      assert.ok(!existsSync(join(tmp, 'image.png')), 'no image from a cancelled run');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
  }
});
