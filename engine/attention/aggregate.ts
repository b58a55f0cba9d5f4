// Pure aggregation maths for attention maps: conditional-slice extraction, Attend-and-Excite's head/layer mean,
// torch-exact bicubic resampling and DAAM's merge. The stateful per-step collection lives in store.ts.
import type { AttentionSite } from './discover.js';

/** Maps per token: [tokens, height, width] row-major (DAAM's layout; one image per token). */
export interface TokenMaps {
  tokens: number;
  height: number;
  width: number;
  data: Float32Array;
}

/** Maps per query position: [height, width, keys] row-major (Attend-and-Excite's layout). */
export interface QueryMaps {
  height: number;
  width: number;
  keys: number;
  data: Float32Array;
}

/** Attention probabilities of one site for one UNet call (see unet.ts AttentionOutput). */
export interface SiteProbs {
  site: AttentionSite;
  data: Float32Array;
  dims: number[];
}

export class AttentionAggregateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AttentionAggregateError';
  }
}

/**
 * The probabilities of batch item `item` as a view [heads, q, k]. Both layouts put item b's heads contiguously:
 * 'bh,q,k' is [b*heads, q, k] with the batch outermost (diffusers' head_to_batch_dim), 'b,h,q,k' is [b, h, q, k].
 * With CFG the batch is [uncond, cond], so the conditional half is item 1 — DAAM's `map_[size(0)//2:]`.
 */
export function itemSlice(p: SiteProbs, batch: number, item: number): Float32Array {
  const { heads, queryLength: q, keyLength: k } = p.site;
  const per = heads * q * k;
  if (p.data.length !== batch * per) {
    throw new AttentionAggregateError(`${p.site.modulePath}: ${p.data.length} probabilities, expected batch ${batch} x ${heads} heads x ${q} x ${k}`);
  }
  if (item < 0 || item >= batch) throw new RangeError(`batch item ${item} out of range 0..${batch - 1}`);
  return p.data.subarray(item * per, (item + 1) * per);
}

/** The (height, width) grid of a site, from its discovery or from the latent size. */
export function siteGrid(site: AttentionSite, latentHeight: number, latentWidth: number): [number, number] {
  if (site.height && site.width && site.height * site.width === site.queryLength) return [site.height, site.width];
  for (let f = 1; f <= 64; f *= 2) {
    const h = Math.ceil(latentHeight / f);
    const w = Math.ceil(latentWidth / f);
    if (h * w === site.queryLength) return [h, w];
  }
  throw new AttentionAggregateError(`${site.modulePath}: query length ${site.queryLength} is not a downsampled ${latentHeight}x${latentWidth} grid`);
}

/**
 * Attend-and-Excite's map (diffusers AttentionStore.aggregate_attention): every cross-attention map whose query
 * length is res_h·res_w, of batch item `item`, reshaped to (heads, res_h, res_w, keys), concatenated over layers
 * and averaged: a mean over all (layer, head) maps, so layers with more heads weigh more, as in the original.
 */
export function aeAggregate(probs: readonly SiteProbs[], resH: number, resW: number, batch: number, item: number): QueryMaps {
  const chosen = probs.filter((p) => p.site.kind === 'cross' && p.site.queryLength === resH * resW);
  if (chosen.length === 0) {
    throw new AttentionAggregateError(`no cross-attention layer at ${resH}x${resW} among the captured ones ` +
      `(${[...new Set(probs.map((p) => p.site.queryLength))].join(', ')} query positions)`);
  }
  const keys = chosen[0].site.keyLength;
  const plane = resH * resW * keys;
  const acc = new Float64Array(plane);
  let count = 0;
  for (const p of chosen) {
    if (p.site.keyLength !== keys) throw new AttentionAggregateError(`${p.site.modulePath}: ${p.site.keyLength} keys, others have ${keys}`);
    const s = itemSlice(p, batch, item);
    for (let h = 0; h < p.site.heads; h++) {
      const base = h * plane;
      for (let i = 0; i < plane; i++) acc[i] += s[base + i];
      count++;
    }
  }
  const data = new Float32Array(plane);
  for (let i = 0; i < plane; i++) data[i] = acc[i] / count;
  return { height: resH, width: resW, keys, data };
}

// Keys' cubic convolution kernel with A = -0.75, as torch's upsample_bicubic2d (and OpenCV) use.
const A = -0.75;
function cubic1(x: number): number {
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}
function cubic2(x: number): number {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/** Source taps and weights per output index for one axis (torch: align_corners=False, border indices clamped). */
function cubicTaps(inSize: number, outSize: number): { index: Int32Array; weight: Float64Array } {
  const index = new Int32Array(outSize * 4);
  const weight = new Float64Array(outSize * 4);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    // area_pixel_compute_source_index with cubic=true: no clamp of the real coordinate, only of the taps.
    const real = scale * (o + 0.5) - 0.5;
    const i0 = Math.floor(real);
    const t = real - i0;
    const w = [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)];
    for (let k = 0; k < 4; k++) {
      index[o * 4 + k] = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
      weight[o * 4 + k] = w[k];
    }
  }
  return { index, weight };
}

