// What `heed eval` evaluates: prompts (a file, or the Shapes grammar), their subjects, and seeds.
// A prompt of the Shapes grammar ("a <colour> <shape>" or "a <colour> <shape> and a <colour> <shape>") has subjects
// that can be found in an image by colour; any other prompt's subjects are its nouns (or the --subjects words), found
// by CLIP relevance.
import { HeedError } from '../../errors.js';

/** The Shapes world's palette (models/shapes/train/world.py), RGB 0–255. */
export const SHAPES_PALETTE = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 200, 40],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ShapesColour = keyof typeof SHAPES_PALETTE;
export const SHAPES_BACKGROUND: readonly [number, number, number] = [240, 240, 240];
export const SHAPES_COLOURS = Object.keys(SHAPES_PALETTE) as ShapesColour[];
export const SHAPES_SHAPES = ['circle', 'square', 'triangle'] as const;

export interface EvalSubject {
  /** The word whose map and attention are scored (the shape word, or the noun). */
  word: string;
  /** The subject's own text for CLIP's min-object similarity, e.g. "a red circle". */
  text: string;
  /** Shapes grammar: the colour that finds it in an image. */
  colour?: ShapesColour;
  /** Shapes grammar: the colour word (its map is scored too). */
  colourWord?: string;
}

export interface EvalPrompt {
  text: string;
  subjects: EvalSubject[];
  /** Whether the prompt is of the Shapes grammar (its subjects can be found by colour). */
  shapes: boolean;
}

const GRAMMAR = new RegExp(`^a (${SHAPES_COLOURS.join('|')}) (${SHAPES_SHAPES.join('|')})(?: and a (${SHAPES_COLOURS.join('|')}) (${SHAPES_SHAPES.join('|')}))?$`);

/** The subjects of a Shapes-grammar prompt, or undefined when the prompt is not of the grammar. */
export function parseShapesPrompt(text: string): EvalSubject[] | undefined {
  const m = GRAMMAR.exec(text.trim().toLowerCase().replace(/\s+/g, ' '));
  if (!m) return undefined;
  const one = (colour: string, shape: string): EvalSubject => ({ word: shape, text: `a ${colour} ${shape}`, colour: colour as ShapesColour, colourWord: colour });
  const out = [one(m[1]!, m[2]!)];
  if (m[3] !== undefined) {
    // The grammar's pairs have two different colours and two different shapes; anything else is no longer
    // checkable by colour (two red things) or by word (two circles).
    if (m[3] === m[1] || m[4] === m[2]) return undefined;
    out.push(one(m[3], m[4]!));
  }
  return out;
}

export type GrammarSet = 'single' | 'pairs' | 'all';
export const GRAMMAR_SETS: readonly GrammarSet[] = ['single', 'pairs', 'all'];

/** The grammar's prompts: 12 single-shape prompts, 72 ordered pairs (different colours, different shapes). */
export function grammarPrompts(set: GrammarSet): string[] {
  const single: string[] = [];
  const pairs: string[] = [];
  for (const c of SHAPES_COLOURS) for (const s of SHAPES_SHAPES) single.push(`a ${c} ${s}`);
  for (const c1 of SHAPES_COLOURS) for (const s1 of SHAPES_SHAPES) {
    for (const c2 of SHAPES_COLOURS) for (const s2 of SHAPES_SHAPES) {
      if (c1 !== c2 && s1 !== s2) pairs.push(`a ${c1} ${s1} and a ${c2} ${s2}`);
    }
  }
  return set === 'single' ? single : set === 'pairs' ? pairs : [...single, ...pairs];
}

/** `n` prompts spread evenly over the list (deterministic), or all of them. */
export function spreadSubset<T>(items: readonly T[], n: number | undefined): T[] {
  if (n === undefined || n >= items.length) return [...items];
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]!);
}

/**
 * Subjects of a prompt. Shapes grammar: the shape words. Otherwise `subjectWords` (the --subjects flag) when given,
 * else `nouns(text)` (the engine's noun tagger); each subject's text is its phrase (subjectPhrase).
 */
export function evalPrompt(text: string, nouns: (t: string) => string[], subjectWords?: readonly string[]): EvalPrompt {
  const trimmed = text.trim();
  const shapes = subjectWords ? undefined : parseShapesPrompt(trimmed);
  if (shapes) return { text: trimmed, subjects: shapes, shapes: true };
  const words = subjectWords && subjectWords.length > 0 ? [...subjectWords] : nouns(trimmed);
  const parts = trimmed.split(/\s+and\s+|,/i).map((p) => p.trim()).filter(Boolean);
  const subjects = words.map((w) => ({ word: w, text: subjectPhrase(parts, w) }));
  return { text: trimmed, subjects, shapes: false };
}

const DETERMINERS = new Set(['a', 'an', 'the', 'one', 'two', 'three', 'some']);

/**
 * A subject's own text: in the sub-prompt (between "and"s) that holds the word, the words from the last determiner
 * before it up to the word ("a red circle next to a blue square" → "a red circle", "a blue square"); "a <word>" when
 * no sub-prompt holds it.
 */
export function subjectPhrase(parts: readonly string[], word: string): string {
  const norm = (t: string): string => t.toLowerCase().replace(/[^\p{L}\p{N}'-]/gu, '');
  for (const part of parts) {
    const tokens = part.split(/\s+/).filter(Boolean);
    const at = tokens.findIndex((t) => norm(t) === word.toLowerCase());
    if (at < 0) continue;
    let from = at;
    while (from > 0 && !DETERMINERS.has(norm(tokens[from]!))) from--;
    return tokens.slice(from, at + 1).map(norm).join(' ');
  }
  return `a ${word}`;
}

/** Prompts of a file: one per line; empty lines and lines starting with # are skipped. */
export function promptLines(content: string): string[] {
  return content.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'));
}

/** `A..B` (inclusive), `A-B`, a single seed, or a comma list of those: e.g. `0..9`, `3`, `0..4,100`. */
export function parseSeedRange(spec: string, field = 'seeds'): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const bad = (why: string): HeedError => new HeedError('invalid_input', `--seeds '${spec}': ${why}; write a range such as 0..9 (inclusive), a seed such as 42, or a list such as 0..4,100`, { field });
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw bad('empty');
  for (const p of parts) {
    const m = /^(\d+)(?:\s*(?:\.\.|-)\s*(\d+))?$/.exec(p);
    if (!m) throw bad(`'${p}' is not a non-negative integer or a range A..B`);
    const a = Number(m[1]);
    const b = m[2] !== undefined ? Number(m[2]) : a;
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b >= 2 ** 53) throw bad(`'${p}' is too large`);
    if (b < a) throw bad(`'${p}' ends before it starts`);
    if (b - a >= 100_000) throw bad(`'${p}' has more than 100000 seeds`);
    for (let s = a; s <= b; s++) {
      if (seen.has(s)) continue;
      seen.add(s);
      out.push(s);
    }
  }
  return out;
}
