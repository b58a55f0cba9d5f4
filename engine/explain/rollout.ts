// Attention rollout and gradient rollout as jacobgil/vit-explain computes them (`rollout`, `grad_rollout`), with
// the repo's quirks reproduced by default so that Heed's maps are comparable with what users of that tool get:
//  - normalisation `a = a / a.sum(dim=-1)` divides a (1,N,N) tensor by a (1,N) one, which broadcasts to
//    a[i,j] / rowsum[j] — a COLUMN-wise division by the row sums ('vit-explain'); 'rows' is the intended
//    row-stochastic renormalisation;
//  - discard zeroes the int(N·N·ratio) lowest entries of the fused map, but never flat index 0 (the CLS→CLS entry)
//    in `rollout`; in `grad_rollout` that protection is commented out in the repo, so index 0 can be dropped there;
//  - the mask is row 0 (CLS) of the product, patch columns only, divided by its max.
// The product R = a_L ⋯ a_1 is never formed: only its CLS row is needed, and e₀ᵀ a_L ⋯ a_1 is a chain of
// vector–matrix products (O(L·N²) instead of O(L·N³)), which keeps rollout of a ViT-B/16 well under 50 ms.
import type { GridMap, LayerTensor } from './tensor.js';

export type HeadFusion = 'mean' | 'max' | 'min';
export const HEAD_FUSIONS: readonly HeadFusion[] = ['mean', 'max', 'min'];

/** 'vit-explain': the repo's column-wise division by row sums (default); 'rows': proper row renormalisation. */
export type RolloutNormalization = 'vit-explain' | 'rows';

export interface Grid {
  height: number;
  width: number;
}

export interface RolloutOptions {
  headFusion: HeadFusion;
  /** Fraction of the fused map's entries (lowest first) set to 0, in [0, 1). */
  discardRatio: number;
  normalization?: RolloutNormalization;
  /** Patch grid; height·width must equal tokens − prefixTokens. */
  grid: Grid;
  /** Tokens before the patches (CLS, distillation, registers). The CLS token must be token 0. Default 1. */
  prefixTokens?: number;
  /** The layers already fused over heads with `headFusion` (e.g. by the forward graph), N×N each. */
  fused?: readonly Float32Array[];
}

export function checkDiscardRatio(ratio: number): void {
  if (!Number.isFinite(ratio) || ratio < 0 || ratio >= 1) {
    throw new RangeError(`discard ratio must be in [0, 1) (got ${ratio}); vit-explain uses 0.9 for example`);
  }
}

/** Fuses the heads of one layer into an N×N float64 matrix. */
export function fuseHeads(layer: LayerTensor, fusion: HeadFusion): Float64Array {
  const { heads, queries, keys, data } = layer;
  const size = queries * keys;
  const out = new Float64Array(size);
  // One tight loop per fusion (a per-element branch on the fusion kind costs ~3× on V8); each output element is
  // written once, reading the heads as parallel streams.
  if (fusion === 'mean') {
    for (let i = 0; i < size; i++) {
      let m = 0;
      for (let h = 0; h < heads; h++) m += data[h * size + i];
      out[i] = m / heads;
    }
  } else if (fusion === 'max') {
    for (let i = 0; i < size; i++) {
      let m = data[i];
      for (let h = 1; h < heads; h++) {
        const v = data[h * size + i];
        if (v > m) m = v;
      }
      out[i] = m;
    }
  } else {
    for (let i = 0; i < size; i++) {
      let m = data[i];
      for (let h = 1; h < heads; h++) {
        const v = data[h * size + i];
        if (v < m) m = v;
      }
      out[i] = m;
    }
  }
  return out;
}

/**
 * Zeroes the `int(len·ratio)` lowest entries (torch `topk(k, largest=False)`), in place. With `protectFirst`, flat
 * index 0 is left alone even when it is among them (vit-explain's `indices[indices != 0]`: the set is not refilled).
 * Ties at the threshold are broken by index order (torch's order among equal values is unspecified).
 */
