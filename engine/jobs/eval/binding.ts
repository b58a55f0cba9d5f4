// Colour-binding features of a plain run's DAAM maps, for `heed eval`'s diagnosis: how strongly each subject's colour
// word competes, and whether its map lies on its own noun's map or on another subject's. Attribute leakage ("a red
// triangle and a green circle" drawn as two green shapes) is the Shapes models' main way of losing a subject, and the
// noun's max attention says little about it (README of models/shapes, "Evaluation").
import type { GenerateResult } from '../../diffusion/pipeline.js';
import type { EvalPrompt } from './prompts.js';
import { correlation } from '../../attention/binding.js';

/** Per subject with a colour word (Shapes prompts): its colour map's max, relative to the strongest colour among the
 *  subjects, and how much more its colour map resembles its own noun's map than another subject's (correlation). */
export function colourBinding(result: GenerateResult, prompt: EvalPrompt): ({ colourMax: number; colourRelative: number; onOwn: number; onOther: number; margin: number } | undefined)[] {
  const store = result.attention;
  if (!store || !store.options.daam || prompt.subjects.length < 2) return [];
  const global = store.daamGlobal();
  const mapOf = (word: string | undefined): Float32Array | undefined => {
    if (!word) return undefined;
    const w = result.prompt.words.find((x) => x.normalized === word.toLowerCase() && x.tokenIndices.length > 0);
    const rows = w ? w.tokenIndices.filter((i) => i < global.tokens) : [];
    return rows.length > 0 ? store.wordMap(rows, global) : undefined;
  };
  const nouns = prompt.subjects.map((x) => mapOf(x.word));
  const colours = prompt.subjects.map((x) => mapOf(x.colourWord));
  const maxOf = (m: Float32Array): number => m.reduce((a, v) => (v > a ? v : a), -Infinity);
  const topColour = Math.max(0, ...colours.flatMap((c) => (c ? [maxOf(c)] : [])));
  return prompt.subjects.map((_, k) => {
    const c = colours[k];
    const own = nouns[k];
    if (!c || !own || topColour <= 0) return undefined;
    const others = nouns.filter((n, j) => j !== k && n !== undefined) as Float32Array[];
    if (others.length === 0) return undefined;
    const colourMax = maxOf(c);
    const onOwn = correlation(c, own);
    const onOther = Math.max(...others.map((n) => correlation(c, n)));
    return { colourMax, colourRelative: colourMax / topColour, onOwn, onOther, margin: onOwn - onOther };
  });
}
