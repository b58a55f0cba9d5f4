// The map panel's layer/resolution filter and step slider (extension/src/core/mapViews.ts, also bundled into the
// webview): which plane is drawn for each choice, on hand-made stacks whose every value says where it came from.
import assert from 'node:assert/strict';
import { selectPlane, shortLayerName, splitStack, stepCount, viewOptions, type LayerGroup, type StepGroup, type WordMaps } from '../extension/src/core/mapViews.js';

/** A plane filled with one value, so the test can tell which plane was picked. */
const filled = (n: number, v: number): Float32Array => new Float32Array(n).fill(v);

const layerGroups: LayerGroup[] = [
  { height: 4, width: 4, layers: ['down_blocks.0.attentions.0.transformer_blocks.0.attn2', 'up_blocks.3.attentions.0.transformer_blocks.0.attn2'] },
  { height: 2, width: 2, layers: ['down_blocks.1.attentions.0.transformer_blocks.0.attn2', 'mid_block.attentions.0.transformer_blocks.0.attn2', 'up_blocks.2.attentions.0.transformer_blocks.0.attn2'] },
];
const stepGroups: StepGroup[] = [{ height: 2, width: 2, calls: 3, timesteps: [901, 801, 1] }];
const word: WordMaps = {
  word: 'cat',
  tokenIndices: [2],
  daam: { height: 8, width: 8, data: filled(64, 0.5) },
  layers: [
    { height: 4, width: 4, planes: [filled(16, 1), filled(16, 3)] },
    { height: 2, width: 2, planes: [filled(4, 10), filled(4, 20), filled(4, 60)] },
  ],
  steps: [{ height: 2, width: 2, planes: [filled(4, 100), filled(4, 200), filled(4, 300)] }],
};

const first = (s: { plane: { data: ArrayLike<number> } }): number => s.plane.data[0]!;

describe('extension: map panel views (layer/resolution filter, step slider)', () => {
  it('lists DAAM, then per grid (finest first) the layer mean and each layer by its short name', () => {
    assert.deepEqual(viewOptions(layerGroups).map((v) => [v.id, v.label]), [
      ['daam', 'All layers (DAAM)'],
      ['grid:4x4', '4×4: mean of 2 layers'],
      ['layer:4x4:0', '4×4: down_blocks.0.attentions.0'],
      ['layer:4x4:1', '4×4: up_blocks.3.attentions.0'],
      ['grid:2x2', '2×2: mean of 3 layers'],
      ['layer:2x2:0', '2×2: down_blocks.1.attentions.0'],
      ['layer:2x2:1', '2×2: mid_block.attentions.0'],
      ['layer:2x2:2', '2×2: up_blocks.2.attentions.0'],
    ]);
    assert.deepEqual(viewOptions(undefined).map((v) => v.id), ['daam']);
    assert.equal(shortLayerName('up_blocks.1.attentions.2.transformer_blocks.0.attn2'), 'up_blocks.1.attentions.2');
  });

  it('all steps: DAAM, a grid (mean of its layers) or one layer', () => {
    assert.equal(first(selectPlane(word, 'daam', null, layerGroups)), 0.5);
    const grid = selectPlane(word, 'grid:2x2', null, layerGroups);
    assert.equal(first(grid), 30); // (10 + 20 + 60) / 3
    assert.equal(grid.caption, '2×2, mean of 3 layers, all steps');
    assert.equal(grid.note, undefined);
    const layer = selectPlane(word, 'layer:4x4:1', null, layerGroups);
    assert.equal(first(layer), 3);
    assert.equal(layer.caption, 'up_blocks.3.attentions.0 (4×4), all steps');
    assert.deepEqual([layer.plane.height, layer.plane.width], [4, 4]);
  });

  it('a step: the per-step map of the view\'s resolution, clamped to the calls; notes when it cannot be exact', () => {
    const s1 = selectPlane(word, 'grid:2x2', 1, layerGroups, stepGroups);
    assert.equal(first(s1), 200);
    assert.equal(s1.caption, '2×2, mean of its layers, step 2 of 3 (t=801)');
    assert.equal(s1.note, undefined);
    assert.equal(first(selectPlane(word, 'grid:2x2', 99, layerGroups, stepGroups)), 300);
    // DAAM at a step: the finest per-step resolution.
    assert.equal(first(selectPlane(word, 'daam', 0, layerGroups, stepGroups)), 100);
    // A layer at a step: its grid's layer mean, said so.
    const l = selectPlane(word, 'layer:2x2:1', 2, layerGroups, stepGroups);
    assert.equal(first(l), 300);
    assert.match(l.note ?? '', /per-step maps are kept per resolution, not per layer/);
    // A grid without per-step maps: the nearest one that has them.
    const g = selectPlane(word, 'grid:4x4', 0, layerGroups, stepGroups);
    assert.equal(first(g), 100);
    assert.match(g.note ?? '', /no per-step maps at 4×4: showing 2×2/);
  });

  it('falls back to DAAM / all steps, with a note, when the run lacks the data', () => {
    const bare: WordMaps = { word: 'frog', tokenIndices: [5], daam: { height: 8, width: 8, data: filled(64, 7) } };
    const a = selectPlane(bare, 'layer:4x4:0', null, layerGroups);
    assert.equal(first(a), 7);
    assert.match(a.note ?? '', /no maps for that layer filter/);
    const b = selectPlane(bare, 'daam', 3, layerGroups, stepGroups);
    assert.equal(first(b), 7);
    assert.match(b.note ?? '', /no per-step maps/);
    assert.equal(stepCount([bare]), 0);
    assert.equal(stepCount([bare, word]), 3);
  });

  it('splitStack turns an .npy [n, h, w] into planes and rejects other shapes', () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => i);
    const s = splitStack([3, 2, 2], data);
    assert.deepEqual(s.planes.map((p) => Array.from(p)), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
    assert.throws(() => splitStack([2, 2], data), /expected a stack of maps \[n, height, width\]/);
    assert.throws(() => splitStack([2, 2, 2], data), /does not match 12 values/);
  });
});
