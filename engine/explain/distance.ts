// Mean attention distance (sayakpaul/probing-vits, `compute_mean_attention_dist`): how far, in input pixels, each
// head looks on average. Prefix tokens (CLS, registers) are dropped from both rows and columns WITHOUT
// renormalising the remaining probabilities (as the notebook does), then
//   MAD[h] = mean_i Σ_j A[h,i,j] · D[i,j],   D[i,j] = ‖(p_h·Δrow, p_w·Δcol)‖₂
// The notebook assumes a square grid (length = √patches) and square patches; here the grid and patch may be
// rectangular, which reduces to the notebook's formula when they are square.
import type { LayerTensor } from './tensor.js';
import type { Grid } from './rollout.js';

export interface PatchSize {
  height: number;
  width: number;
}

/** D[i,j] in pixels for a row-major patch grid. */
export function patchDistanceMatrix(grid: Grid, patch: PatchSize): Float64Array {
  const count = grid.height * grid.width;
  const d = new Float64Array(count * count);
  for (let i = 0; i < count; i++) {
    const yi = Math.floor(i / grid.width);
    const xi = i % grid.width;
    for (let j = 0; j < count; j++) {
      if (i === j) continue;
      const dy = yi - Math.floor(j / grid.width);
      const dx = xi - (j % grid.width);
      d[i * count + j] = patch.height === patch.width ? patch.height * Math.hypot(dy, dx) : Math.hypot(patch.height * dy, patch.width * dx);
    }
  }
  return d;
}

/** Mean attention distance of every head of one layer (pixels). */
export function meanAttentionDistance(layer: LayerTensor, grid: Grid, patch: PatchSize, prefixTokens: number, distances?: Float64Array): Float64Array {
  const count = grid.height * grid.width;
  if (layer.queries !== layer.keys || layer.keys - prefixTokens !== count) {
    throw new RangeError(`attention [${layer.queries}, ${layer.keys}] minus ${prefixTokens} prefix token(s) does not match the ${grid.height}×${grid.width} patch grid`);
  }
  const dist = distances ?? patchDistanceMatrix(grid, patch);
  const n = layer.keys;
  const out = new Float64Array(layer.heads);
  for (let h = 0; h < layer.heads; h++) {
    let total = 0;
    for (let i = 0; i < count; i++) {
      const rowBase = h * n * n + (prefixTokens + i) * n + prefixTokens;
      const dBase = i * count;
      let s = 0;
      for (let j = 0; j < count; j++) s += layer.data[rowBase + j] * dist[dBase + j];
      total += s;
    }
    out[h] = total / count;
  }
  return out;
}

/** [layers][heads] mean attention distance. */
export function meanAttentionDistances(layers: readonly LayerTensor[], grid: Grid, patch: PatchSize, prefixTokens: number): number[][] {
  const dist = patchDistanceMatrix(grid, patch);
  return layers.map((l) => Array.from(meanAttentionDistance(l, grid, patch, prefixTokens, dist)));
}
