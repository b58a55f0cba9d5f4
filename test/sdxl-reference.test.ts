// Conformance with the tiny SDXL export of test/fixtures/sdxl (made by make_sdxl.py with diffusers v0.21.4's
// StableDiffusionXLPipeline): both tokenizers, the concatenated penultimate hidden states, the pooled projection,
// add_time_ids, zeroed negatives (force_zeros_for_empty_prompt), an encoded negative prompt with guidance rescale and
// non-default size conditioning, Euler (leading spacing), the VAE's scaling factor; and the step-0 cross-attention
// maps at the 4×6 grid (latent/4) found by the graph discovery. Tolerance: 1e-4 relative (max |Δ| / max |ref|).
// The fixture is in the repo, so this test never skips. CPU-cheap: 128×192, 4 steps, a 150k-parameter UNet.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { StableDiffusionPipeline, type GenerateResult } from '../engine/diffusion/pipeline.js';
import { assertClose } from './pipeline-helpers.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));
const REF = join(FIXTURE, 'ref');
const r = (name: string): Float32Array => readNpyFloat32(join(REF, name)).data;
const TOL = 1e-4;

interface Meta {
  prompt: string;
  height: number;
  width: number;
  steps: number;
  guidance_scale: number;
  timesteps: number[];
  token_ids: Record<string, number[]>;
  cases: { negative: { original_size: [number, number]; crops_coords_top_left: [number, number]; target_size: [number, number] } };
  attn2_probs_step0: Record<string, { layers: string[]; shape: number[] }>;
}
const meta = JSON.parse(readFileSync(join(REF, 'meta.json'), 'utf8')) as Meta;

function row(data: Float32Array, index: number, size: number): Float32Array {
  return data.slice(index * size, (index + 1) * size);
}

