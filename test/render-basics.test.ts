import assert from 'node:assert/strict';
import sharp from 'sharp';
import { interpolateInferno, interpolateTurbo, interpolateViridis } from 'd3-scale-chromatic';
import { COLORMAP_NAMES, applyColormap, colormapLut, parseCssColor, type ColormapName } from '../engine/render/colormap.js';
import { makeMap, mapStats, normalizeValues, resizeMap, type Map2D } from '../engine/render/map.js';
import { ImageError, decodeImage, decoderChwToHwc, floatHwcToRgb, floatImageToPng, quantize } from '../engine/render/image.js';
import { escapeXml } from '../engine/render/svg.js';

function lutColor(lut: Uint8Array, i: number): number[] {
  return [lut[i * 3]!, lut[i * 3 + 1]!, lut[i * 3 + 2]!];
}

describe('render: colormaps', function () {
  it('LUT endpoints equal the published colormap endpoints and d3 values', function () {
    // Endpoints as published by the colormaps' authors (matplotlib's _cm_listed / Google's turbo), independent of d3.
    const published: Record<string, [number[], number[]]> = {
      viridis: [[0x44, 0x01, 0x54], [0xfd, 0xe7, 0x25]],
      inferno: [[0x00, 0x00, 0x04], [0xfc, 0xff, 0xa4]],
    };
    for (const [name, [lo, hi]] of Object.entries(published)) {
      const lut = colormapLut(name as ColormapName);
      assert.deepEqual(lutColor(lut, 0), lo, `${name}(0)`);
      assert.deepEqual(lutColor(lut, 255), hi, `${name}(1)`);
    }
    const d3: Record<string, (t: number) => string> = { viridis: interpolateViridis, turbo: interpolateTurbo, inferno: interpolateInferno };
    for (const [name, f] of Object.entries(d3)) {
      const lut = colormapLut(name as ColormapName);
      for (const i of [0, 1, 64, 128, 200, 255]) assert.deepEqual(lutColor(lut, i), parseCssColor(f(i / 255)), `${name}[${i}]`);
    }
  });

  it('every colormap has 256 entries and is not constant', function () {
    for (const name of COLORMAP_NAMES) {
      const lut = colormapLut(name);
      assert.equal(lut.length, 768);
      assert.notDeepEqual(lutColor(lut, 0), lutColor(lut, 255), name);
    }
  });

  it('applyColormap sends NaN and negatives to the low end, ≥ 1 to the high end', function () {
    const lut = colormapLut('viridis');
    const rgb = applyColormap([NaN, -3, 0, 1, 7, Infinity, 0.5], 'viridis');
    assert.deepEqual([...rgb.subarray(0, 3)], lutColor(lut, 0));
    assert.deepEqual([...rgb.subarray(3, 6)], lutColor(lut, 0));
    assert.deepEqual([...rgb.subarray(12, 15)], lutColor(lut, 255));
    assert.deepEqual([...rgb.subarray(15, 18)], lutColor(lut, 255));
    assert.deepEqual([...rgb.subarray(18, 21)], lutColor(lut, 128)); // round(0.5·255) = 128
  });

  it('parseCssColor rejects what it cannot read', function () {
    assert.throws(() => parseCssColor('hsl(1,2,3)'), /cannot parse colour/);
  });
});

describe('render: map normalisation', function () {
  it('minmax / max / none / fixed range', function () {
    assert.deepEqual([...normalizeValues([2, 4, 6], 'minmax')], [0, 0.5, 1]);
    assert.deepEqual([...normalizeValues([-2, 2, 4], 'max')], [0, 0.5, 1]);
    assert.deepEqual([...normalizeValues([-0.5, 0.25, 3], 'none')], [0, 0.25, 1]);
    assert.deepEqual([...normalizeValues([0, 5, 10], { min: 0, max: 20 })], [0, 0.25, 0.5]);
    assert.throws(() => normalizeValues([1], { min: 1, max: 1 }), /max > min/);
  });

  it('non-finite values never produce NaN and are excluded from the range', function () {
    const out = normalizeValues([NaN, 1, Infinity, 3, -Infinity, 2], 'minmax');
    for (const v of out) assert.ok(Number.isFinite(v));
    assert.deepEqual([...out], [0, 0, 1, 1, 0, 0.5]);
    assert.deepEqual(mapStats([NaN, 1, Infinity]), { min: 1, max: 1, nonFinite: 2 });
    assert.deepEqual([...normalizeValues([NaN, NaN], 'minmax')], [0, 0]);
    assert.deepEqual([...normalizeValues([4, 4, 4], 'minmax')], [0, 0, 0]); // constant map: no 0/0
  });
});

/** Independent 2-D cubic convolution straight from the kernel's piecewise definition (not the separable code path). */
function cubicKernel(x: number, a = -0.75): number {
  const ax = Math.abs(x);
  if (ax <= 1) return (a + 2) * ax ** 3 - (a + 3) * ax ** 2 + 1;
  if (ax < 2) return a * ax ** 3 - 5 * a * ax ** 2 + 8 * a * ax - 4 * a;
  return 0;
}
function referenceBicubic(m: Map2D, ow: number, oh: number): number[] {
  const out: number[] = [];
  const at = (y: number, x: number) => m.data[Math.min(m.height - 1, Math.max(0, y)) * m.width + Math.min(m.width - 1, Math.max(0, x))]!;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const sy = (y + 0.5) * (m.height / oh) - 0.5;
      const sx = (x + 0.5) * (m.width / ow) - 0.5;
      let s = 0;
      for (let i = Math.floor(sy) - 1; i <= Math.floor(sy) + 2; i++) {
        for (let j = Math.floor(sx) - 1; j <= Math.floor(sx) + 2; j++) s += cubicKernel(sy - i) * cubicKernel(sx - j) * at(i, j);
      }
      out.push(s);
    }
  }
  return out;
}

