// The maps of Chefer, Gur & Wolf (CVPR 2021) and the baselines their repository compares against, from per-block
// attention probabilities A, their gradients ∂y_c/∂A and their LRP relevance R_A (hila-chefer/Transformer-Explainability,
// baselines/ViT/ViT_LRP.py `relprop` and ViT_explanation_generator.py `Baselines`). Each returns the CLS row without the
// prefix tokens (one value per patch), in float64, unnormalised unless the reference normalises.
import type { LayerTensor } from '../tensor.js';

function checkStack(name: string, a: readonly LayerTensor[], b?: readonly LayerTensor[]): number {
  if (a.length === 0) throw new RangeError(`${name} needs at least one attention layer`);
  if (b && b.length !== a.length) throw new RangeError(`${name}: ${a.length} attention layers but ${b.length} relevance/gradient layers`);
  const n = a[0].queries;
  for (const [i, l] of a.entries()) {
    if (l.queries !== n || l.keys !== n) throw new RangeError(`${name} needs square self-attention of one size; layer ${i} is [${l.queries}, ${l.keys}]`);
    if (b && b[i].data.length !== l.data.length) throw new RangeError(`${name}: layer ${i} shapes differ`);
  }
  return n;
}

/** mean over heads of clamp(x ⊙ y, min 0) (y omitted: clamp(x)), N×N. */
function headMeanPositive(x: LayerTensor, y?: LayerTensor): Float64Array {
  const size = x.queries * x.keys;
  const out = new Float64Array(size);
  for (let h = 0; h < x.heads; h++) {
    const base = h * size;
    for (let i = 0; i < size; i++) {
      const v = y ? x.data[base + i] * y.data[base + i] : x.data[base + i];
      if (v > 0) out[i] += v;
    }
  }
  for (let i = 0; i < size; i++) out[i] /= x.heads;
  return out;
}

function clsRow(m: Float64Array, n: number, prefix: number): Float64Array {
  return Float64Array.from(m.subarray(prefix, n));
}

/**
 * transformer-attribution (their `relprop(method="transformer_attribution")`): per block cam_l = mean_h clamp(∇A_l ⊙ R_A_l, 0),
 * rolled out as (cam_L + I) ⋯ (cam_start + I) with no row normalisation (ViT_LRP's compute_rollout_attention), CLS row.
 */
export function transformerAttribution(relevance: readonly LayerTensor[], grads: readonly LayerTensor[], startLayer = 0, prefixTokens = 1): Float64Array {
  const n = checkStack('transformer-attribution', relevance, grads);
  if (!Number.isInteger(startLayer) || startLayer < 0 || startLayer >= relevance.length) {
    throw new RangeError(`start layer must be an integer in [0, ${relevance.length - 1}] (got ${startLayer})`);
  }
  // Row 0 of the product: v ← vᵀ(cam_l + I) from the last block down to the start block.
  let v = new Float64Array(n);
  v[0] = 1;
  for (let l = relevance.length - 1; l >= startLayer; l--) {
    const cam = headMeanPositive(grads[l], relevance[l]);
    const next = Float64Array.from(v);
    for (let i = 0; i < n; i++) {
      const vi = v[i];
      if (vi === 0) continue;
      const row = i * n;
      for (let j = 0; j < n; j++) next[j] += vi * cam[row + j];
    }
    v = next;
  }
  return clsRow(v, n, prefixTokens);
}

/** partial-lrp (their `last_layer`): mean_h clamp(R_A, 0) of the last block, CLS row. */
export function partialLrp(relevance: readonly LayerTensor[], prefixTokens = 1): Float64Array {
  const n = checkStack('partial-lrp', relevance);
  return clsRow(headMeanPositive(relevance[relevance.length - 1]), n, prefixTokens);
}

/** raw-attention (their `last_layer_attn`): mean_h A of the last block, CLS row. */
export function rawAttention(attentions: readonly LayerTensor[], prefixTokens = 1): Float64Array {
  const n = checkStack('raw-attention', attentions);
  return clsRow(headMeanPositive(attentions[attentions.length - 1]), n, prefixTokens);
}

/**
 * gradcam (their Baselines.generate_cam_attn): last block, CLS row over the patches; each head weighted by the mean
 * of its gradient over that row, mean over heads, clamp(0), then min–max normalised to [0, 1].
 */
export function attentionGradCam(attentions: readonly LayerTensor[], grads: readonly LayerTensor[], prefixTokens = 1): Float64Array {
  const n = checkStack('gradcam', attentions, grads);
  const a = attentions[attentions.length - 1];
  const g = grads[grads.length - 1];
  const count = n - prefixTokens;
  const cam = new Float64Array(count);
  for (let h = 0; h < a.heads; h++) {
    const base = h * n * n; // row 0 of head h
    let w = 0;
    for (let j = prefixTokens; j < n; j++) w += g.data[base + j];
    w /= count;
    for (let j = 0; j < count; j++) cam[j] += a.data[base + prefixTokens + j] * w;
  }
  let min = Infinity;
  let max = -Infinity;
  for (let j = 0; j < count; j++) {
    cam[j] = Math.max(0, cam[j] / a.heads);
    min = Math.min(min, cam[j]);
    max = Math.max(max, cam[j]);
  }
  // Their (cam − min) / (max − min) gives NaN on a constant map; a flat map is all zeros here.
  const span = max - min;
  for (let j = 0; j < count; j++) cam[j] = span > 0 ? (cam[j] - min) / span : 0;
  return cam;
}
