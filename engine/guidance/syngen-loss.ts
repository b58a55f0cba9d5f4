// SynGen's binding loss (Rassin et al., "Linguistic Binding in Diffusion Models", NeurIPS 2023) on aggregated
// cross-attention maps, and its exact gradient with respect to those maps. Attend-and-Excite makes a neglected noun
// attended; it does nothing when both nouns are attended but a modifier lands on the wrong one ("a red triangle and a
// green circle" → two green shapes: attribute leakage). SynGen pulls each modifier's map onto its noun's map and
// pushes both away from every other word's map. It follows the SynGen pipeline of diffusers' community folder
// (identical to the authors' repository):
//  - each token's map (h·w values, no softmax over tokens) is made a distribution over pixels by dividing by its sum
//    (torch.distributions.Categorical(probs=…)); the pipeline's ×100 cancels in that division;
//  - d(P, Q) = ½ (KL(P‖Q) + KL(Q‖P)), the symmetric KL, with torch's Categorical logits: log of the probabilities
//    clamped to [ε, 1 − ε], ε = float32 epsilon (so a pixel a token ignores costs at most log(ε), and its clamped log
//    passes no gradient);
//  - per binding (noun n, modifiers M) and per modifier m ∈ M:
//      positive  = d(A_m, A_n)                                         (words of several tokens: max over token pairs)
//      negative  = −½ (Σ_u d(A_n, A_u) + Σ_u d(A_m, A_u)) / |U|        (u ∈ U: the prompt's other tokens, "a"/"and" too)
//    loss = Σ over bindings and modifiers of (positive + negative);
//  - a binding without modifiers contributes its noun's negative term only (the pipeline's include_entities).
// The gradient is written by hand; the VJP graph takes it from the maps back to the latents, as for A&E.

/** A noun and the modifiers bound to it, as token positions in the full sequence (SOT = 0); a word = its tokens. */
export interface Binding {
  noun: readonly number[];
  modifiers: readonly (readonly number[])[];
}

/** torch.finfo(torch.float32).eps: torch's probs_to_logits clamps probabilities to [eps, 1 − eps] before the log. */
const FLOAT32_EPS = 2 ** -23;

interface Distribution {
  p: Float64Array;
  /** log of p clamped to [ε, 1 − ε]. */
  log: Float64Array;
  /** d log / d p: 1/p, or 0 where the clamp is active. */
  dlog: Float64Array;
  sum: number;
}

export interface SynGenLossResult {
  loss: number;
  /** Each binding's share of the loss (positive + negative), in binding order. */
  perBinding: number[];
  /** Mean symmetric KL between each binding's modifiers and its noun (0 when it has none): lower = better bound. */
  positive: number[];
  /** ∂loss/∂maps, same layout as the maps (h, w, k). */
  gradMaps: Float32Array;
}

/**
 * Computes the loss and its gradient.
 * @param maps aggregated attention (h, w, k) row-major: maps[(y*w + x)*k + token]
 * @param promptTokens the prompt's content positions (1 … EOT−1): the words a binding is pushed away from
 */
