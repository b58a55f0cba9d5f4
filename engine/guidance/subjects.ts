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

/** A subject noun with the modifiers SynGen binds to it (each a word of the prompt with its token positions). */
export interface ResolvedBinding {
  noun: string;
  nounTokens: number[];
  modifiers: { word: string; tokenIndices: number[] }[];
  /** How the modifiers were found. */
  source: 'prompt' | 'given';
}

// Words that end a noun phrase when walking back from its noun: determiners, conjunctions, prepositions, verbs of
// being. A colour or size word before the noun is a modifier; one of these is not.
const PHRASE_BOUNDARY = new Set(('a an the and or but of on in at to with without by for from into onto over under above ' +
  'below near next beside behind is are was were be being been it its this that these those his her their my your our ' +
  'some one two three while whose which who').split(' '));

/**
 * The modifiers of each subject, for SynGen. Given ones (`noun → [modifier words]`) are taken as written; otherwise a
 * subject's modifiers are the words right before it in its noun phrase: walking back from the noun until a determiner,
 * conjunction, preposition, punctuation or another subject ("a big red car and a blue bird" → car: big, red; bird:
 * blue). This is the adjective/compound part of SynGen's spaCy rules; modifiers after the noun ("a car that is red")
 * need `given`.
 */
export function resolveBindings(prompt: TokenizedPrompt, promptText: string, subjects: readonly ResolvedSubject[],
  given?: Readonly<Record<string, readonly string[]>>): ResolvedBinding[] {
  const words = prompt.words;
  const subjectWordIndex = subjects.map((s) => words.findIndex((w) => w.tokenIndices.includes(s.tokenIndex)));
  if (given) {
    for (const noun of Object.keys(given)) {
      if (!subjects.some((s) => s.word.toLowerCase() === noun.toLowerCase())) {
        throw new SubjectError(`modifiers are given for '${noun}', which is not one of the subjects (${subjects.map((s) => s.word).join(', ')}); ` +
          'name it in the subjects too', 'excite.modifiers');
      }
    }
  }
  return subjects.map((s, k) => {
    const at = subjectWordIndex[k]!;
    const nounTokens = at >= 0 ? [...words[at]!.tokenIndices] : [s.tokenIndex];
    const explicit = given ? Object.entries(given).find(([noun]) => noun.toLowerCase() === s.word.toLowerCase())?.[1] : undefined;
    if (explicit) {
      const modifiers = explicit.map((m) => {
        const w = findWord(words, m);
        if (!w || w.tokenIndices.length === 0) {
          throw new SubjectError(`modifier '${m}' of '${s.word}' is not a word of the prompt "${promptText}" (or lies beyond the 77-token window)`, 'excite.modifiers');
        }
        if (w.tokenIndices.some((t) => nounTokens.includes(t))) throw new SubjectError(`'${m}' cannot modify itself`, 'excite.modifiers');
        return { word: w.word, tokenIndices: [...w.tokenIndices] };
      });
      return { noun: s.word, nounTokens, modifiers, source: 'given' as const };
    }
    const modifiers: { word: string; tokenIndices: number[] }[] = [];
    for (let i = at - 1; i >= 0; i--) {
      const w = words[i]!;
      if (!/\p{L}/u.test(w.word) || PHRASE_BOUNDARY.has(w.normalized) || subjectWordIndex.includes(i) || w.tokenIndices.length === 0) break;
      modifiers.unshift({ word: w.word, tokenIndices: [...w.tokenIndices] });
    }
    return { noun: s.word, nounTokens, modifiers, source: 'prompt' as const };
  });
}
