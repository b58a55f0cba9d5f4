// Aggregation maths on hand-built inputs: torch's bicubic resampling (a value table torch prints, re-derived by hand
// below), A&E's head/layer mean, DAAM's per-head sum → resize → clamp → mean, and word merges.
import { strict as assert } from 'node:assert';
import {
  aeAggregate, bicubicResize, daamFactor, isDaamSite, itemSlice, meanOfRows, queryMapsToTokenMaps, type SiteProbs,
} from '../engine/attention/aggregate.js';
import { AttentionStore } from '../engine/attention/store.js';
import type { AttentionSite } from '../engine/attention/discover.js';

function site(partial: Partial<AttentionSite> & { queryLength: number }): AttentionSite {
  return {
    index: 0, softmaxNode: 'sm', probs: `p${Math.random()}`, modulePath: 'down_blocks.0.attentions.0.transformer_blocks.0.attn2',
    block: 'down', kind: 'cross', heads: 2, keyLength: 4, layout: 'bh,q,k', dims: [], ...partial,
  };
}

/** Deterministic pseudo-random values in [0, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32;
  }
  return out;
}

describe('attention aggregation', () => {
  describe('bicubicResize (torch F.interpolate bicubic, align_corners=False)', () => {
    it('matches torch on [[1,2],[3,4]] upsampled 2x', () => {
      // torch.nn.functional.interpolate(torch.tensor([[[[1.,2.],[3.,4.]]]]), scale_factor=2, mode='bicubic',
      // align_corners=False). Entry (0,0) by hand: x-taps of output 0 sit at -0.25 → taps (-2,-1,0,1) clamped to
      // (0,0,0,1) with Keys weights (A=-0.75) W(1.75)=-0.03515625, W(0.75)=0.26171875, W(0.25)=0.87890625,
      // W(1.25)=-0.10546875: row [1,2] → 0.89453125, row [3,4] → 2.89453125; the same in y → 0.68359375.
      const expected = [
        0.68359375, 1.015625, 1.5625, 1.89453125,
        1.34765625, 1.6796875, 2.2265625, 2.55859375,
        2.44140625, 2.7734375, 3.3203125, 3.65234375,
        3.10546875, 3.4375, 3.984375, 4.31640625,
      ];
      const got = bicubicResize(Float32Array.from([1, 2, 3, 4]), 1, 2, 2, 4, 4);
      assert.deepEqual(Array.from(got), expected);
    });

    it('is the identity at the same size and keeps constants (weights sum to 1)', () => {
      const src = values(3 * 5 * 7, 1);
      assert.deepEqual(Array.from(bicubicResize(src, 3, 5, 7, 5, 7)), Array.from(src));
      const c = bicubicResize(new Float32Array(16 * 16).fill(0.25), 1, 16, 16, 64, 64);
      for (const v of c) assert.ok(Math.abs(v - 0.25) < 1e-7);
    });

    it('undershoots below zero next to a spike (why DAAM clamps)', () => {
      const src = new Float32Array(16);
      src[5] = 1;
      const up = bicubicResize(src, 1, 4, 4, 16, 16);
      assert.ok(Math.min(...up) < 0);
    });
  });

  it('takes the conditional item of a [batch*heads, q, k] tensor', () => {
    const s = site({ queryLength: 3, heads: 2, keyLength: 4 });
    const data = values(2 * 2 * 3 * 4, 2);
    const cond = itemSlice({ site: s, data, dims: [4, 3, 4] }, 2, 1);
    assert.deepEqual(Array.from(cond), Array.from(data.subarray(24)));
  });

  it("aeAggregate averages all heads of all layers at the resolution (A&E's sum/count)", () => {
    const a = site({ queryLength: 4, heads: 2, keyLength: 3 });
    const b = site({ queryLength: 4, heads: 3, keyLength: 3, modulePath: 'up_blocks.1.attentions.0.transformer_blocks.0.attn2', block: 'up' });
    const other = site({ queryLength: 16, heads: 2, keyLength: 3 });
    const pa: SiteProbs = { site: a, data: values(2 * 12, 3), dims: [2, 4, 3] };
    const pb: SiteProbs = { site: b, data: values(3 * 12, 4), dims: [3, 4, 3] };
    const po: SiteProbs = { site: other, data: values(2 * 48, 5), dims: [2, 16, 3] };
    const m = aeAggregate([pa, pb, po], 2, 2, 1, 0);
    assert.equal(m.keys, 3);
    for (let i = 0; i < 12; i++) {
      let sum = 0;
      for (let h = 0; h < 2; h++) sum += pa.data[h * 12 + i];
      for (let h = 0; h < 3; h++) sum += pb.data[h * 12 + i];
      assert.ok(Math.abs(m.data[i] - sum / 5) < 1e-7, `entry ${i}`);
    }
    const t = queryMapsToTokenMaps(m);
    assert.equal(t.data[2 * 4 + 1], m.data[1 * 3 + 2]); // token 2 at query 1
  });

  it('DAAM factors: 64→1, 32→2, 16→4, 8→8 (skipped), mid block skipped', () => {
    assert.equal(daamFactor(4096, 64, 64), 1);
    assert.equal(daamFactor(1024, 64, 64), 2);
    assert.equal(daamFactor(256, 64, 64), 4);
    assert.equal(daamFactor(64, 64, 64), 8);
    assert.equal(isDaamSite(site({ queryLength: 64, keyLength: 77 }), 64, 64), false);
    assert.equal(isDaamSite(site({ queryLength: 256, keyLength: 77, block: 'mid' }), 64, 64), false);
    assert.equal(isDaamSite(site({ queryLength: 256, keyLength: 77, kind: 'self' }), 64, 64), false);
    assert.equal(isDaamSite(site({ queryLength: 256, keyLength: 77 }), 64, 64), true);
  });

  it('AttentionStore: DAAM = mean over (layer, head) of clamp(bicubic(sum over calls)), conditional half only', () => {
    // Latent 4x4; one layer at 4x4 (factor 1) and one at 2x2 (factor 2); keys 5, keep 3 token rows.
    const K = 5;
    const full = site({ queryLength: 16, heads: 2, keyLength: K, probs: 'full' });
    const half = site({ queryLength: 4, heads: 2, keyLength: K, probs: 'half', block: 'up', modulePath: 'up_blocks.2.attentions.0.transformer_blocks.0.attn2' });
    const store = new AttentionStore({ latentHeight: 4, latentWidth: 4, tokenRows: 3, contextLength: K, perStepResolutions: [2], perLayerResolutions: [4] });
    assert.deepEqual(store.requiredSites([full, half]).map((s) => s.probs), ['full', 'half']);
    const calls = [0, 1, 2].map((c) => [
      { site: full, data: values(2 * 2 * 16 * K, 10 + c), dims: [4, 16, K] },
      { site: half, data: values(2 * 2 * 4 * K, 20 + c).map((v) => v * 2 - 0.5), dims: [4, 4, K] },
    ]);
    calls.forEach((outs, c) => store.add(c, 900 - c * 100, outs, 2, 1));

    // Independent computation: per (layer, head), per token row: sum of the cond maps, resize, clamp, then mean.
    const expected = new Float64Array(3 * 16);
    let keys = 0;
    for (const [li, s] of [full, half].entries()) {
      const hw = s.queryLength;
      const side = Math.sqrt(hw);
      for (let h = 0; h < 2; h++) {
        keys++;
        for (let r = 0; r < 3; r++) {
          const sum = new Float32Array(hw);
          for (const outs of calls) {
            const d = outs[li].data;
            for (let qi = 0; qi < hw; qi++) sum[qi] += d[(2 + h) * hw * K + qi * K + r]; // cond item = heads 2..3
          }
          const up = bicubicResize(sum, 1, side, side, 4, 4);
          for (let i = 0; i < 16; i++) expected[r * 16 + i] += Math.max(0, up[i]);
        }
      }
    }
    const g = store.daamGlobal();
    assert.deepEqual([g.tokens, g.height, g.width], [3, 4, 4]);
    for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(g.data[i] - expected[i] / keys) < 1e-6, `entry ${i}`);
    // Word map = mean of its rows.
    const w = store.wordMap([1, 2], g);
    for (let i = 0; i < 16; i++) assert.ok(Math.abs(w[i] - (g.data[16 + i] + g.data[32 + i]) / 2) < 1e-7);
    assert.deepEqual(meanOfRows(g, [2]), g.data.slice(32, 48));
    // Per-step map at 2x2 of call 1 = head mean of the cond half of the 2x2 layer.
    const m = store.stepMap(1, 2);
    const d = calls[1][1].data;
    for (let i = 0; i < 4 * K; i++) assert.ok(Math.abs(m.data[i] - (d[2 * 4 * K + i] + d[3 * 4 * K + i]) / 2) < 1e-6);
    assert.throws(() => store.stepMap(1, 4), /not requested/);
    // Per-layer map at 4x4: head mean summed over calls, as [keys, h, w].
    const layer = store.layerMaps().get(full.modulePath);
    assert.ok(layer);
    let want = 0;
    for (const outs of calls) want += (outs[0].data[2 * 16 * K + 5 * K + 3] + outs[0].data[3 * 16 * K + 5 * K + 3]) / 2;
    assert.ok(Math.abs(layer.data[3 * 16 + 5] - want) < 1e-6);
    assert.deepEqual(store.daamLayers(), [half.modulePath, full.modulePath]);

    // A word's per-call maps at 2x2: per call, the mean over its rows of the head mean (rows 1 and 2 here).
    assert.deepEqual(store.stepResolutions(), [2]);
    const steps = store.stepWordMaps(2, [1, 2]);
    assert.deepEqual([steps.calls, steps.height, steps.width], [3, 2, 2]);
    for (let c = 0; c < 3; c++) {
      const dc = calls[c][1].data;
      for (let q = 0; q < 4; q++) {
        let want2 = 0;
        for (const r of [1, 2]) for (const h of [2, 3]) want2 += dc[h * 4 * K + q * K + r] / 4;
        assert.ok(Math.abs(steps.data[c * 4 + q] - want2) < 1e-6, `call ${c} query ${q}`);
      }
    }
    // Per-layer word maps: only the 4x4 layer was kept; its plane = mean of rows of the head mean summed over calls.
    const lw = store.layerWordMaps([0, 2]);
    assert.deepEqual(lw.map((g2) => [g2.height, g2.width, g2.layers]), [[4, 4, [full.modulePath]]]);
    for (let q = 0; q < 16; q++) {
      let want3 = 0;
      for (const outs of calls) for (const r of [0, 2]) for (const h of [2, 3]) want3 += outs[0].data[h * 16 * K + q * K + r] / 4;
      assert.ok(Math.abs(lw[0]!.data[q] - want3) < 1e-6, `layer query ${q}`);
    }
  });

  it('AttentionStore.layerWordMaps groups layers by grid (finest first) in UNet order: down, mid, up', () => {
    const K = 3;
    const mk = (block: AttentionSite['block'], modulePath: string, index: number, queryLength: number) =>
      site({ block, modulePath, index, queryLength, heads: 1, keyLength: K, probs: modulePath });
    const sites = [mk('up', 'up_blocks.1.attentions.0.x.attn2', 5, 4), mk('down', 'down_blocks.1.attentions.0.x.attn2', 1, 4),
      mk('mid', 'mid_block.attentions.0.x.attn2', 3, 1), mk('down', 'down_blocks.0.attentions.0.x.attn2', 0, 16)];
    const store = new AttentionStore({ latentHeight: 4, latentWidth: 4, tokenRows: 2, contextLength: K, daam: false, perLayerResolutions: [1, 2, 4] });
    store.add(0, 1, sites.map((s) => ({ site: s, data: values(s.queryLength * K, s.index + 1), dims: [1, s.queryLength, K] })), 1, 0);
    const groups = store.layerWordMaps([1]);
    assert.deepEqual(groups.map((g) => [g.height, g.layers]), [
      [4, ['down_blocks.0.attentions.0.x.attn2']],
      [2, ['down_blocks.1.attentions.0.x.attn2', 'up_blocks.1.attentions.0.x.attn2']],
      [1, ['mid_block.attentions.0.x.attn2']],
    ]);
    // The 2x2 group's second plane is the up layer's token-1 column.
    const up = values(4 * K, 6);
    for (let q = 0; q < 4; q++) assert.ok(Math.abs(groups[1]!.data[4 + q] - up[q * K + 1]) < 1e-7);
  });
});
