import assert from 'node:assert/strict';
import sharp from 'sharp';
import { colormapLut } from '../engine/render/colormap.js';
import { makeRgb, type RgbImage } from '../engine/render/image.js';
import { makeMap } from '../engine/render/map.js';
import { heatmapImage, overlayHeatmap, OverlayError } from '../engine/render/overlay.js';
import { gridLayout, renderGrid, renderSideBySide } from '../engine/render/grid.js';
import { lineChartSvg, niceTicks, renderLineChart, ChartError } from '../engine/render/chart.js';

async function decode(png: Buffer): Promise<{ w: number; h: number; px: Buffer }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { w: info.width, h: info.height, px: data };
}

function pixel(img: RgbImage | { w: number; px: Buffer }, x: number, y: number): number[] {
  const w = 'width' in img ? img.width : img.w;
  const d = 'data' in img ? img.data : img.px;
  return [d[(y * w + x) * 3]!, d[(y * w + x) * 3 + 1]!, d[(y * w + x) * 3 + 2]!];
}

describe('render: heat-map overlay', function () {
  it('a one-hot map on a non-square grid peaks at the pixels under that cell', function () {
    // 6 wide × 4 high map on a 48 × 32 image: each cell covers 8×8 pixels. Cell (row 2, col 4) → x 32..39, y 16..23
    // (an interior cell: at the border torch's clamping flattens the peak over several pixels).
    const map = makeMap(6, 4);
    map.data[2 * 6 + 4] = 1;
    const image = makeRgb(48, 32, [100, 100, 100]);
    const lut = colormapLut('viridis');
    const top = [lut[765]!, lut[766]!, lut[767]!];
    for (const resample of ['bilinear', 'bicubic'] as const) {
      const out = overlayHeatmap(image, map, { opacity: 0.6, colormap: 'viridis', resample });
      const blended = top.map((c) => Math.round(0.4 * 100 + 0.6 * c));
      const hits: [number, number][] = [];
      for (let y = 0; y < 32; y++) for (let x = 0; x < 48; x++) if (pixel(out, x, y).join() === blended.join()) hits.push([x, y]);
      assert.ok(hits.length > 0, `${resample}: the peak colour appears`);
      // torch geometry: the cell centre lands between pixels 35 and 36 (x) and 19 and 20 (y).
      for (const [x, y] of hits) assert.ok(x >= 35 && x <= 36 && y >= 19 && y <= 20, `${resample}: peak at (${x}, ${y})`);
      assert.equal(hits.length, 4, `${resample}: the 2×2 pixels around the centre`);
      assert.notDeepEqual(pixel(out, 0, 0), blended);
    }
  });

  it('opacity 0 returns the image, opacity 1 the heat map; alphaByValue keeps cold pixels unchanged', function () {
    const map = makeMap(2, 2, [0, 0.2, 0.7, 1]);
    const image = makeRgb(4, 4, [10, 200, 30]);
    assert.deepEqual(overlayHeatmap(image, map, { opacity: 0 }).data, image.data);
    assert.deepEqual(overlayHeatmap(image, map, { opacity: 1 }).data, heatmapImage(map, 4, 4).data);
    const a = overlayHeatmap(image, makeMap(4, 4, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), { opacity: 0.8, alphaByValue: true });
    assert.deepEqual(pixel(a, 0, 0), [10, 200, 30]);
    assert.throws(() => overlayHeatmap(image, map, { opacity: 1.5 }), OverlayError);
  });

  it('non-finite map values are handled: no NaN pixels, same as treating them as 0', function () {
    const bad = makeMap(3, 3, [NaN, 1, 0.5, Infinity, 0.2, -Infinity, 0, 0.3, NaN]);
    const clean = makeMap(3, 3, [0, 1, 0.5, 0, 0.2, 0, 0, 0.3, 0]);
    const image = makeRgb(9, 9, [50, 60, 70]);
    for (const size of [3, 9]) {
      const img = size === 3 ? makeRgb(3, 3, [50, 60, 70]) : image;
      assert.deepEqual(overlayHeatmap(img, bad).data, overlayHeatmap(img, clean).data, `size ${size}`);
    }
    const allNan = heatmapImage(makeMap(2, 2, [NaN, NaN, NaN, NaN]), 4, 4, { colormap: 'inferno' });
    const lo = colormapLut('inferno');
    for (let p = 0; p < 16; p++) assert.deepEqual(pixel(allNan, p % 4, Math.floor(p / 4)), [lo[0], lo[1], lo[2]]);
  });
});