/**
 * `F.interpolate(x, size=(outH, outW), mode='bicubic', align_corners=False)` for `planes` planes of inH×inW
 * (row-major, plane after plane). Same size is the identity, as in torch.
 */
export function bicubicResize(src: Float32Array, planes: number, inH: number, inW: number, outH: number, outW: number): Float32Array {
  if (src.length !== planes * inH * inW) throw new RangeError(`bicubicResize: ${src.length} values for ${planes}x${inH}x${inW}`);
  if (inH === outH && inW === outW) return Float32Array.from(src);
  const ty = cubicTaps(inH, outH);
  const tx = cubicTaps(inW, outW);
  const out = new Float32Array(planes * outH * outW);
  const row = new Float64Array(4);
  for (let p = 0; p < planes; p++) {
    const base = p * inH * inW;
    const obase = p * outH * outW;
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        for (let ky = 0; ky < 4; ky++) {
          const r = base + ty.index[oy * 4 + ky] * inW;
          let v = 0;
          for (let kx = 0; kx < 4; kx++) v += src[r + tx.index[ox * 4 + kx]] * tx.weight[ox * 4 + kx];
          row[ky] = v;
        }
        out[obase + oy * outW + ox] =
          row[0] * ty.weight[oy * 4] + row[1] * ty.weight[oy * 4 + 1] + row[2] * ty.weight[oy * 4 + 2] + row[3] * ty.weight[oy * 4 + 3];
      }
    }
  }
  return out;
}

/** DAAM's spatial factor of a map: int(sqrt(latent_hw // query_length)) (1 = full latent resolution). */
export function daamFactor(queryLength: number, latentHeight: number, latentWidth: number): number {
  return Math.floor(Math.sqrt(Math.floor((latentHeight * latentWidth) / queryLength)));
}

/** DAAM's default `factors` in compute_global_heat_map: maps whose factor is not in this set are left out. */
export const DAAM_FACTORS: ReadonlySet<number> = new Set([0, 1, 2, 4, 8, 16, 32, 64]);

/**
 * Whether DAAM's own code, with its fixed grid of `grid`×`grid` (sqrt of its latent_hw: 64 when the UNet's
 * sample_size × the VAE scale factor is 512 or 1024, else 96), uses a site: a DAAM site whose factor relative to that
 * grid, int(sqrt(grid² // q)), is in DAAM_FACTORS and not 8. DAAM reshapes q as a square, so non-square grids fail.
 */
export function isDaamGridSite(site: AttentionSite, grid: number, latentHeight: number, latentWidth: number, contextLength = 77): boolean {
  const f = daamFactor(site.queryLength, grid, grid);
  if (!(site.kind === 'cross' && (site.block === 'down' || site.block === 'up') && site.keyLength === contextLength &&
    f !== 8 && DAAM_FACTORS.has(f))) return false;
  const [h, w] = siteGrid(site, latentHeight, latentWidth);
  if (h !== w) {
    throw new AttentionAggregateError(`${site.modulePath}: a ${h}x${w} grid is not square; DAAM's fixed grid ` +
      `(daamGrid ${grid}) reproduces DAAM's own code, which only handles square images (leave daamGrid unset)`);
  }
  return true;
}

/**
 * Whether DAAM's default trace captures a site: attn2 of the CrossAttn down/up blocks (the mid block is not
 * hooked), key length = the text context, and factor ≠ 8 (DAAM skips those as too coarse).
 */
export function isDaamSite(site: AttentionSite, latentHeight: number, latentWidth: number, contextLength = 77): boolean {
  return site.kind === 'cross' && (site.block === 'down' || site.block === 'up') && site.keyLength === contextLength &&
    daamFactor(site.queryLength, latentHeight, latentWidth) !== 8;
}

/** A word's map: the mean of its token rows (DAAM's compute_word_heat_map). */
export function meanOfRows(maps: TokenMaps, rows: readonly number[]): Float32Array {
  if (rows.length === 0) throw new AttentionAggregateError('a word map needs at least one token row');
  const plane = maps.height * maps.width;
  const acc = new Float64Array(plane);
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= maps.tokens) throw new RangeError(`token row ${r} is outside 0..${maps.tokens - 1}`);
    const off = r * plane;
    for (let i = 0; i < plane; i++) acc[i] += maps.data[off + i];
  }
  const out = new Float32Array(plane);
  for (let i = 0; i < plane; i++) out[i] = acc[i] / rows.length;
  return out;
}

/** [q, k] (query-major) of a single map → [k, q] rows per token, keeping the first `rows` keys. */
export function transposeToTokenRows(qk: Float32Array, q: number, k: number, rows: number): Float32Array {
  const out = new Float32Array(rows * q);
  for (let i = 0; i < q; i++) {
    const src = i * k;
    for (let r = 0; r < rows; r++) out[r * q + i] = qk[src + r];
  }
  return out;
}

/** [h, w, k] → [k, h, w]. */
export function queryMapsToTokenMaps(m: QueryMaps): TokenMaps {
  return { tokens: m.keys, height: m.height, width: m.width, data: transposeToTokenRows(m.data, m.height * m.width, m.keys, m.keys) };
}
