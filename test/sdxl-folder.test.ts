// SDXL model folders: which load and which are refused, with the reason named. Uses the tiny SDXL export of
// test/fixtures/sdxl (symlinked into temporary folders, edited per case).
import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, readFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelFolderError, resolveModelFolder } from '../engine/diffusion/folder.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { rescaleNoiseCfg } from '../engine/diffusion/sdxl-conditioning.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));

/** A copy of the fixture folder: components symlinked, model_index.json and scheduler/ copied so a case may edit them. */
function folderCopy(omit: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'heed-sdxl-'));
  for (const c of readdirSync(FIXTURE)) {
    if (omit.includes(c) || c === 'ref') continue;
    if (c === 'model_index.json') copyFileSync(join(FIXTURE, c), join(dir, c));
    else if (c === 'scheduler') {
      mkdirSync(join(dir, c));
      copyFileSync(join(FIXTURE, c, 'scheduler_config.json'), join(dir, c, 'scheduler_config.json'));
    } else symlinkSync(join(FIXTURE, c), join(dir, c));
  }
  return dir;
}

function editJson(path: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

describe('SDXL model folders', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const copy = (omit?: string[]): string => {
    const d = folderCopy(omit);
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('resolves the Optimum SDXL layout: both encoders and tokenizers, VAE scaling 0.13025, force_upcast, zeroed negatives', () => {
    const f = resolveModelFolder(FIXTURE);
    assert.equal(f.architecture, 'sdxl');
    assert.match(f.textEncoder2 ?? '', /text_encoder_2\/model\.onnx$/);
    assert.match(f.tokenizer2 ?? '', /tokenizer_2$/);
    assert.equal(f.vaeScalingFactor, 0.13025);
    assert.equal(f.vaeForceUpcast, true);
    assert.equal(f.forceZerosForEmptyPrompt, true);
    assert.equal(f.defaultImageSize, 128);
  });

  it('refuses the SDXL refiner (image-to-image, aesthetic score) naming the reason', () => {
    const d = copy(['text_encoder', 'tokenizer']);
    editJson(join(d, 'model_index.json'), (j) => {
      j._class_name = 'StableDiffusionXLImg2ImgPipeline';
      j.requires_aesthetics_score = true;
      j.text_encoder = [null, null];
      j.tokenizer = [null, null];
    });
    assert.throws(() => resolveModelFolder(d), (e: unknown) => e instanceof ModelFolderError &&
      /SDXL refiner.*aesthetic score.*Heed generates from text/.test(e.message));
    // Without model_index.json: text_encoder_2 but no text_encoder is the refiner's layout.
    rmSync(join(d, 'model_index.json'));
    assert.throws(() => resolveModelFolder(d), /no text_encoder\/: that is an SDXL refiner/);
  });

  it('refuses pipelines that are neither SD 1.x/2.x nor SDXL', () => {
    const d = copy();
    editJson(join(d, 'model_index.json'), (j) => {
      j._class_name = 'StableCascadeCombinedPipeline';
    });
    assert.throws(() => resolveModelFolder(d), /StableCascadeCombinedPipeline, which is not a Stable Diffusion 1\.x\/2\.x or SDXL/);
  });

  it('reads an SDXL folder without model_index.json by its text_encoder_2/ (with a warning)', () => {
    const d = copy(['model_index.json']);
    const f = resolveModelFolder(d);
    assert.equal(f.architecture, 'sdxl');
    assert.match(f.warnings.join(' '), /no model_index\.json/);
  });

  it('loads an SDXL-Turbo-style folder (EulerAncestral, trailing spacing) and runs 1 step without CFG', async () => {
    const d = copy();
    // stabilityai/sdxl-turbo's scheduler config (EulerAncestralDiscreteScheduler, timestep_spacing "trailing").
    writeFileSync(join(d, 'scheduler', 'scheduler_config.json'), JSON.stringify({
      _class_name: 'EulerAncestralDiscreteScheduler', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085,
      num_train_timesteps: 1000, prediction_type: 'epsilon', steps_offset: 1, timestep_spacing: 'trailing', trained_betas: null,
    }));
    const pipe = await StableDiffusionPipeline.load(d, { threads: 1 });
    try {
      const res = await pipe.generate({ prompt: 'a cat', steps: 1, guidance: 0, width: 64, height: 64, seed: 7 });
      assert.equal(res.settings.scheduler, 'euler-ancestral');
      assert.deepEqual(res.timesteps, [999]);
      assert.equal(res.settings.cfg, false);
      assert.ok(res.image.data.every((v) => Number.isFinite(v)));
    } finally {
      await pipe.dispose();
    }
  });

  it('refuses an out-of-range guidance rescale and size conditioning, naming the field', async () => {
    const pipe = await StableDiffusionPipeline.load(FIXTURE, { threads: 1 });
    try {
      await assert.rejects(pipe.generate({ prompt: 'a cat', steps: 1, width: 64, height: 64, guidanceRescale: 1.5 }),
        (e: unknown) => (e as { field?: string }).field === 'guidanceRescale');
      await assert.rejects(pipe.generate({ prompt: 'a cat', steps: 1, width: 64, height: 64, sdxl: { cropsCoordsTopLeft: [-1, 0] } }),
        (e: unknown) => (e as { field?: string }).field === 'sdxl.cropsCoordsTopLeft');
    } finally {
      await pipe.dispose();
    }
  });

  it('rescale_noise_cfg: φ = 0 is the identity; φ = 1 gives the text branch\'s std', () => {
    const guided = Float32Array.from([0.5, -1.5, 2, 3, -0.25, 1]);
    const text = Float32Array.from([0.1, -0.2, 0.3, 0.2, 0.0, -0.1]);
    assert.deepEqual(rescaleNoiseCfg(guided, text, 0), guided);
    const out = rescaleNoiseCfg(guided, text, 1);
    const std = (x: Float32Array): number => {
      const m = x.reduce((a, b) => a + b, 0) / x.length;
      return Math.sqrt(x.reduce((a, b) => a + (b - m) ** 2, 0) / (x.length - 1));
    };
    assert.ok(Math.abs(std(out) - std(text)) < 1e-6, `${std(out)} vs ${std(text)}`);
  });
});
