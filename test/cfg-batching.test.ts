// CFG batching (engine/diffusion/unet.ts CfgBatching): [uncond, cond] as one batch-2 call or as two batch-1 calls.
// Splitting halves the activation peak of a 512² SD 1.5 step; it must not change the image, the noise predictions or
// the attention maps beyond float32 rounding. Reference tiny SD export at 512² (64×64 latents, where 'auto' splits).
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { StableDiffusionPipeline, type GenerateResult } from '../engine/diffusion/pipeline.js';
import { SPLIT_BATCH_QUERY_LENGTH } from '../engine/diffusion/unet.js';
import { requireReference } from './helpers/reference.js';
import { relToMax } from './helpers/compare.js';


describe('CFG batching: one batch-2 call vs two batch-1 calls', function () {
  this.timeout(300_000);
  let ref: string;
  before(function () {
    ref = requireReference(this);
  });

  const runs = new Map<string, Promise<GenerateResult>>();
  /** One 2-step CFG generation per policy and size (memoised: the tests compare the same runs). */
  function generate(batching: 'batched' | 'split' | 'auto', size: number): Promise<GenerateResult> {
    const key = `${batching}@${size}`;
    let run = runs.get(key);
    if (!run) {
      run = (async () => {
        const pipe = await StableDiffusionPipeline.load(join(ref, 'sd-tiny-v1/onnx'), { cfgBatching: batching });
        try {
          return await pipe.generate({ prompt: 'a cat and a frog', steps: 2, guidance: 7.5, width: size, height: size, seed: 7, maps: true });
        } finally {
          await pipe.dispose();
        }
      })();
      runs.set(key, run);
    }
    return run;
  }

  it('split gives the batched run\'s noise predictions, latents, image and DAAM maps', async () => {
    const batched = await generate('batched', 512);
    const split = await generate('split', 512);
    for (const k of [0, 1]) {
      const a = batched.noisePredictions[k];
      const b = split.noisePredictions[k];
      assert.ok(relToMax(b.cond, a.cond) < 1e-5, `step ${k} cond noise: ${relToMax(b.cond, a.cond)}`);
      assert.ok(relToMax(b.uncond ?? [], a.uncond ?? []) < 1e-5, `step ${k} uncond noise`);
    }
    assert.ok(relToMax(split.latents, batched.latents) < 1e-5, `latents: ${relToMax(split.latents, batched.latents)}`);
    assert.ok(relToMax(split.image.data, batched.image.data) < 1e-4, 'image');
    const tokens = [2];
    const ma = batched.attention?.wordMap(tokens);
    const mb = split.attention?.wordMap(tokens);
    assert.ok(ma && mb && ma.length > 0);
    assert.ok(relToMax(mb, ma) < 1e-5, `DAAM map of 'cat': ${relToMax(mb, ma)}`);
  });

  it("'auto' splits where the UNet has a 4096-query attention (64×64 latents here) and batches below", async () => {
    assert.equal(SPLIT_BATCH_QUERY_LENGTH, 64 * 64);
    const small = await generate('auto', 256);
    const smallBatched = await generate('batched', 256);
    assert.ok(relToMax(small.latents, smallBatched.latents) === 0, "'auto' at 32×32 latents is the batched run, bit for bit");
    const big = await generate('auto', 512);
    const bigSplit = await generate('split', 512);
    assert.ok(relToMax(big.latents, bigSplit.latents) === 0, "'auto' at 64×64 latents is the split run, bit for bit");
  });
});
