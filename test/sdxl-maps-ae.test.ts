// Attention maps and Attend-and-Excite on the tiny SDXL export (test/fixtures/sdxl): the graph discovery finds SDXL's
// cross-attention (none at full latent resolution, two transformer layers per block at 1/4), DAAM aggregates the
// down/up layers, the default A&E grid is latent/4, and A&E's gradient (Heed's VJP graph of the SDXL UNet, with
// text_embeds/time_ids fed) matches central finite differences of the same loss.
import { strict as assert } from 'node:assert';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { seededLatents } from '../engine/diffusion/latents.js';
import { sdxlTimeIds } from '../engine/diffusion/sdxl-conditioning.js';
import { AE_DEFAULTS, AttendExcite } from '../engine/guidance/attend-excite.js';
import { DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { isDaamSite } from '../engine/attention/aggregate.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));
const PROMPT = 'a cat and a frog';

describe('SDXL attention maps and Attend-and-Excite (tiny SDXL export)', function () {
  this.timeout(600_000);
  let pipe: StableDiffusionPipeline;

  before(async () => {
    pipe = await StableDiffusionPipeline.load(FIXTURE, { threads: 1 });
  });
  after(async () => {
    await pipe?.dispose();
  });

  it('discovers cross-attention only at 1/2 and 1/4 of the latent, several transformer layers per block', () => {
    const sites = pipe.attentionSites(16, 24).filter((s) => s.kind === 'cross');
    const grids = [...new Set(sites.map((s) => `${s.height}x${s.width}`))];
    assert.deepEqual(grids.sort(), ['4x6', '8x12']);
    assert.equal(sites.length, 11); // down_blocks.1 ×1, down_blocks.2 ×2, mid ×2, up_blocks.0 2×2, up_blocks.1 2×1
    assert.ok(sites.some((s) => s.modulePath === 'down_blocks.2.attentions.0.transformer_blocks.1.attn2'));
    assert.ok(sites.every((s) => s.keyLength === 77));
    // DAAM: the down and up layers at both grids; the mid block is not hooked (DAAM's locate_middle_block=False).
    const daam = sites.filter((s) => isDaamSite(s, 16, 24));
    assert.equal(daam.length, 9);
    assert.ok(daam.every((s) => s.block !== 'mid'));
  });

  it('the default A&E / per-step grid on SDXL is latent/4 (the SDXL A&E ports\' 32×32 at 1024 px)', () => {
    assert.deepEqual(pipe.defaultAttentionGrid(256, 256), { res: 8 });
    assert.deepEqual(pipe.defaultAttentionGrid(192, 128), { res: 4 });
  });

  it('generate with maps: DAAM word maps over the prompt\'s first-tokenizer positions, per-step maps at 4x6', async () => {
    const res = await pipe.generate({ prompt: PROMPT, steps: 2, width: 192, height: 128, seed: 3, maps: true });
    const store = res.attention;
    assert.ok(store);
    const global = store.daamGlobal();
    assert.equal(global.tokens, res.prompt.length); // SOT + 5 words + EOT of tokenizer 1
    assert.deepEqual([global.height, global.width], [16, 24]);
    const cat = res.prompt.words.find((w) => w.word === 'cat');
    assert.deepEqual(cat?.tokenIndices, [2]);
    const map = store.wordMap(cat?.tokenIndices ?? []);
    assert.equal(map.length, 16 * 24);
    assert.ok(map.every((v) => Number.isFinite(v) && v >= 0) && map.some((v) => v > 0));
    const step = store.stepMap(0, 4);
    assert.deepEqual([step.height, step.width], [4, 6]);
  });

  it('A&E gradient w.r.t. the latents matches central finite differences of the A&E loss', async () => {
    const shape: [number, number, number, number] = [1, 4, 32, 32];
    const ae = await AttendExcite.create(pipe, shape, {
      tokenIndices: [2, 5], maxIterToAlter: 1, thresholds: {}, scaleFactor: AE_DEFAULTS.scaleFactor,
      maxRefinementSteps: 0, resolution: 8, loss: DEFAULT_AE_LOSS,
    });
    try {
      const enc = await pipe.encodePrompts(PROMPT, undefined);
      assert.ok(enc.pooled);
      const added = { textEmbeds: enc.pooled.cond, timeIds: sdxlTimeIds(pipe.unet.io, enc.pooled.dim, { height: 256, width: 256 }) };
      const z = seededLatents(11, shape).latents;
      const t = 751;
      const at = (x: Float32Array) => ae.lossAndGradient(x, t, enc.cond, enc.dims, added);
      const base = await at(z);
      assert.ok(base.loss > 0 && base.loss < 1, `loss ${base.loss}`);
      let norm = 0;
      for (const g of base.grad) norm += g * g;
      norm = Math.sqrt(norm);
      assert.ok(norm > 0, 'zero gradient');
      // Directions: the gradient itself (derivative = |g|) and a fixed pseudo-random one.
      const rand = seededLatents(12, shape).latents;
      let rn = 0;
      for (const v of rand) rn += v * v;
      const dirs = [base.grad.map((g) => g / norm), rand.map((v) => v / Math.sqrt(rn))];
      const eps = 1e-2;
      for (const [k, d] of dirs.entries()) {
        const plus = await at(z.map((v, i) => v + eps * d[i]));
        const minus = await at(z.map((v, i) => v - eps * d[i]));
        const fd = (plus.loss - minus.loss) / (2 * eps);
        const an = base.grad.reduce((s, g, i) => s + g * d[i], 0);
        console.log(`      direction ${k}: analytic ${an.toExponential(4)}, finite difference ${fd.toExponential(4)}`);
        assert.ok(Math.abs(fd - an) <= 1e-3 * norm,
          `direction ${k}: analytic ${an} vs finite difference ${fd}`);
      }
    } finally {
      await ae.dispose();
    }
  });

  it('A&E runs inside an SDXL generation (batch-1 conditional pass with the added conditioning) and moves the latents', async () => {
    const shape: [number, number, number, number] = [1, 4, 32, 32];
    const ae = await AttendExcite.create(pipe, shape, {
      tokenIndices: [2, 5], maxIterToAlter: 1, thresholds: {}, scaleFactor: AE_DEFAULTS.scaleFactor,
      maxRefinementSteps: 0, resolution: 8, loss: DEFAULT_AE_LOSS,
    });
    try {
      const opts = { prompt: PROMPT, steps: 2, width: 256, height: 256, seed: 5 };
      const plain = await pipe.generate(opts);
      const guided = await pipe.generate({ ...opts, beforeStep: ae.hook });
      const updates = ae.events.filter((e) => e.kind === 'update');
      assert.equal(updates.length, 1);
      assert.equal(updates[0].step, 0);
      assert.ok(guided.latents.some((v, i) => v !== plain.latents[i]));
    } finally {
      await ae.dispose();
    }
  });
});
