// What the editor shows from the engine's tokenization and from a run's maps, computed without 'vscode':
// hover text for a word, the part of a prompt past CLIP's token window, per-word max attention, neglected subjects.
import type { TokenMap, TokenizeResult, WordInfo } from '../../../engine/protocol/index.js';
import { isSubjectCandidate, neglectedSubjects } from '../../../engine/attention/neglect.js';
import { mayHaveLeaked, type BindingMargin } from '../../../engine/attention/binding.js';
import { findWord, textRangeToLineRanges, type LineRange, type Problem, type PromptBlock } from './promptFile.js';

/** The word of a tokenization under `offset` of the prompt text (start inclusive, end inclusive for the cursor). */
export function wordAtOffset(tok: TokenizeResult, offset: number): WordInfo | undefined {
  return tok.words.find((w) => offset >= w.start && offset <= w.end && w.end > w.start && /[\p{L}\p{N}]/u.test(w.word)) ?? tok.words.find((w) => offset >= w.start && offset < w.end);
}

/** A CLIP byte-level BPE token as a reader wants it: `</w>` (end of word) shown as a trailing `·`. */
export function displayToken(token: string): string {
  return token.endsWith('</w>') ? `${token.slice(0, -4)}·` : token;
}

/** Markdown for hovering a word: its tokens, their ids and positions, and whether truncation cut it. */
export function hoverMarkdown(tok: TokenizeResult, word: WordInfo): string {
  const rows = word.tokenIndices.map((i) => `| ${i} | \`${displayToken(tok.tokens[i] ?? '?')}\` | ${tok.ids[i] ?? '?'} |`);
  const n = word.tokenIndices.length;
  const head = `**${word.word}** → ${n === 0 ? 'no tokens (cut off by the 77-token window)' : `${n} token${n === 1 ? '' : 's'}`}`;
  const table = n > 0 ? ['', '| position | token | id |', '|---:|---|---:|', ...rows].join('\n') : '';
  const used = `\n\nPrompt uses ${Math.max(0, tok.length - 2)} of ${tok.maxLength - 2} content tokens${tok.truncated ? ' — truncated' : ''}.`;
  return head + table + used;
}

export interface OverflowFinding {
  /** Offset in the prompt text from which everything is past the token window. */
  textStart: number;
  ranges: LineRange[];
  problem: Problem;
}

/**
 * The part of the prompt that CLIP never sees. A word is past the window when truncation dropped it whole (no token
 * positions) or when it is the last kept word and truncation cut its tail (its last position is the last content slot
 * and it is among `droppedWords`).
 */
export function overflowFinding(block: PromptBlock, tok: TokenizeResult): OverflowFinding | undefined {
  if (!tok.truncated) return secondWindowFinding(block, tok);
  const lastSlot = tok.maxLength - 2;
  let first = tok.words.findIndex((w) => w.tokenIndices.length === 0 && /\S/.test(w.word));
  if (first < 0) first = tok.words.length;
  const prev = tok.words[first - 1];
  if (prev && prev.tokenIndices.includes(lastSlot) && tok.droppedWords.includes(prev.word)) first -= 1;
  const start = tok.words[first]?.start;
  if (start === undefined) return undefined;
  const ranges = textRangeToLineRanges(block, start, block.text.length);
  if (ranges.length === 0) return undefined;
  const cut = block.text.slice(start);
  const words = cut.split(/\s+/).filter(Boolean).length;
  return {
    textStart: start,
    ranges,
    problem: {
      range: ranges[0]!,
      message: `Past ${tok.second ? `the ${tok.maxLength}-token window of ${tok.second.truncated ? 'both SDXL text encoders' : 'the first SDXL text encoder'}` : `CLIP's ${tok.maxLength}-token window`}: "${cut.length > 60 ? `${cut.slice(0, 57)}…` : cut}" (${words} word${words === 1 ? '' : 's'}) is cut off and has no effect on the image. Shorten the prompt or move what matters to the front.`,
      severity: 'warning',
      code: 'past-token-window',
    },
  };
}

/**
 * SDXL: the first tokenizer kept everything but tokenizer_2's window cut the prompt (different windows or vocabularies):
 * the second text encoder never sees the tail. Marked from the first dropped word's last occurrence to the end.
 */