describe('render: map resampling (torch align_corners=False)', function () {
  it('bilinear 2×2 → 4×4 matches the hand-computed torch result', function () {
    // x sources: −0.25→0 (clamped), 0.25, 0.75, 1.25→1 (border): columns 0, .25, .75, 1 ; rows likewise ×2.
    const out = resizeMap(makeMap(2, 2, [0, 1, 2, 3]), 4, 4, 'bilinear');
    const expect = [];
    for (const ry of [0, 0.25, 0.75, 1]) for (const rx of [0, 0.25, 0.75, 1]) expect.push(2 * ry + rx);
    for (let i = 0; i < 16; i++) assert.ok(Math.abs(out.data[i]! - expect[i]!) < 1e-6, `pixel ${i}: ${out.data[i]} vs ${expect[i]}`);
  });

  it('bicubic equals the direct 2-D cubic convolution (A = −0.75, clamped taps), up and down, non-square', function () {
    const m = makeMap(4, 3, [0, 1, 4, 2, 3, -1, 0.5, 2, 1, 2, 3, 7]);
    for (const [ow, oh] of [[7, 5], [16, 12], [3, 2], [4, 3]] as const) {
      const got = resizeMap(m, ow, oh, 'bicubic').data;
      const ref = referenceBicubic(m, ow, oh);
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-5, `${ow}×${oh} [${i}]: ${got[i]} vs ${ref[i]}`);
    }
  });

  it('bicubic keeps a constant map constant; nearest replicates cells', function () {
    const c = resizeMap(makeMap(3, 3, new Array(9).fill(0.3)), 10, 7, 'bicubic');
    for (const v of c.data) assert.ok(Math.abs(v - 0.3) < 1e-6);
    const n = resizeMap(makeMap(2, 1, [1, 2]), 4, 2, 'nearest');
    assert.deepEqual([...n.data], [1, 1, 2, 2, 1, 1, 2, 2]);
  });

  it('non-finite values are zeroed before resampling (no NaN spreads)', function () {
    const out = resizeMap(makeMap(2, 2, [NaN, 1, Infinity, 1]), 8, 8, 'bicubic');
    for (const v of out.data) assert.ok(Number.isFinite(v));
    assert.throws(() => resizeMap(makeMap(2, 2), 0, 3), /positive integers/);
  });
});

describe('render: images and PNG', function () {
  it('quantises like numpy_to_pil: clamp, ×255, round', function () {
    for (let k = 0; k <= 255; k++) assert.equal(quantize(k / 255), k);
    assert.equal(quantize(-1), 0);
    assert.equal(quantize(2), 255);
    assert.equal(quantize(NaN), 0);
    assert.equal(quantize(0.5), 128); // 127.5 → half to even → 128
  });

  it('float HWC [0,1] → PNG decodes to the quantised pixels', async function () {
    const h = 5, w = 7;
    const data = new Float32Array(h * w * 3);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 37) % 101) / 100 - 0.02; // includes values < 0
    data[4] = NaN;
    const png = await floatImageToPng(data, h, w, 3);
    const { data: px, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [w, h, 3]);
    for (let i = 0; i < data.length; i++) assert.equal(px[i], quantize(data[i]!), `byte ${i}`);
    assert.equal(px[4], 0);
    assert.throws(() => floatHwcToRgb(data, h, w + 1, 3), /expected 5×8×3/);
  });

  it('decoder CHW [-1,1] → HWC [0,1]', function () {
    const chw = [-1, 0, 1, 3, /* c1 */ 0.5, -0.5, -2, 1, /* c2 */ 0, 0, 0, 0];
    const hwc = decoderChwToHwc(chw, 3, 2, 2);
    assert.deepEqual([...hwc.subarray(0, 3)], [0, 0.75, 0.5]);
    assert.deepEqual([...hwc.subarray(9, 12)], [1, 1, 0.5]);
  });

  it('decodeImage reads PNG bytes and reports unreadable input clearly', async function () {
    const grey = await sharp({ create: { width: 3, height: 2, channels: 3, background: { r: 9, g: 9, b: 9 } } }).greyscale().png().toBuffer();
    const img = await decodeImage(grey);
    assert.deepEqual([img.width, img.height, img.data.length], [3, 2, 18]);
    assert.equal(img.data[5], 9);
    await assert.rejects(decodeImage(new Uint8Array([1, 2, 3]), 'junk.png'), (e: unknown) => e instanceof ImageError && /cannot read image junk\.png/.test((e as Error).message));
  });

  it('escapeXml escapes markup and drops XML-illegal control characters', function () {
    assert.equal(escapeXml(`<a & "b" 'c'>\u0001`), '&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;');
  });
});