describe('render: grids and side-by-side', function () {
  it('layout arithmetic', function () {
    const l = gridLayout(5, { tileWidth: 32, tileHeight: 32 });
    assert.equal(l.columns, 3);
    assert.equal(l.rows, 2);
    assert.equal(l.width, 4 + 3 * (32 + 4));
    assert.equal(l.height, 4 + 2 * (32 + 20 + 4));
    assert.deepEqual(l.cells[4], { x: 4 + 36, y: 4 + 56, labelX: 4 + 36 + 16, labelY: 4 + 56 + 32 + 10 });
    assert.throws(() => gridLayout(0, { tileWidth: 1, tileHeight: 1 }), /at least one tile/);
  });

  it('renders labelled tiles at their cells, with text drawn and markup-laden labels escaped', async function () {
    const colours: [number, number, number][] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]];
    const tiles = colours.map((c, i) => ({ image: makeRgb(32, 32, c), label: i === 0 ? `<cat> & "dog"` : `tok${i}` }));
    const { png, layout } = await renderGrid(tiles, { title: 'a <b> title' });
    const { w, h, px } = await decode(png);
    assert.deepEqual([w, h], [layout.width, layout.height]);
    layout.cells.forEach((c, i) => assert.deepEqual(pixel({ w, px }, c.x + 16, c.y + 16), colours[i], `tile ${i}`));
    // the label band under tile 0 has dark text pixels; a band without a label (past the last tile) has none
    const dark = (x0: number, y0: number, ww: number, hh: number) => {
      let n = 0;
      for (let y = y0; y < y0 + hh; y++) for (let x = x0; x < x0 + ww; x++) if (pixel({ w, px }, x, y).every((v) => v < 128)) n++;
      return n;
    };
    const c0 = layout.cells[0]!;
    assert.ok(dark(c0.x, c0.y + 32, 32, layout.labelHeight) > 5, 'label text rendered');
    assert.equal(dark(4 + 2 * 36, layout.cells[3]!.y + 32, 32, layout.labelHeight), 0, 'empty slot has no text');
  });

  it('tiles of another size are resized to the tile size', async function () {
    const { png, layout } = await renderGrid([{ image: makeRgb(64, 64, [9, 9, 9]) }, { image: makeRgb(16, 16, [200, 9, 9]) }], { tileWidth: 20, tileHeight: 10, columns: 1 });
    const { w, h, px } = await decode(png);
    assert.deepEqual([w, h], [4 + 24, 4 + 2 * 14]); // no labels → no label band
    assert.equal(layout.labelHeight, 0);
    assert.deepEqual(pixel({ w, px }, 14, 4 + 14 + 5), [200, 9, 9]);
  });

  it('side-by-side puts titled panels in one row', async function () {
    const { png, layout } = await renderSideBySide([
      { image: makeRgb(40, 30, [255, 0, 0]), title: 'plain' },
      { image: makeRgb(40, 30, [0, 0, 255]), title: 'Attend & Excite' },
    ]);
    const { w, h, px } = await decode(png);
    assert.deepEqual([w, h], [8 + 2 * 48, 8 + 30 + 24 + 8]);
    assert.deepEqual(pixel({ w, px }, layout.cells[1]!.x + 20, layout.cells[1]!.y + 15), [0, 0, 255]);
  });
});

describe('render: line charts', function () {
  it('nice ticks', function () {
    assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(0, 49, 5), [0, 10, 20, 30, 40]);
    assert.deepEqual(niceTicks(0.013, 0.097, 4), [0.02, 0.04, 0.06, 0.08]);
    assert.deepEqual(niceTicks(NaN, 1), []);
  });

  it('PNG decodes at the requested size, draws the series colour, and survives NaN points', async function () {
    const spec = {
      width: 320, height: 200, title: 'A&E loss <per subject>', xLabel: 'step', yLabel: 'loss',
      series: [
        { name: 'cat', points: [[0, 0.9], [1, 0.7], [2, NaN], [3, 0.2], [4, 0.1]] as [number, number][], color: '#ff0000' },
        { name: 'frog', points: [[0, 0.5], [4, 0.4]] as [number, number][], color: '#0000ff' },
      ],
      rules: [{ y: 0.5, label: 'threshold' }],
      integerX: true,
    };
    const svg = lineChartSvg(spec);
    assert.ok(!svg.includes('NaN'), 'no NaN coordinates in the SVG');
    assert.ok(svg.includes('A&amp;E loss &lt;per subject&gt;'));
    const { w, h, px } = await decode(await renderLineChart(spec));
    assert.deepEqual([w, h], [320, 200]);
    let red = 0;
    for (let p = 0; p < w * h; p++) if (px[p * 3]! > 200 && px[p * 3 + 1]! < 60 && px[p * 3 + 2]! < 60) red++;
    assert.ok(red > 20, `series drawn (${red} red pixels)`);
  });

  it('empty or all-NaN data still renders; impossible sizes are refused', async function () {
    const { w, h } = await decode(await renderLineChart({ width: 200, height: 150, series: [{ name: 'x', points: [[NaN, 1]] }] }));
    assert.deepEqual([w, h], [200, 150]);
    assert.throws(() => lineChartSvg({ width: 50, height: 50, series: [] }), ChartError);
  });
});
