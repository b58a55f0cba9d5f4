// A small CLIP-style byte-level BPE tokenizer, generated: 256 byte symbols, the same 256 with `</w>`, merges learned
// by a tiny deterministic BPE trainer on an embedded English corpus, then `<|startoftext|>` and `<|endoftext|>` as the
// last two ids (CLIP's layout, where they are 49406/49407). It is written in the files real exports ship
// (vocab.json, merges.txt) plus the HF fast-tokenizer file (tokenizer.json) that transformers.js needs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesToUnicode } from '../engine/text/tokenizer.js';

export { bytesToUnicode };

export const SOT = '<|startoftext|>';
export const EOT = '<|endoftext|>';

export interface BpeTokenizer {
  /** token → id; ids are dense 0..size-1. */
  vocab: Map<string, number>;
  /** merges in rank order, each a pair of symbols. */
  merges: [string, string][];
  bosId: number;
  eosId: number;
}

// ---- CLIP byte ↔ unicode table ---------------------------------------------------------------------------------

const BYTE_ENCODER = new Map(bytesToUnicode());

/** CLIP's pre-tokenizer pattern (the `tokenizer.json` Split regex), with lower-casing and whitespace clean-up. */
const PAT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

export function preTokenize(text: string): string[] {
  const clean = text.normalize('NFC').replace(/\s+/g, ' ').trim().toLowerCase();
  return clean.match(PAT) ?? [];
}

/** A pre-token as CLIP BPE symbols: its UTF-8 bytes mapped through the byte table, `</w>` on the last one. */
function toSymbols(word: string): string[] {
  const syms = Array.from(new TextEncoder().encode(word), (b) => BYTE_ENCODER.get(b) as string);
  syms[syms.length - 1] += '</w>';
  return syms;
}

// ---- trainer --------------------------------------------------------------------------------------------------

/**
 * Learns up to `maxMerges` merges from word counts: repeatedly merges the most frequent adjacent pair (ties broken by
 * the pair's string order, so the result is deterministic), stopping when no pair occurs `minCount` times.
 */
export function trainBpe(corpus: string[], maxMerges: number, minCount = 1): BpeTokenizer {
  const counts = new Map<string, number>();
  for (const line of corpus) for (const w of preTokenize(line)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, c]) => ({ syms: toSymbols(w), c }));
  const merges: [string, string][] = [];
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const { syms, c } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = `${syms[i]} ${syms[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + c);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      if (c > bestCount || (c === bestCount && best !== undefined && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === undefined || bestCount < minCount) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    for (const w of words) w.syms = mergePair(w.syms, a, b);
  }
  const vocab = new Map<string, number>();
  const base = bytesToUnicode().map(([, u]) => u);
  for (const u of base) vocab.set(u, vocab.size);
  for (const u of base) vocab.set(`${u}</w>`, vocab.size);
  for (const [a, b] of merges) vocab.set(a + b, vocab.size);
  vocab.set(SOT, vocab.size);
  vocab.set(EOT, vocab.size);
  return { vocab, merges, bosId: vocab.size - 2, eosId: vocab.size - 1 };
}

function mergePair(syms: string[], a: string, b: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < syms.length; i++) {
    if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
      out.push(a + b);
      i++;
    } else out.push(syms[i]);
  }
  return out;
}

// ---- reference encoder (for tests and for checking other tokenizers against) ----------------------------------

/** CLIP BPE of one pre-token: merge the lowest-ranked adjacent pair until none is in the merge table. */
export function bpeWord(tok: BpeTokenizer, word: string, ranks = mergeRanks(tok)): string[] {
  let syms = toSymbols(word);
  for (;;) {
    let bestRank = Infinity;
    let bestI = -1;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = ranks.get(`${syms[i]} ${syms[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        bestI = i;
      }
    }
    if (bestI < 0) return syms;
    syms = mergePair(syms, syms[bestI], syms[bestI + 1]);
  }
}

export function mergeRanks(tok: BpeTokenizer): Map<string, number> {
  return new Map(tok.merges.map(([a, b], i) => [`${a} ${b}`, i]));
}

/** `<|startoftext|>` + ids + `<|endoftext|>`, padded with `<|endoftext|>` (SD's pad token) to `maxLength`. */
export function encode(tok: BpeTokenizer, text: string, maxLength = 77): number[] {
  const ranks = mergeRanks(tok);
  const ids = [tok.bosId];
  for (const w of preTokenize(text)) {
    for (const s of bpeWord(tok, w, ranks)) {
      const id = tok.vocab.get(s);
      if (id === undefined) throw new Error(`BPE produced symbol '${s}' that is not in the vocab: the merges are inconsistent`);
      ids.push(id);
    }
  }
  const body = ids.slice(0, maxLength - 1);
  body.push(tok.eosId);
  while (body.length < maxLength) body.push(tok.eosId);
  return body;
}

// ---- corpus -----------------------------------------------------------------------------------------------------

