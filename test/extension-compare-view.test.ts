// The explain panel's Compare methods view (extension/src/core/compareView.ts, bundled into the webview) and the
// request fields its buttons send (core/explainOptions.ts): ranges per scale, captions, and the server schema
// accepting what the panel sends.
import assert from 'node:assert/strict';
import { compareView, formatWallMs, unit } from '../extension/src/core/compareView.js';
import { compareRequestFields, explainMethods, LRP_PANEL_METHODS } from '../extension/src/core/explainOptions.js';
import { ExplainRequest } from '../engine/protocol/index.js';

describe('extension: compare methods view', () => {
  const json = {
    classIndex: 3, label: 'cat',
    methods: [
      { method: 'rollout', wallMs: 41.26, map: [[0.2, 0.4], [0.6, 1.0]] },
      { method: 'gradcam', wallMs: 12345, map: [[-2, 0], [2, 6]] },
    ],
    skipped: [{ method: 'chefer', reason: 'no logits' }],
  };

  it("'normalized': each tile on its own min..max, bar 0..1; captions are the wall times", () => {
    const v = compareView(json, 'normalized');
    assert.equal(v.heading, 'Methods compared: cat (class 3)');
    assert.deepEqual(v.tiles.map((t) => [t.title, t.caption]), [['rollout', '41.3 ms'], ['gradcam', '12.3 s']]);
    assert.deepEqual(v.tiles.map((t) => t.range), [{ min: 0.2, max: 1.0 }, { min: -2, max: 6 }]);
    assert.deepEqual(v.bar, { min: 0, max: 1, label: 'each map min–max scaled' });
    assert.deepEqual(v.skipped, ['chefer: no logits']);
    assert.ok(Math.abs(unit(0.6, v.tiles[0]!.range) - 0.5) < 1e-12);
  });

  it("'shared': one range over every map, on the bar too", () => {
    const v = compareView(json, 'shared');
    for (const t of v.tiles) assert.deepEqual(t.range, { min: -2, max: 6 });
    assert.deepEqual([v.bar.min, v.bar.max], [-2, 6]);
    assert.equal(unit(2, v.tiles[1]!.range), 0.5);
    assert.equal(unit(99, v.tiles[1]!.range), 1);
    assert.equal(unit(Number.NaN, v.tiles[1]!.range), 0);
  });

  it('a flat map gets a non-empty range (no division by zero); CLIP headings name the text', () => {
    const v = compareView({ text: 'a dog', methods: [{ method: 'chefer', wallMs: 5, map: [[3, 3], [3, 3]] }] });
    assert.deepEqual(v.tiles[0]!.range, { min: 3, max: 4 });
    assert.equal(v.heading, 'Methods compared: "a dog"');
    assert.equal(formatWallMs(250.4), '250 ms');
  });

  it('Explain asks for the ticked LRP methods (ViT only); Compare sends compare, a class, never top', () => {
    assert.deepEqual(explainMethods('vit', {}), ['rollout', 'grad-rollout', 'chefer', 'heads', 'distance']);
    assert.deepEqual(explainMethods('vit', { lrp: ['gradcam', 'bogus', 'transformer-attribution'] }), ['rollout', 'grad-rollout', 'chefer', 'heads', 'distance', 'transformer-attribution', 'gradcam']);
    assert.deepEqual(explainMethods('clip', { lrp: [...LRP_PANEL_METHODS] }), ['chefer', 'rollout', 'heads', 'distance']);
    assert.deepEqual(compareRequestFields('vit', { top: '3', compareClass: '7', headsLayer: '1', discard: '0.5' }), { compare: true, classIndex: 7, discard: 0.5 });
    assert.deepEqual(compareRequestFields('vit', { compareClass: '' }), { compare: true });
    assert.deepEqual(compareRequestFields('vit', { attnLrpAttention: 'attnlrp' }), { compare: true, attnLrpAttention: 'attnlrp' });
    assert.ok(explainMethods('vit', { lrp: ['attn-lrp'] }).includes('attn-lrp'));
    assert.deepEqual(compareRequestFields('clip', { compareClass: '2', cheferStart: 'all' }), { compare: true, cheferStart: 'all' });
    for (const [kind, fields] of [['vit', compareRequestFields('vit', { compareClass: '1' })], ['clip', compareRequestFields('clip', {})], ['vit', { methods: explainMethods('vit', { lrp: [...LRP_PANEL_METHODS] }) }]] as const) {
      const req = { type: 'explain', id: 'x', model: '/m', image: { path: '/i.png' }, ...(kind === 'clip' ? { texts: ['a cat'] } : {}), ...fields };
      const parsed = ExplainRequest.safeParse(req);
      assert.ok(parsed.success, `${kind}: ${parsed.success ? '' : parsed.error.message}`);
    }
  });
});
