// Raw attention per head, DINO-style: what the CLS token attends to among the patches (`attentions[0, :, 0, 1:]`
// reshaped to the patch grid, one map per head), for any layer — by default the last, as DINO shows it.
import type { GridMap, LayerTensor } from './tensor.js';
import type { Grid } from './rollout.js';

export function clsAttentionMaps(layer: LayerTensor, grid: Grid, prefixTokens: number, queryToken = 0): GridMap[] {
  const count = grid.height * grid.width;
  if (layer.keys - prefixTokens !== count) {
    throw new RangeError(`attention over ${layer.keys} keys minus ${prefixTokens} prefix token(s) is not the ${grid.height}×${grid.width} patch grid`);
  }
  const maps: GridMap[] = [];
  for (let h = 0; h < layer.heads; h++) {
    const base = h * layer.queries * layer.keys + queryToken * layer.keys + prefixTokens;
    maps.push({ height: grid.height, width: grid.width, data: layer.data.slice(base, base + count) });
  }
  return maps;
}