const COLORS = 'red blue green yellow black white orange purple pink brown gray golden silver'.split(' ');
const NOUNS = ('cat dog frog horse bird fish mouse rabbit bear lion tiger elephant giraffe zebra monkey cow sheep pig ' +
  'duck owl turtle snake astronaut robot man woman child boy girl person king queen knight wizard ' +
  'disk square circle triangle cube sphere ball box star moon sun planet cloud tree flower rose forest mountain ' +
  'river lake sea ocean beach island desert city street house castle tower bridge car bus train bicycle boat ship ' +
  'plane rocket chair table bed lamp book cup bowl apple banana orange cake pizza bread hat shoe bag clock ' +
  'guitar piano camera phone computer window door wall road field garden sky space snow rain fire water stone ' +
  'painting photo picture portrait landscape').split(' ');
const ADJECTIVES = ('big small tiny large tall short old young happy sad cute beautiful ugly bright dark shiny ' +
  'wooden metal glass plastic fluffy furry wet dry hot cold soft hard round flat red detailed realistic').split(' ');
const PLACES = 'on a beach|in a forest|in space|on the moon|in the city|on a table|in the snow|under the sea|on a mountain|in a garden'.split('|');
const VERBS = 'sitting standing running jumping flying swimming sleeping eating playing riding holding watching'.split(' ');
const EXTRA = ('a an the and with of in on at to from by for is are was it this that next near under over ' +
  'photo painting drawing sketch render style oil watercolor digital art high quality highly detailed sharp focus ' +
  '4k 8k hd trending artstation by greg rutkowski cinematic lighting studio portrait closeup wide angle view').split(' ');

/** A few hundred deterministic sentences from the word lists above (SD-style prompts). */
export function tinyCorpus(): string[] {
  const lines: string[] = [];
  let k = 0;
  for (const n of NOUNS) {
    const c = COLORS[k % COLORS.length];
    const a = ADJECTIVES[k % ADJECTIVES.length];
    const v = VERBS[k % VERBS.length];
    const p = PLACES[k % PLACES.length];
    const m = NOUNS[(k * 7 + 3) % NOUNS.length];
    lines.push(`a ${c} ${n}`, `a photo of a ${a} ${n} ${v} ${p}`, `a ${n} and a ${m}`, `a ${c} ${n} next to a ${m}`);
    k++;
  }
  for (const c of COLORS) lines.push(`a ${c} disk and a ${c} square`, `the ${c} ${NOUNS[c.length]} is ${ADJECTIVES[c.length]}`);
  lines.push(EXTRA.join(' '), EXTRA.join(' '));
  lines.push('a cat and a frog', 'a red disk', 'a blue square', 'an astronaut riding a horse on the moon');
  return lines;
}

let cached: BpeTokenizer | undefined;

/** The generated tokenizer every tiny model uses (trained once per process; about 2k tokens). */
export function tinyTokenizer(): BpeTokenizer {
  cached ??= trainBpe(tinyCorpus(), 4000, 1);
  return cached;
}

// ---- files ------------------------------------------------------------------------------------------------------

const ADDED = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });

/**
 * Writes `vocab.json`, `merges.txt` (`#version: 0.2` header), `tokenizer.json` (HF fast format with CLIP's
 * normalizer / pre-tokenizer / post-processor / decoder), `tokenizer_config.json` (model_max_length 77, pad
 * `<|endoftext|>`) and `special_tokens_map.json` into `dir`.
 */
/** `padToken`: "<|endoftext|>" (SD 1.x, SDXL's tokenizer) or "!" (SD 2.x, SDXL's tokenizer_2). */
export function writeTokenizerFiles(dir: string, tok: BpeTokenizer, maxLength = 77, padToken = EOT): void {
  mkdirSync(dir, { recursive: true });
  const vocabObj = Object.fromEntries(tok.vocab);
  writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocabObj));
  writeFileSync(join(dir, 'merges.txt'), ['#version: 0.2', ...tok.merges.map(([a, b]) => `${a} ${b}`)].join('\n') + '\n');
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: tok.bosId, ...ADDED(SOT), special: true },
      { id: tok.eosId, ...ADDED(EOT), special: true },
    ],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing', sep: [EOT, tok.eosId], cls: [SOT, tok.bosId], trim_offsets: false, add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: EOT, continuing_subword_prefix: '', end_of_word_suffix: '</w>',
      fuse_unk: false, byte_fallback: false, vocab: vocabObj, merges: tok.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  const config = {
    add_prefix_space: false,
    bos_token: { __type: 'AddedToken', ...ADDED(SOT) },
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    eos_token: { __type: 'AddedToken', ...ADDED(EOT) },
    errors: 'replace',
    model_max_length: maxLength,
    pad_token: padToken,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: { __type: 'AddedToken', ...ADDED(EOT) },
  };
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  const special = { bos_token: ADDED(SOT), eos_token: ADDED(EOT), pad_token: padToken, unk_token: ADDED(EOT) };
  writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(special, null, 2) + '\n');
}
