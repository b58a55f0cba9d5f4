// Chefer et al., "Generic Attention-model Explainability" (hila-chefer/Transformer-MM-Explainability):
//   R = I;  for each block l ≥ start:  cam_l = mean_heads(clamp(∂y/∂A_l ⊙ A_l, min 0));  R = R + cam_l · R
// i.e. R = (I + cam_L) ⋯ (I + cam_start). Image relevance is row 0 (CLS) without the CLS column; CLIP text relevance
// is the row of the EOT token. `start` follows the CLIP notebook: 'last' (its default start_layer = −1: only the
// last block) or 'all' (start_layer = 0), or an explicit block index. The ViT notebook (`generate_relevance`) uses
// all blocks.
import type { LayerTensor } from './tensor.js';

export type StartLayer = 'last' | 'all' | number;

export function resolveStartLayer(start: StartLayer, layers: number): number {
  if (start === 'last') return layers - 1;
  if (start === 'all') return 0;
  if (!Number.isInteger(start) || start < 0 || start >= layers) {
    throw new RangeError(`start layer must be 'last', 'all' or an integer in [0, ${layers - 1}] (got ${start})`);
  }
  return start;
}

/** cam = mean over heads of clamp(grad ⊙ A, min 0), N×N float64. */
export function cheferCam(layer: LayerTensor, grad: LayerTensor): Float64Array {
  const size = layer.queries * layer.keys;
  if (grad.data.length !== layer.data.length) throw new RangeError('cheferCam: gradient and attention shapes differ');
  const cam = new Float64Array(size);
  for (let h = 0; h < layer.heads; h++) {
    const base = h * size;
    for (let i = 0; i < size; i++) {
      const v = layer.data[base + i] * grad.data[base + i];
      if (v > 0) cam[i] += v;
    }
  }
  for (let i = 0; i < size; i++) cam[i] /= layer.heads;
  return cam;
}

function camsFrom(layers: readonly LayerTensor[], grads: readonly LayerTensor[], start: StartLayer): { cams: Float64Array[]; n: number } {
  if (layers.length === 0) throw new RangeError('Chefer relevance needs at least one attention layer');
  if (grads.length !== layers.length) throw new RangeError(`${layers.length} attention layers but ${grads.length} gradients`);
  const s = resolveStartLayer(start, layers.length);
  const n = layers[0].queries;
  const cams: Float64Array[] = [];
  for (let l = s; l < layers.length; l++) cams.push(cheferCam(layers[l], grads[l]));
  return { cams, n };
}

/** The full relevance matrix R (N×N, row-major). */
export function cheferRelevanceMatrix(layers: readonly LayerTensor[], grads: readonly LayerTensor[], start: StartLayer): Float64Array {
  const { cams, n } = camsFrom(layers, grads, start);
  let r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) r[i * n + i] = 1;
  for (const cam of cams) {
    const next = Float64Array.from(r);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < n; k++) {
        const c = cam[i * n + k];
        if (c === 0) continue;
        for (let j = 0; j < n; j++) next[i * n + j] += c * r[k * n + j];
      }
    }
    r = next;
  }
  return r;
}

/** One row of R without forming it: e_rowᵀ (I + cam_L) ⋯ (I + cam_start), O(L·N²). */
export function cheferRelevanceRow(layers: readonly LayerTensor[], grads: readonly LayerTensor[], start: StartLayer, row = 0): Float64Array {
  const { cams, n } = camsFrom(layers, grads, start);
  let v = new Float64Array(n);
  v[row] = 1;
  for (let l = cams.length - 1; l >= 0; l--) {
    const cam = cams[l];
    const next = Float64Array.from(v);
    for (let i = 0; i < n; i++) {
      const vi = v[i];
      if (vi === 0) continue;
      for (let j = 0; j < n; j++) next[j] += vi * cam[i * n + j];
    }
    v = next;
  }
  return v;
}
