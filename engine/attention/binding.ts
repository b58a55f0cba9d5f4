// Are a prompt's modifiers bound to their nouns in a run? A "leakage" indicator from the run's word maps, shared (pure,
// dependency-free) by the job that writes report.json, by `heed eval`, which measures it, and by the editor (bundled
// by esbuild), which warns with it.
//
// A binding's margin: the Pearson correlation of the modifier's map with its own noun's map minus the largest with
// another subject noun's map (the least bound modifier when it has several). Bound attributes sit on their nouns'
// places (margin near 1–1.6); leaked ones spread over both nouns' places (margin near 0). It needs two or more nouns.

/** A noun and its modifiers (words), as resolved from the prompt. */
export interface BindingWords {
  noun: string;
  modifiers: readonly string[];
}

export interface BindingMargin {
  noun: string;
  modifiers: string[];
  margin: number;
}

/**
 * Default threshold on the LARGEST margin of a run's bindings: under it even the best-bound modifier is not on its own
 * noun, and the editor says the attributes may have leaked. From `heed eval` on the Shapes models (all 72 pair prompts,
 * plain runs; report.json → diagnosis.leakage): as a predictor of "the image misses a subject", 1.22 is the threshold
 * chosen on seeds 0..1 (recall ≥ 0.8, best precision: precision 0.85, recall 0.86 over 144 images); on held-out seeds
 * 2..3 it gives precision 0.82, recall 0.86. Which of the leaked subjects is the lost one the maps do not tell
 * (README, "Evaluation").
 */
export const DEFAULT_LEAKAGE_THRESHOLD = 1.22;

/** Pearson correlation of two maps: where they are high together, whatever their scale and common baseline. */
export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]! - ma;
    const y = b[i]! - mb;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * The margin of each binding that has modifiers, when there are two or more nouns with maps. `mapOf` gives a word's
 * map (all maps on one grid), or undefined when the run has none for it.
 */
export function bindingMargins(bindings: readonly BindingWords[], mapOf: (word: string) => ArrayLike<number> | undefined): BindingMargin[] {
  const nouns = bindings.map((b) => mapOf(b.noun));
  if (nouns.filter((n) => n !== undefined).length < 2) return [];
  const out: BindingMargin[] = [];
  bindings.forEach((b, k) => {
    const own = nouns[k];
    if (!own || b.modifiers.length === 0) return;
    const others = nouns.filter((n, j) => j !== k && n !== undefined) as ArrayLike<number>[];
    let margin = Infinity;
    for (const m of b.modifiers) {
      const map = mapOf(m);
      if (!map) continue;
      margin = Math.min(margin, correlation(map, own) - Math.max(...others.map((n) => correlation(map, n))));
    }
    if (Number.isFinite(margin)) out.push({ noun: b.noun, modifiers: [...b.modifiers], margin });
  });
  return out;
}

/** True when the run's attributes may have leaked: even its best-bound modifier's margin is under the threshold. */
export function mayHaveLeaked(margins: readonly BindingMargin[], threshold: number = DEFAULT_LEAKAGE_THRESHOLD): boolean {
  return margins.length > 0 && Math.max(...margins.map((m) => m.margin)) < threshold;
}