function secondWindowFinding(block: PromptBlock, tok: TokenizeResult): OverflowFinding | undefined {
  const s = tok.second;
  if (!s?.truncated) return undefined;
  const first = s.droppedWords[0];
  const at = first ? block.text.toLowerCase().lastIndexOf(first.toLowerCase()) : -1;
  const start = at >= 0 ? at : 0;
  const ranges = textRangeToLineRanges(block, start, block.text.length);
  if (ranges.length === 0) return undefined;
  return {
    textStart: start,
    ranges,
    problem: {
      range: ranges[0]!,
      message: `Past the ${s.maxLength}-token window of the second SDXL text encoder (tokenizer_2): ${s.droppedWords.length} word` +
        `${s.droppedWords.length === 1 ? '' : 's'} (${s.droppedWords.slice(0, 5).join(', ')}${s.droppedWords.length > 5 ? ', …' : ''}) reach only the first encoder. Shorten the prompt.`,
      severity: 'warning',
      code: 'past-token-window-2',
    },
  };
}

export interface WordAttention {
  word: string;
  /** The word's max attention as the engine reported it. */
  maxAttention: number;
  /** maxAttention divided by the largest among the prompt's words (1 = the most attended word). */
  relative: number;
  textStart: number;
  textEnd: number;
  ranges: LineRange[];
}

/** Places each map of a run on the prompt text: by token positions when a tokenization is at hand, else by search. */
export function wordAttentions(block: PromptBlock, maps: readonly TokenMap[], tok?: TokenizeResult): WordAttention[] {
  const withMax = maps.filter((m) => typeof m.maxAttention === 'number' && Number.isFinite(m.maxAttention));
  const top = Math.max(0, ...withMax.map((m) => m.maxAttention!));
  const out: WordAttention[] = [];
  let searchFrom = 0;
  for (const m of withMax) {
    let start = -1;
    let end = -1;
    const key = m.tokenIndices.join(',');
    const w = tok?.words.find((x) => x.tokenIndices.length > 0 && x.tokenIndices.join(',') === key);
    if (w) {
      start = w.start;
      end = w.end;
    } else {
      const at = findWord(block.text.slice(searchFrom), m.word);
      if (at >= 0) {
        start = searchFrom + at;
        end = start + m.word.length;
        searchFrom = end;
      }
    }
    if (start < 0) continue;
    out.push({ word: m.word, maxAttention: m.maxAttention!, relative: top > 0 ? m.maxAttention! / top : 0, textStart: start, textEnd: end, ranges: textRangeToLineRanges(block, start, end) });
  }
  return out;
}

export { isFunctionWord, isSubjectCandidate, DEFAULT_NEGLECT_THRESHOLD } from '../../../engine/attention/neglect.js';

export interface NeglectFinding {
  word: string;
  problem: Problem;
  /** True when the word is already on the block's `excite:` line (no quick fix then). */
  alreadyExcited: boolean;
}

/**
 * Subjects whose attention stays low, by the engine's predictor (engine/attention/neglect.ts, the one `heed eval`
 * measures). Only subjects are compared with each other: the words that are neither function words nor attributes
 * such as colours, plus `subjects` (e.g. the last run's Attend-and-Excite subjects) and the block's `excite:` words. A subject is flagged when its max attention, relative to the most attended subject,
 * is under `threshold`.
 */
export function neglectFindings(block: PromptBlock, attentions: readonly WordAttention[], threshold: number, subjects?: readonly string[]): NeglectFinding[] {
  const excite = (block.settings.excite ?? []).map((w) => w.toLowerCase());
  const placed = attentions.filter((a) => a.ranges.length > 0);
  // The guessed subjects, plus those named by the run and the excite: line (a subject the guess misses, e.g. an
  // excited colour, still competes; one the run did not excite is still watched).
  const lower = (w: string): string => w.toLowerCase();
  const named = [...new Set([...placed.filter((a) => isSubjectCandidate(a.word)).map((a) => lower(a.word)), ...(subjects ?? []).map(lower), ...excite])];
  const out: NeglectFinding[] = [];
  for (const s of neglectedSubjects(placed, threshold, named)) {
    const a = placed.find((x) => x.word.toLowerCase() === s.word.toLowerCase())!;
    const alreadyExcited = excite.includes(a.word.toLowerCase());
    out.push({
      word: a.word,
      alreadyExcited,
      problem: {
        range: a.ranges[0]!,
        message: `'${a.word}' may be neglected: its max attention is ${(s.relative * 100).toFixed(0)}% of the strongest subject's (threshold ${(threshold * 100).toFixed(0)}%).${alreadyExcited ? ' It is already excited; try more steps or a larger scale factor.' : ` Attend-and-Excite can strengthen it.`}`,
        severity: 'warning',
        code: 'neglected-subject',
      },
    });
  }
  return out;
}