export function discardLowest(flat: Float64Array, ratio: number, protectFirst: boolean): void {
  checkDiscardRatio(ratio);
  const k = Math.floor(flat.length * ratio);
  if (k <= 0) return;
  const threshold = kthSmallest(Float64Array.from(flat), k - 1);
  let below = 0;
  for (let i = 0; i < flat.length; i++) if (flat[i] < threshold) below++;
  let equalToDrop = k - below;
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    let drop = false;
    if (v < threshold) drop = true;
    else if (v === threshold && equalToDrop > 0) {
      drop = true;
      equalToDrop--;
    }
    if (drop && !(protectFirst && i === 0)) flat[i] = 0;
  }
}

/** The value of rank `k` (0-based) in ascending order; reorders `a`. Quickselect: O(n), unlike a full sort. */
export function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    // Median of three as pivot keeps sorted-ish inputs (attention rows) away from the quadratic case.
    const mid = (lo + hi) >>> 1;
    const x = a[lo], y = a[mid], z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

/** a = (F + I)/2 followed by the chosen normalisation, in place on `fused` (N×N). */
export function residualNormalize(fused: Float64Array, n: number, normalization: RolloutNormalization): Float64Array {
  for (let i = 0; i < n; i++) fused[i * n + i] += 1;
  for (let i = 0; i < fused.length; i++) fused[i] /= 2;
  const rowSum = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += fused[i * n + j];
    rowSum[i] = s;
  }
  if (normalization === 'vit-explain') {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) fused[i * n + j] /= rowSum[j];
  } else {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) fused[i * n + j] /= rowSum[i];
  }
  return fused;
}

/** Row `row` of a_L ⋯ a_1 (matrices in forward order, each N×N): e_rowᵀ a_L, then times a_{L−1}, ... */
export function productRow(matrices: readonly Float64Array[], n: number, row = 0): Float64Array {
  let v = new Float64Array(n);
  v[row] = 1;
  for (let l = matrices.length - 1; l >= 0; l--) {
    const a = matrices[l];
    const next = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const vi = v[i];
      if (vi === 0) continue;
      const base = i * n;
      for (let j = 0; j < n; j++) next[j] += vi * a[base + j];
    }
    v = next;
  }
  return v;
}

/** The full product a_L ⋯ a_1 (for traces and tests; O(L·N³)). */
export function productMatrix(matrices: readonly Float64Array[], n: number): Float64Array {
  let r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) r[i * n + i] = 1;
  for (const a of matrices) {
    const next = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < n; k++) {
        const aik = a[i * n + k];
        if (aik === 0) continue;
        for (let j = 0; j < n; j++) next[i * n + j] += aik * r[k * n + j];
      }
    }
    r = next;
  }
  return r;
}

/** The patch part of a CLS row, as a grid divided by its max (vit-explain's `mask / np.max(mask)`). */
export function clsRowToGrid(row: Float64Array, grid: Grid, prefixTokens: number, divideByMax = true): GridMap {
  const count = grid.height * grid.width;
  if (row.length - prefixTokens !== count) {
    throw new RangeError(`${row.length} tokens minus ${prefixTokens} prefix token(s) is not the ${grid.height}×${grid.width} patch grid`);
  }
  const data = new Float32Array(count);
  let max = -Infinity;
  for (let i = 0; i < count; i++) max = Math.max(max, row[prefixTokens + i]);
  const scale = divideByMax && max !== 0 && Number.isFinite(max) ? 1 / max : 1;
  for (let i = 0; i < count; i++) data[i] = row[prefixTokens + i] * scale;
  return { height: grid.height, width: grid.width, data };
}

function checkLayers(layers: readonly LayerTensor[]): number {
  if (layers.length === 0) throw new RangeError('rollout needs at least one attention layer');
  const n = layers[0].queries;
  for (const l of layers) {
    if (l.queries !== n || l.keys !== n) throw new RangeError(`rollout needs square self-attention of one size; got [${l.queries}, ${l.keys}] beside ${n}`);
  }
  return n;
}

