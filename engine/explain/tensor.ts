// Attention tensors of one image (or one text) as the explain methods see them: per layer a [heads, queries, keys]
// block, batch already split off. Plain Float32Arrays keep the methods independent of onnxruntime.

/** Probabilities (or gradients) of one attention layer for one batch item: row-major [heads, queries, keys]. */
export interface LayerTensor {
  heads: number;
  queries: number;
  keys: number;
  data: Float32Array;
}

export function layerTensor(heads: number, queries: number, keys: number, data: Float32Array): LayerTensor {
  if (data.length !== heads * queries * keys) {
    throw new RangeError(`layer tensor [${heads}, ${queries}, ${keys}] needs ${heads * queries * keys} values, got ${data.length}`);
  }
  return { heads, queries, keys, data };
}

/** Square token-by-token matrix, row-major, in float64 (rollout products accumulate many terms). */
export interface SquareMatrix {
  n: number;
  data: Float64Array;
}

/** Item `b` of a batched attention output laid out [b, h, q, k] or [b·h, q, k] (same memory order). */
export function sliceBatch(data: Float32Array, batch: number, heads: number, queries: number, keys: number, b: number): LayerTensor {
  const size = heads * queries * keys;
  if (data.length !== batch * size) {
    throw new RangeError(`attention output has ${data.length} values, expected batch ${batch} × heads ${heads} × ${queries} × ${keys}`);
  }
  return layerTensor(heads, queries, keys, data.slice(b * size, (b + 1) * size));
}

/** A patch grid (height × width) of values, row-major. */
export interface GridMap {
  height: number;
  width: number;
  data: Float32Array;
}

export function gridToNested(g: GridMap): number[][] {
  const out: number[][] = [];
  for (let y = 0; y < g.height; y++) out.push(Array.from(g.data.subarray(y * g.width, (y + 1) * g.width)));
  return out;
}