/** The subject words of a result's excite.json (`subjects: [{word}]`), or [] when there is none. */
export function exciteSubjectWords(excite: unknown): string[] {
  const subjects = excite && typeof excite === 'object' ? (excite as { subjects?: unknown }).subjects : undefined;
  if (!Array.isArray(subjects)) return [];
  return subjects.flatMap((s) => (s && typeof s === 'object' && typeof (s as { word?: unknown }).word === 'string' ? [(s as { word: string }).word] : []));
}

/** A compact bar for inline display of a 0..1 value (e.g. `▆ 0.82`). */
export function attentionBadge(relative: number): string {
  const bars = '▁▂▃▄▅▆▇█';
  const i = Math.max(0, Math.min(bars.length - 1, Math.round(relative * (bars.length - 1))));
  return `${bars[i]} ${relative.toFixed(2)}`;
}

export interface LossPoint {
  step: number;
  iteration?: number;
  loss: number;
  scores?: Record<string, number>;
}

/**
 * The A&E loss trace from a result's excite.json, for when no loss came with the progress events. Reads the engine's
 * event log (`events: [{kind: 'loss', step, loss, scores: number[], iteration?}]`) and names the scores after
 * `subjects` (strings, or objects with a `word`). Anything else yields an empty trace rather than a guess.
 */
export function lossTraceFromExcite(excite: unknown): LossPoint[] {
  if (!excite || typeof excite !== 'object') return [];
  const e = excite as { events?: unknown; subjects?: unknown };
  if (!Array.isArray(e.events)) return [];
  const names = Array.isArray(e.subjects)
    ? e.subjects.map((s, i) => (typeof s === 'string' ? s : s && typeof s === 'object' && typeof (s as { word?: unknown }).word === 'string' ? (s as { word: string }).word : `subject ${i + 1}`))
    : [];
  const out: LossPoint[] = [];
  for (const ev of e.events) {
    if (!ev || typeof ev !== 'object') continue;
    const x = ev as { kind?: unknown; step?: unknown; loss?: unknown; scores?: unknown; iteration?: unknown };
    if (x.kind !== 'loss' || typeof x.loss !== 'number' || typeof x.step !== 'number') continue;
    const p: LossPoint = { step: x.step, loss: x.loss };
    if (typeof x.iteration === 'number') p.iteration = x.iteration;
    if (Array.isArray(x.scores)) p.scores = Object.fromEntries(x.scores.map((v, i) => [names[i] ?? `subject ${i + 1}`, Number(v)]));
    out.push(p);
  }
  return out;
}

/** report.json's `bindings` (the run's modifier → noun binding margins), or [] when absent or malformed. */
export function reportBindings(report: unknown): BindingMargin[] {
  const list = report && typeof report === 'object' ? (report as { bindings?: unknown }).bindings : undefined;
  if (!Array.isArray(list)) return [];
  return list.flatMap((b) => {
    const x = b as { noun?: unknown; modifiers?: unknown; margin?: unknown };
    if (typeof x.noun !== 'string' || !Array.isArray(x.modifiers) || !x.modifiers.every((m) => typeof m === 'string') || typeof x.margin !== 'number' || !Number.isFinite(x.margin)) return [];
    return [{ noun: x.noun, modifiers: x.modifiers as string[], margin: x.margin }];
  });
}

/**
 * "The attributes may have leaked": when even the best-bound modifier of the run sits on another noun's place as much
 * as on its own (engine/attention/binding.ts), one warning on each modifier of the prompt, pointing at SynGen.
 */
export function leakageFindings(block: PromptBlock, bindings: readonly BindingMargin[], threshold: number): Problem[] {
  if (!mayHaveLeaked(bindings, threshold)) return [];
  const pairs = bindings.map((b) => `${b.modifiers.map((m) => `'${m}'`).join(' ')} → '${b.noun}'`).join(', ');
  const best = Math.max(...bindings.map((b) => b.margin));
  const out: Problem[] = [];
  let from = 0;
  for (const b of bindings) {
    for (const m of b.modifiers) {
      const at = findWord(block.text.slice(from), m);
      if (at < 0) continue;
      const start = from + at;
      from = start + m.length;
      const range = textRangeToLineRanges(block, start, start + m.length)[0];
      if (!range) continue;
      out.push({
        range,
        severity: 'warning',
        code: 'leaked-binding',
        message: `'${m}' may not stay on '${b.noun}': in the last run no modifier sat on its own noun (${pairs}; best binding margin ${best.toFixed(2)}, ` +
          `threshold ${threshold.toFixed(2)}), so a colour or other attribute may be drawn on the wrong subject and that subject lost. ` +
          'SynGen binds them (quick fix: `loss: syngen` with the nouns as `excite:`).',
      });
    }
  }
  return out;
}