/** vit-explain `rollout(attentions, discard_ratio, head_fusion)`: the CLS row of the rolled-out attention. */
export function attentionRollout(layers: readonly LayerTensor[], options: RolloutOptions): GridMap {
  const n = checkLayers(layers);
  const normalization = options.normalization ?? 'vit-explain';
  if (options.fused && options.fused.length !== layers.length) throw new RangeError(`${options.fused.length} fused maps for ${layers.length} layers`);
  const matrices = layers.map((layer, l) => {
    const fused = options.fused ? Float64Array.from(options.fused[l]) : fuseHeads(layer, options.headFusion);
    discardLowest(fused, options.discardRatio, true);
    return residualNormalize(fused, n, normalization);
  });
  return clsRowToGrid(productRow(matrices, n, 0), options.grid, options.prefixTokens ?? 1);
}

/**
 * How gradients pair with layers. 'vit-explain': the repo's hook list is in backward order (last layer first) and
 * `zip(attentions, gradients)` pairs layer i with the gradient of layer L−1−i; 'aligned': layer i with its own.
 */
export type GradientPairing = 'vit-explain' | 'aligned';

export interface GradRolloutOptions {
  discardRatio: number;
  normalization?: RolloutNormalization;
  pairing?: GradientPairing;
  grid: Grid;
  prefixTokens?: number;
}

/**
 * vit-explain `grad_rollout(attentions, gradients, discard_ratio)`. `gradients[i]` is the gradient belonging to
 * layer i (forward order); which gradient (w.r.t. the softmax input as the repo's hook sees it, or w.r.t. the
 * probabilities) is the caller's choice — see `softmaxInputGradient`.
 */
export function gradientRollout(layers: readonly LayerTensor[], gradients: readonly LayerTensor[], options: GradRolloutOptions): GridMap {
  const n = checkLayers(layers);
  if (gradients.length !== layers.length) throw new RangeError(`${layers.length} attention layers but ${gradients.length} gradients`);
  const normalization = options.normalization ?? 'vit-explain';
  const pairing = options.pairing ?? 'vit-explain';
  const L = layers.length;
  const matrices = layers.map((layer, i) => {
    const grad = gradients[pairing === 'vit-explain' ? L - 1 - i : i];
    if (grad.data.length !== layer.data.length) throw new RangeError(`gradient of layer ${i} does not match its attention's shape`);
    const fused = new Float64Array(n * n);
    const size = n * n;
    for (let h = 0; h < layer.heads; h++) {
      const base = h * size;
      for (let j = 0; j < size; j++) fused[j] += layer.data[base + j] * grad.data[base + j];
    }
    for (let j = 0; j < size; j++) {
      const v = fused[j] / layer.heads;
      fused[j] = v < 0 ? 0 : v;
    }
    discardLowest(fused, options.discardRatio, false);
    return residualNormalize(fused, n, normalization);
  });
  return clsRowToGrid(productRow(matrices, n, 0), options.grid, options.prefixTokens ?? 1);
}

/**
 * Gradient w.r.t. the softmax INPUT from the gradient w.r.t. its output p (rows over the last axis):
 * g_in = p ⊙ (g − Σ_k g_k p_k). This is what vit-explain's backward hook receives (it sits on the Softmax grad_fn
 * because eval-mode Dropout returns its input tensor itself).
 */
export function softmaxInputGradient(probs: LayerTensor, gradProbs: LayerTensor): LayerTensor {
  const { heads, queries, keys } = probs;
  if (gradProbs.data.length !== probs.data.length) throw new RangeError('softmaxInputGradient: shapes differ');
  const out = new Float32Array(probs.data.length);
  for (let r = 0; r < heads * queries; r++) {
    const base = r * keys;
    let dot = 0;
    for (let k = 0; k < keys; k++) dot += gradProbs.data[base + k] * probs.data[base + k];
    for (let k = 0; k < keys; k++) out[base + k] = probs.data[base + k] * (gradProbs.data[base + k] - dot);
  }
  return { heads, queries, keys, data: out };
}