export function synGenLoss(maps: ArrayLike<number>, h: number, w: number, k: number, bindings: readonly Binding[], promptTokens: readonly number[]): SynGenLossResult {
  if (maps.length !== h * w * k) throw new Error(`synGenLoss: maps hold ${maps.length} values, expected ${h}×${w}×${k}`);
  const pixels = h * w;
  for (const t of [...promptTokens, ...bindings.flatMap((b) => [...b.noun, ...b.modifiers.flat()])]) {
    if (!Number.isInteger(t) || t < 0 || t >= k) throw new Error(`synGenLoss: token position ${t} is outside 0..${k - 1}`);
  }
  // Each token's map as a distribution over pixels (float64), computed once per token that the loss reads.
  const dist = new Map<number, Distribution>();
  const distOf = (t: number): Distribution => {
    let d = dist.get(t);
    if (!d) {
      let sum = 0;
      for (let q = 0; q < pixels; q++) sum += maps[q * k + t];
      const p = new Float64Array(pixels);
      const log = new Float64Array(pixels);
      const dlog = new Float64Array(pixels);
      for (let q = 0; q < pixels; q++) {
        p[q] = maps[q * k + t] / sum;
        const clamped = Math.min(Math.max(p[q], FLOAT32_EPS), 1 - FLOAT32_EPS);
        log[q] = Math.log(clamped);
        dlog[q] = clamped === p[q] ? 1 / p[q] : 0;
      }
      d = { p, log, dlog, sum };
      dist.set(t, d);
    }
    return d;
  };
  // ∂loss/∂p per token, accumulated; mapped through the normalisation at the end.
  const gradP = new Map<number, Float64Array>();
  const addGrad = (t: number, coef: number, g: (q: number) => number): void => {
    if (coef === 0) return;
    let acc = gradP.get(t);
    if (!acc) {
      acc = new Float64Array(pixels);
      gradP.set(t, acc);
    }
    for (let q = 0; q < pixels; q++) acc[q] += coef * g(q);
  };
  const skl = (a: number, b: number): number => {
    const P = distOf(a);
    const Q = distOf(b);
    let s = 0;
    for (let q = 0; q < pixels; q++) s += (P.p[q] - Q.p[q]) * (P.log[q] - Q.log[q]);
    return s / 2;
  };
  /** Adds coef · ∂d(A_a, A_b): d = ½ Σ (p − q)(log p − log q), so ∂d/∂p_i = ½(log p_i − log q_i + (p_i − q_i)·log′p_i),
   *  which is ½(log p_i − log q_i + 1 − q_i/p_i) where p_i is not clamped; symmetric for q. */
  const sklGrad = (a: number, b: number, coef: number): void => {
    const P = distOf(a);
    const Q = distOf(b);
    addGrad(a, coef, (q) => 0.5 * (P.log[q] - Q.log[q] + (P.p[q] - Q.p[q]) * P.dlog[q]));
    addGrad(b, coef, (q) => 0.5 * (Q.log[q] - P.log[q] + (Q.p[q] - P.p[q]) * Q.dlog[q]));
  };
  /** max over token pairs of d (Python's max: the first largest), with the pair it came from. */
  const maxPair = (as: readonly number[], bs: readonly number[]): { value: number; a: number; b: number } => {
    let best = { value: -Infinity, a: as[0]!, b: bs[0]! };
    for (const a of as) {
      for (const b of bs) {
        const v = skl(a, b);
        if (v > best.value || (Number.isNaN(v) && !Number.isNaN(best.value))) best = { value: v, a, b };
      }
    }
    return best;
  };
  /** −Σ_u max_{t ∈ word} d(A_t, A_u) / |U|, and its gradient scaled by `coef`. */
  const outside = (word: readonly number[], others: readonly number[], coef: number): number => {
    if (others.length === 0) return 0;
    let s = 0;
    for (const u of others) {
      const m = maxPair(word, [u]);
      s += m.value;
      sklGrad(m.a, m.b, -coef / others.length);
    }
    return -s / others.length;
  };

  const perBinding: number[] = [];
  const positive: number[] = [];
  for (const b of bindings) {
    const inBinding = new Set([...b.noun, ...b.modifiers.flat()]);
    const others = promptTokens.filter((t) => !inBinding.has(t));
    let total = 0;
    let pos = 0;
    if (b.modifiers.length === 0) {
      total += outside(b.noun, others, 1);
    } else {
      for (const m of b.modifiers) {
        const best = maxPair(m, b.noun);
        sklGrad(best.a, best.b, 1);
        pos += best.value;
        total += best.value;
        total += (outside(m, others, 0.5) + outside(b.noun, others, 0.5)) / 2;
      }
      pos /= b.modifiers.length;
    }
    perBinding.push(total);
    positive.push(pos);
  }
  const loss = perBinding.reduce((a, v) => a + v, 0);
  const gradMaps = new Float32Array(maps.length);
  // Back through p = a / Σa: ∂L/∂a_j = (g_j − Σ_i g_i p_i) / Σa.
  for (const [t, g] of gradP) {
    const { p, sum } = distOf(t);
    let dot = 0;
    for (let q = 0; q < pixels; q++) dot += g[q] * p[q];
    for (let q = 0; q < pixels; q++) gradMaps[q * k + t] = (g[q] - dot) / sum;
  }
  return { loss, perBinding, positive, gradMaps };
}
