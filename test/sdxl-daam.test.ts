// Heed's SDXL word maps against DAAM's own SDXL trace (castorini/daam 09564e0, run unmodified on the tiny SDXL
// pipeline by test/fixtures/sdxl/make_sdxl_daam.py). DAAM resizes every (layer, head) map to a fixed 96×96 grid here
// (its latent_hw is 96² unless sample_size × VAE scale is 512 or 1024) and picks layers by their factor relative to
// that grid; `daamGrid: 96` reproduces that. Heed's default puts the maps on the latent grid (12×12 here) instead.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { bicubicResize } from '../engine/attention/aggregate.js';
import { heed } from './cli-helpers.js';
import { runGenerateJob } from '../engine/jobs/generate.js';
import { HeedError } from '../engine/errors.js';

const TINY = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));
const DAAM = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/daam/', import.meta.url)));

interface DaamMeta {
  prompt: string; height: number; width: number; steps: number; guidance_scale: number; latent_hw: number;
  layer_names: string[]; words: Record<string, { file: string; shape: number[] }>;
}

function maxRelErr(got: Float32Array, want: Float32Array): number {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

describe('SDXL DAAM word maps vs DAAM\'s own SDXL trace (tiny SDXL export)', function () {
  this.timeout(600_000);
  const meta = JSON.parse(readFileSync(join(DAAM, 'meta.json'), 'utf8')) as DaamMeta;
  const grid = Math.round(Math.sqrt(meta.latent_hw));
  let pipe: StableDiffusionPipeline;

  before(async () => {
    assert.ok(existsSync(join(DAAM, 'word_cat.npy')), 'fixture missing: run test/fixtures/sdxl/make_sdxl_daam.py');
    pipe = await StableDiffusionPipeline.load(TINY, { threads: 1 });
  });
  after(async () => {
    await pipe?.dispose();
  });

  const run = (daamGrid?: number) => pipe.generate({
    prompt: meta.prompt, steps: meta.steps, guidance: meta.guidance_scale, width: meta.width, height: meta.height,
    latents: join(DAAM, 'latents_init.npy'), maps: daamGrid === undefined ? { daam: true } : { daam: true, daamGrid },
  });

  it('daamGrid 96 reproduces DAAM\'s compute_word_heat_map for "cat" and "frog" within 1e-4 relative', async () => {
    assert.equal(grid, 96);
    const res = await run(grid);
    const store = res.attention;
    assert.ok(store);
    assert.equal(store.daamLayers().length, meta.layer_names.length); // the 9 down/up attn2 DAAM hooks
    const global = store.daamGlobal();
    assert.deepEqual([global.height, global.width], [grid, grid]);
    for (const [word, w] of Object.entries(meta.words)) {
      const want = readNpyFloat32(join(DAAM, w.file));
      assert.deepEqual(want.shape, [grid, grid]);
      const rows = res.prompt.words.find((x) => x.word === word)?.tokenIndices;
      assert.ok(rows && rows.length > 0, word);
      const got = store.wordMap(rows, global);
      const rel = maxRelErr(got, want.data);
      assert.ok(rel < 1e-4, `${word}: max relative error ${rel}`);
    }
  });

  it('the default (latent grid) differs from DAAM\'s fixed grid; resizing it to 96×96 is close but not exact', async () => {
    const res = await run();
    const store = res.attention;
    assert.ok(store);
    const global = store.daamGlobal();
    assert.deepEqual([global.height, global.width], [meta.height / 8, meta.width / 8]);
    const rows = res.prompt.words.find((x) => x.word === 'cat')?.tokenIndices ?? [];
    const small = store.wordMap(rows, global);
    const up = bicubicResize(small, 1, global.height, global.width, grid, grid);
    const want = readNpyFloat32(join(DAAM, meta.words.cat.file)).data;
    const rel = maxRelErr(up, want);
    // Same layers and weights, but DAAM clamps each upsampled (layer, head) map at 0 at 96×96 before averaging.
    assert.ok(rel > 1e-4 && rel < 0.2, `default grid resized: max relative error ${rel}`);
  });

  it('a job (server request) with maps.daamGrid on a non-square image is invalid_input naming maps.daamGrid', async () => {
    await assert.rejects(
      runGenerateJob(pipe, { prompt: 'a cat', model: TINY, outDir: join(tmpdir(), 'heed-unused'), width: 192, height: 128, maps: { daamGrid: 96 } }),
      (e: unknown) => e instanceof HeedError && e.kind === 'invalid_input' && e.field === 'maps.daamGrid' && /square/.test(e.message));
  });

  it('`heed generate --maps-daam-grid 96` writes DAAM\'s word maps; a non-square --size is a usage error', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'heed-sdxl-daam-'));
    try {
      const out = join(tmp, 'out');
      const r = await heed(['generate', '--model', TINY, '--prompt', meta.prompt, '--steps', String(meta.steps),
        '--guidance', String(meta.guidance_scale), '--size', `${meta.width}x${meta.height}`,
        '--latents', join(DAAM, 'latents_init.npy'), '--maps-daam-grid', String(grid), '--out', out, '--quiet', '--threads', '1']);
      assert.equal(r.code, 0, r.stderr);
      const files = readdirSync(join(out, 'maps'));
      for (const [word, w] of Object.entries(meta.words)) {
        const f = files.find((x) => x.endsWith(`-${word}.npy`));
        assert.ok(f, `${word}: ${files.join(', ')}`);
        const got = readNpyFloat32(join(out, 'maps', f));
        assert.deepEqual(got.shape, [grid, grid]);
        const rel = maxRelErr(got.data, readNpyFloat32(join(DAAM, w.file)).data);
        assert.ok(rel < 1e-4, `${word}: max relative error ${rel}`);
      }
      const bad = await heed(['generate', '--model', TINY, '--prompt', 'a cat', '--size', '192x128', '--maps-daam-grid', '96',
        '--out', join(tmp, 'bad')]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /square/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
