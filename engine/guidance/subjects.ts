// Turns the user's subjects (words, `auto`, or raw token indices) into the token positions Attend-and-Excite scores.
import nlp from 'compromise';
import type { TokenizedPrompt, WordAlignment } from '../text/tokenizer.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

export interface ResolvedSubject {
  /** The word as written in the prompt (or `#<index>` for a raw token index). */
  word: string;
  /** The position A&E scores. */
  tokenIndex: number;
  /** All positions of the word's tokens. */
  tokenIndices: number[];
  /** Why this token was chosen, when the word has several. */
  note?: string;
}

/** An Attend-and-Excite subject that is not in the prompt (or none found). */
export class SubjectError extends HeedError {
  constructor(message: string, field: string | undefined = 'excite.subjects', kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'SubjectError';
  }
}

// Nouns that describe the picture rather than a thing in it; exciting them makes no sense.
const STYLE_NOUNS = new Set(['photo', 'photograph', 'picture', 'image', 'painting', 'illustration', 'render', 'drawing',
  'sketch', 'style', 'portrait', 'shot', 'closeup', 'close-up', 'view', 'background', 'art', 'artwork', 'detail', 'quality']);

/**
 * Nouns of the prompt, by compromise's part-of-speech tagger, minus picture-style nouns and -ing forms.
 * Limits: a tagger for English prose, not for tag soup; adjectives used as nouns ("a red") and rare nouns can be missed.
 */
export function autoSubjects(promptText: string): string[] {
  const doc = nlp(promptText);
  const terms = doc.match('#Noun').json() as { terms: { text: string; tags: string[] }[] }[];
  const out: string[] = [];
  for (const phrase of terms) {
    for (const t of phrase.terms) {
      const w = t.text.toLowerCase().replace(/[^\p{L}\p{N}'-]/gu, '');
      if (!w || STYLE_NOUNS.has(w) || t.tags.includes('Pronoun') || t.tags.includes('Gerund') || /ing$/.test(w)) continue;
      if (!out.includes(w)) out.push(w);
    }
  }
  return out;
}

function findWord(words: readonly WordAlignment[], target: string): WordAlignment | undefined {
  const norm = target.normalize('NFC').toLowerCase();
  return words.find((w) => w.normalized === norm);
}

/**
 * Resolves subjects against the tokenised prompt.
 * - A word of several tokens is scored at its LAST token: CLIP's text encoder is causal, so only the last
 *   sub-token's embedding has read the whole word (e.g. "astronaut" → "astro" + "naut": "naut" carries it).
 * - A word that occurs twice is scored at its first occurrence (reported in the note).
 */
export function resolveSubjects(prompt: TokenizedPrompt, promptText: string, spec: string | readonly (string | number)[]): ResolvedSubject[] {
  let items: (string | number)[];
  if (typeof spec === 'string') {
    const trimmed = spec.trim();
    if (trimmed === 'auto') {
      items = autoSubjects(promptText);
      if (items.length === 0) {
        throw new SubjectError(`--excite auto found no noun in "${promptText}"; name the subjects yourself, e.g. --excite cat,frog`);
      }
    } else {
      items = trimmed.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    }
  } else {
    items = [...spec];
  }
  if (items.length === 0) throw new SubjectError('the subject list is empty: give prompt words, e.g. --excite cat,frog (or --excite auto)');
  const lastScored = prompt.length - 2; // positions 1..length-2 are the prompt's content tokens
  const out: ResolvedSubject[] = [];
  for (const item of items) {
    if (typeof item === 'number') {
      if (item < 1 || item > lastScored) {
        throw new SubjectError(`token index ${item} is not a prompt token: this prompt has content tokens 1..${lastScored} (0 is the start token)`);
      }
      out.push({ word: `#${item}`, tokenIndex: item, tokenIndices: [item] });
      continue;
    }
    const w = findWord(prompt.words, item);
    if (!w) {
      const words = prompt.words.map((x) => x.word).join(', ');
      throw new SubjectError(`subject '${item}' is not a word of the prompt "${promptText}" (its words: ${words}); ` +
        'subjects must be written as in the prompt');
    }
    if (w.tokenIndices.length === 0 || prompt.droppedWords.includes(w.word)) {
      throw new SubjectError(`subject '${item}' lies beyond the 77-token window (truncated away); move it earlier in the prompt or shorten the prompt`);
    }
    const occurrences = prompt.words.filter((x) => x.normalized === w.normalized).length;
    const tokenIndex = w.tokenIndices[w.tokenIndices.length - 1];
    const notes: string[] = [];
    if (w.tokenIndices.length > 1) notes.push(`'${w.word}' has ${w.tokenIndices.length} tokens; the last (position ${tokenIndex}) is scored because CLIP's causal text encoder gives only it the whole word`);
    if (occurrences > 1) notes.push(`'${w.word}' occurs ${occurrences} times; its first occurrence is used`);
    out.push({ word: w.word, tokenIndex, tokenIndices: [...w.tokenIndices], note: notes.length ? notes.join('; ') : undefined });
  }
  return out;
}