describe('SDXL pipeline conformance with the tiny StableDiffusionXLPipeline export', function () {
  this.timeout(600_000);
  let pipe: StableDiffusionPipeline;
  let zeros: GenerateResult;
  let negative: GenerateResult;

  before(async () => {
    pipe = await StableDiffusionPipeline.load(FIXTURE, { threads: 1 });
    const common = {
      prompt: meta.prompt, guidance: meta.guidance_scale, steps: meta.steps, width: meta.width, height: meta.height,
      latents: join(REF, 'latents_init.npy'), keepNoisePredictions: 1,
    };
    zeros = await pipe.generate(common);
    const n = meta.cases.negative;
    negative = await pipe.generate({
      ...common, negativePrompt: 'blurry', guidanceRescale: 0.7,
      sdxl: { originalSize: n.original_size, cropsCoordsTopLeft: n.crops_coords_top_left, targetSize: n.target_size },
    });
  });

  after(async () => {
    await pipe?.dispose();
  });

  it('reads the folder as SDXL: two encoders, the UNet\'s text_embeds/time_ids, Euler with leading spacing', () => {
    assert.equal(pipe.architecture, 'sdxl');
    assert.ok(pipe.textEncoder2 && pipe.tokenizer2);
    assert.equal(pipe.unet.io.textEmbeds?.name, 'text_embeds');
    assert.equal(pipe.unet.io.timeIds?.name, 'time_ids');
    assert.equal(pipe.unet.io.timestep.type, 'int64');
    assert.equal(pipe.folder.vaeScalingFactor, 0.13025);
    assert.equal(pipe.folder.forceZerosForEmptyPrompt, true);
    assert.deepEqual(zeros.timesteps, meta.timesteps);
    assert.equal(zeros.settings.scheduler, 'euler');
  });

  it('tokenizes with both tokenizers, each padding with its own pad token', () => {
    const tok2 = pipe.tokenizer2;
    assert.ok(tok2);
    assert.deepEqual(zeros.prompt.ids, meta.token_ids.ids1_prompt);
    assert.deepEqual(tok2.encode(meta.prompt, { maxLength: 77 }).ids, meta.token_ids.ids2_prompt);
    assert.deepEqual(negative.negativePrompt.ids, meta.token_ids.ids1_negative);
    assert.deepEqual(tok2.encode('blurry', { maxLength: 77 }).ids, meta.token_ids.ids2_negative);
  });

  it('prompt embeddings = both penultimate hidden states concatenated; pooled = text_encoder_2 projection', () => {
    assert.deepEqual(zeros.textEmbeddings.dims, [1, 77, 72]);
    assertClose('zeros prompt_embeds', zeros.textEmbeddings.cond, r('zeros_prompt_embeds.npy'), TOL);
    assertClose('zeros pooled', zeros.added?.cond.textEmbeds ?? new Float32Array(), r('zeros_pooled_prompt_embeds.npy'), TOL);
    assertClose('negative prompt_embeds', negative.textEmbeddings.cond, r('negative_prompt_embeds.npy'), TOL);
    assertClose('negative negative_prompt_embeds', negative.textEmbeddings.uncond, r('negative_negative_prompt_embeds.npy'), TOL);
    assertClose('negative negative_pooled', negative.added?.uncond.textEmbeds ?? new Float32Array(), r('negative_negative_pooled_prompt_embeds.npy'), TOL);
  });

  it('no negative prompt with force_zeros_for_empty_prompt: zero negative embeddings and pooled embeddings', () => {
    assert.ok(zeros.textEmbeddings.uncond.every((v) => v === 0));
    assert.ok(zeros.added?.uncond.textEmbeds.every((v) => v === 0));
    // An explicit "" is encoded (diffusers zeroes only negative_prompt=None).
    assert.ok(negative.textEmbeddings.uncond.some((v) => v !== 0));
  });

  it('add_time_ids = original size + crop + target size, the same in both CFG branches', () => {
    const z = r('zeros_add_time_ids.npy');
    const n = r('negative_add_time_ids.npy');
    assert.deepEqual([...(zeros.added?.uncond.timeIds ?? [])], [...row(z, 0, 6)]);
    assert.deepEqual([...(zeros.added?.cond.timeIds ?? [])], [...row(z, 1, 6)]);
    assert.deepEqual([...(negative.added?.cond.timeIds ?? [])], [256, 384, 8, 16, 128, 192]);
    assert.deepEqual([...(negative.added?.uncond.timeIds ?? [])], [...row(n, 0, 6)]);
  });

  it('step-0 noise predictions (uncond and cond) match', () => {
    for (const [tag, res] of [['zeros', zeros], ['negative', negative]] as const) {
      const np = res.noisePredictions[0];
      assertClose(`${tag} noise_pred_cond_step0`, np.cond, r(`${tag}_noise_pred_cond_step0.npy`), TOL);
      assertClose(`${tag} noise_pred_uncond_step0`, np.uncond ?? new Float32Array(), r(`${tag}_noise_pred_uncond_step0.npy`), TOL);
    }
  });

  it('final latents (CFG; and CFG + guidance rescale 0.7) and the decoded image match', () => {
    assertClose('zeros final_latents', zeros.latents, r('zeros_final_latents.npy'), TOL);
    assertClose('negative final_latents (guidance_rescale 0.7)', negative.latents, r('negative_final_latents.npy'), TOL);
    assert.equal(zeros.image.width, meta.width);
    assert.equal(zeros.image.height, meta.height);
    assertClose('zeros image', zeros.image.data, r('zeros_image.npy'), TOL);
  });

  it('step-0 cross-attention at the 4×6 grid: discovered sites and per-layer maps match the torch probabilities', async () => {
    const [name, info] = Object.entries(meta.attn2_probs_step0)[0];
    assert.equal(name, 'zeros_attn2_probs_step0_4x6');
    const sites = pipe.attentionSites(16, 24).filter((s) => s.kind === 'cross' && s.height === 4 && s.width === 6);
    assert.deepEqual(sites.map((s) => s.modulePath), info.layers);
    assert.deepEqual([...new Set(sites.map((s) => s.heads))], [2]);
    const enc = zeros.textEmbeddings;
    const ehs = new Float32Array(2 * enc.cond.length);
    ehs.set(enc.uncond, 0);
    ehs.set(enc.cond, enc.cond.length);
    const added = zeros.added;
    assert.ok(added);
    const out = await pipe.unet.run({
      sample: r('zeros_unet_input_step0.npy'), batch: 2, height: 16, width: 24, timestep: meta.timesteps[0],
      encoderHiddenStates: ehs, sequence: 77, hidden: 72,
      added: {
        textEmbeds: Float32Array.from([...added.uncond.textEmbeds, ...added.cond.textEmbeds]),
        timeIds: Float32Array.from([...added.uncond.timeIds, ...added.cond.timeIds]),
      },
    }, sites);
    const ref = r(`${name}.npy`);
    const plane = 24 * 77;
    sites.forEach((site, l) => {
      const a = out.attention.get(site.probs);
      assert.ok(a, site.probs);
      // 'bh,q,k' layout with batch [uncond, cond]: the cond half is heads h..2h-1; compare the head mean.
      const mean = new Float32Array(plane);
      for (let h = 0; h < site.heads; h++) {
        const off = (site.heads + h) * plane;
        for (let j = 0; j < plane; j++) mean[j] += a.data[off + j] / site.heads;
      }
      assertClose(`attn2 ${site.modulePath}`, mean, ref.subarray(l * plane, (l + 1) * plane), TOL);
    });
  });
});
