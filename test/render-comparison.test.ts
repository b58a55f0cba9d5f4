// The compare figure's pieces: the colour bar runs from the colormap's low end (bottom) to its high end (top), the
// figure holds every tile and refuses an empty colour range; the chart's scatter mode draws no line and draws the
// error bars it is given.
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { colorBarImage, colormapLut, lineChartSvg, makeRgb, renderComparison } from '../engine/render/index.js';

describe('render: method comparison figure and scatter chart', () => {
  it('colour bar: top row = the colormap at 1, bottom row = at 0', () => {
    const bar = colorBarImage('turbo', 3, 50);
    const lut = colormapLut('turbo');
    assert.deepEqual([...bar.data.subarray(0, 3)], [...lut.subarray(255 * 3, 256 * 3)]);
    const last = (49 * 3 + 2) * 3;
    assert.deepEqual([...bar.data.subarray(last, last + 3)], [...lut.subarray(0, 3)]);
  });

  it('the figure holds every tile (5 per row) plus the bar; an empty colour range is refused', async () => {
    const tile = (v: number): { image: ReturnType<typeof makeRgb>; title: string; caption: string } => ({ image: makeRgb(200, 200, [v, v, v]), title: `m${v}`, caption: `${v} ms` });
    const png = await renderComparison([tile(10), tile(50), tile(90), tile(130), tile(170), tile(210)], { colormap: 'turbo', min: 0, max: 1, label: 'scaled' });
    const meta = await sharp(png).metadata();
    assert.ok(meta.width! >= 5 * 200 + 18 && meta.height! >= 2 * 200, `${meta.width}×${meta.height}`);
    await assert.rejects(renderComparison([tile(1)], { colormap: 'turbo', min: 1, max: 1, label: 'x' }), /max > min/);
  });

  it('scatter series: markers and error bars, no line', () => {
    const svg = lineChartSvg({ series: [{ name: 'head 0', line: false, points: [[0, 1], [1, 2]], yErrors: [0.5, 0] }] });
    assert.equal((svg.match(/<path /g) ?? []).length, 0);
    assert.equal((svg.match(/<circle /g) ?? []).length, 3, 'two points and the legend dot');
    assert.equal((svg.match(/opacity="0.7"/g) ?? []).length, 1, 'one error bar (the zero one is not drawn)');
  });
});
