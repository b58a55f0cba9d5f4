// The A&E loss in the cases the shared reference does not cover: the original repo's SD 2.x variant (`--ae-sd2`,
// softmax over the prompt's tokens only) against that repo's own code, and Python's max() semantics that diffusers'
// `_compute_loss` inherits (a NaN score gives loss 0; a tie sends the gradient through the first subject).
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aeLoss, DEFAULT_AE_LOSS } from '../engine/guidance/ae-loss.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/ae-sd2/scores.json', import.meta.url)));

describe('Attend-and-Excite loss: SD 2.x variant and Python max semantics', function () {
  it('--ae-sd2 (slice ends at EOT) matches yuval-alaluf/Attend-and-Excite with sd_2_1=True on the reference maps', function () {
    const ref = requireReference(this);
    const want = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {
      input_ids: number[]; token_indices: number[];
      normalize_eot: { scores: number[]; loss: number }; default: { scores: number[]; loss: number };
    };
    const maps = readNpyFloat32(join(ref, 'sd-tiny-v1/ref/attn_maps_step0_16x16.npy')).data;
    // The CLI passes sliceEnd = the EOT position = len(input_ids) − 1, as the repo's last_idx.
    const eot = want.input_ids.length - 1;
    const sd2 = aeLoss(maps, 16, 16, 77, want.token_indices, { ...DEFAULT_AE_LOSS, sliceEnd: eot });
    const plain = aeLoss(maps, 16, 16, 77, want.token_indices, DEFAULT_AE_LOSS);
    sd2.scores.forEach((s, i) => assert.ok(Math.abs(s - want.normalize_eot.scores[i]) < 1e-6, `sd2 score ${i}: ${s} vs ${want.normalize_eot.scores[i]}`));
    plain.scores.forEach((s, i) => assert.ok(Math.abs(s - want.default.scores[i]) < 1e-6, `score ${i}: ${s} vs ${want.default.scores[i]}`));
    assert.ok(Math.abs(sd2.loss - want.normalize_eot.loss) < 1e-6, `sd2 loss ${sd2.loss}`);
    assert.ok(Math.abs(plain.loss - want.default.loss) < 1e-6, `loss ${plain.loss}`);
  });

  it('a NaN in the maps gives NaN scores and loss 0 (Python max(0, nan) is 0), so no update follows', function () {
    const maps = new Float32Array(4 * 4 * 5).fill(0.2);
    maps[7] = NaN;
    const r = aeLoss(maps, 4, 4, 5, [2, 3]);
    assert.ok(r.scores.some(Number.isNaN), `scores ${r.scores}`);
    assert.equal(r.loss, 0);
    assert.ok(r.gradMaps.every((g) => g === 0));
  });

  it('equal losses: the gradient flows through the first subject only, as max() over the list keeps the first', function () {
    // Uniform maps: both subjects score the same, so both losses are equal.
    const maps = new Float32Array(4 * 4 * 5).fill(0.2);
    const r = aeLoss(maps, 4, 4, 5, [3, 2]);
    assert.equal(r.scores[0], r.scores[1]);
    let first = 0;
    let second = 0;
    for (let p = 0; p < 16; p++) {
      first += r.gradMaps[p * 5 + 3];
      second += r.gradMaps[p * 5 + 2];
    }
    // The chosen subject's column gets the negative (excitatory) gradient; the other only the softmax coupling.
    assert.ok(first < 0 && second > 0, `column sums ${first}, ${second}`);
  });
});
