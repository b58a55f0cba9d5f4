// An SD 2.x-style folder built with deterministic random weights (models/sd.ts): per-block head counts
// (attention_head_dim list), Linear proj_in/proj_out, int64 timestep and input ids, v-prediction in the scheduler
// config. Nothing of that is configured in the pipeline: it must come from the graphs and the folder's configs.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSdPipeline, sdTinyConfig } from '../models/sd.js';
import { StableDiffusionPipeline, type GenerateOptions } from '../engine/diffusion/pipeline.js';
import { diff } from './pipeline-helpers.js';

describe('SD 2.x-style export (built): head-count lists, linear projections, int64 inputs, v-prediction', function () {
  let dir = '';
  let pipe: StableDiffusionPipeline;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'heed-sd2-'));
    const cfg = sdTinyConfig(3);
    cfg.unet = { ...cfg.unet, attentionHeadDim: [2, 4, 8, 8], useLinearProjection: true, timestepType: 'int64' };
    cfg.textEncoder = { ...cfg.textEncoder, inputIdsType: 'int64' };
    buildSdPipeline(dir, cfg);
    const schedPath = join(dir, 'scheduler', 'scheduler_config.json');
    const sched = JSON.parse(readFileSync(schedPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(schedPath, JSON.stringify({ ...sched, prediction_type: 'v_prediction' }));
    pipe = await StableDiffusionPipeline.load(dir, { threads: 1 });
  });

  after(async () => {
    await pipe?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads int64 inputs and per-block head counts from the graphs', () => {
    assert.equal(pipe.unet.io.timestep.type, 'int64');
    const sites = pipe.attentionSites(8, 8).filter((s) => s.kind === 'cross');
    const heads = Object.fromEntries(sites.map((s) => [s.modulePath.split('.attentions')[0], s.heads]));
    // down_blocks.i use list[i]; up blocks mirror them; the mid block uses the last entry.
    assert.deepEqual(heads, { 'down_blocks.0': 2, 'down_blocks.1': 4, 'down_blocks.2': 8, mid_block: 8, 'up_blocks.1': 8, 'up_blocks.2': 4, 'up_blocks.3': 2 });
  });

  it('generates with maps; v_prediction comes from the scheduler config and changes the result', async () => {
    const opts: GenerateOptions = { prompt: 'a red fox', seed: 2, steps: 3, width: 64, height: 64, maps: { perStepResolutions: [2, 8] } };
    const v = await pipe.generate(opts);
    assert.equal(v.settings.predictionType, 'v_prediction');
    assert.ok(v.image.data.every((x) => x >= 0 && x <= 1));
    const g = v.attention?.daamGlobal();
    assert.ok(g && g.tokens === v.prompt.length && g.data.every(Number.isFinite));
    // Per-step maps average heads of all layers at that grid (here layers with 2 and 8 heads at the 8x8 and 2x2
    // grids): every row of a head/layer mean of softmaxes still sums to 1 over the keys.
    for (const r of [2, 8]) {
      const m = v.attention?.stepMap(0, r);
      assert.ok(m);
      for (let q = 0; q < m.height * m.width; q++) {
        let s = 0;
        for (let k = 0; k < m.keys; k++) s += m.data[q * m.keys + k];
        assert.ok(Math.abs(s - 1) < 1e-5, `grid ${r} query ${q}: ${s}`);
      }
    }
    const eps = await pipe.generate({ ...opts, schedulerConfig: { ...pipe.folder.schedulerConfig, prediction_type: 'epsilon' } });
    assert.equal(eps.settings.predictionType, 'epsilon');
    assert.deepEqual(eps.noisePredictions[0].cond, v.noisePredictions[0].cond); // same first UNet call
    assert.ok(diff(eps.latents, v.latents).maxAbs > 1e-3);
  });
});
