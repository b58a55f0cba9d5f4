// CLIP tokenizer for Stable Diffusion prompts and CLIP text towers, with word alignment.
//
// The byte-level BPE itself is @huggingface/tokenizers (the engine under transformers.js). Model folders often ship
// only `vocab.json` + `merges.txt` (diffusers exports, openai/CLIP), for which we build the same `tokenizer.json`
// object HF's fast CLIPTokenizer would have, in memory. Around the library we do the CLIP pre-tokenisation ourselves
// (the same regex) because Heed needs what the library does not return: which characters of the ORIGINAL prompt
// every token came from, so that maps can be shown per word and `--excite cat` can find cat's token positions.
import { access, readFile } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** A pre-tokenizer piece of the prompt ("word", or a run of punctuation) and the token positions it became. */
export interface WordAlignment {
  /** The piece as typed in the prompt (original case). */
  word: string;
  /** The piece after CLIP normalisation (NFC, lower case): what was tokenised. */
  normalized: string;
  /** UTF-16 offsets into the original prompt text, end exclusive (`prompt.slice(start, end) === word`). */
  start: number;
  end: number;
  /** Positions in the padded id sequence (SOT = 0). Empty when truncation dropped the whole word. */
  tokenIndices: number[];
}

export interface TokenizedPrompt {
  /** SOT, content tokens, EOT, then padding: exactly maxLength ids. */
  ids: number[];
  /** The BPE token strings parallel to `ids` (byte-level alphabet, `</w>` marks a word end; pads included). */
  tokens: string[];
  /** 1 for SOT..EOT, 0 for padding. */
  attentionMask: number[];
  /** Number of real positions, SOT..EOT inclusive. */
  length: number;
  truncated: boolean;
  /** Content tokens that did not fit. */
  droppedTokenCount: number;
  /** Words that lost at least one token to truncation (in prompt order). */
  droppedWords: string[];
  /** Human-readable truncation notice, present only when truncated. */
  warning?: string;
  words: WordAlignment[];
}

export interface EncodeOptions {
  /** Total sequence length including SOT and EOT (CLIP: 77). Defaults to the tokenizer's model_max_length. */
  maxLength?: number;
  /** Overrides the padding id read from the tokenizer files. */
  padTokenId?: number;
}

/** The model folder's tokenizer files are missing or unreadable. */
export class TokenizerLoadError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'TokenizerLoadError';
  }
}

// openai/CLIP SimpleTokenizer's pattern (also the Split pre-tokenizer of HF's CLIP tokenizer.json), with the
// special tokens first so that a literal `<|endoftext|>` in a prompt becomes that token, as in both references.
const CLIP_PATTERN = String.raw`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;
const DEFAULT_BOS = '<|startoftext|>';
const DEFAULT_EOS = '<|endoftext|>';
const CLIP_CONTEXT_LENGTH = 77;

type JsonObject = Record<string, unknown>;

interface TokenizerFiles {
  folder: string;
  tokenizerJson: JsonObject;
  config: JsonObject;
}

export class ClipTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  /** Sequence length the text encoder expects (model_max_length, 77 for CLIP). */
  readonly maxLength: number;
  /** The folder the files were read from. */
  readonly folder: string;

  private readonly lib: Tokenizer;
  private readonly vocab: Map<string, number>;
  private readonly idToToken: string[];
  private readonly pieceCache = new Map<string, { ids: number[]; tokens: string[] }>();

  private constructor(files: TokenizerFiles) {
    this.folder = files.folder;
    this.lib = new Tokenizer(files.tokenizerJson, files.config);
    this.vocab = this.lib.get_vocab(true);
    this.idToToken = [];
    for (const [tok, id] of this.vocab) this.idToToken[id] = tok;

    const cfg = files.config;
    this.bosToken = tokenContent(cfg.bos_token) ?? DEFAULT_BOS;
    this.eosToken = tokenContent(cfg.eos_token) ?? DEFAULT_EOS;
    this.padToken = tokenContent(cfg.pad_token) ?? this.eosToken;
    this.bosTokenId = this.idOf(this.bosToken, 'bos_token');
    this.eosTokenId = this.idOf(this.eosToken, 'eos_token');
    this.padTokenId = this.idOf(this.padToken, 'pad_token');
    const mml = cfg.model_max_length;
    // Some configs store a huge sentinel (1e30) meaning "unset": CLIP's context length is 77.
    this.maxLength = typeof mml === 'number' && Number.isInteger(mml) && mml >= 2 && mml <= 100_000 ? mml : CLIP_CONTEXT_LENGTH;
  }

  /**
   * Loads a CLIP tokenizer from a folder holding `tokenizer.json`, or `vocab.json` + `merges.txt`, plus optional
   * `tokenizer_config.json` / `special_tokens_map.json`. A model root with a `tokenizer/` sub-folder also works.
   */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    return new ClipTokenizer(await readTokenizerFiles(dir));
  }

  /** Builds a tokenizer from in-memory vocab + merges (e.g. for tests or bundled assets). */
  static fromVocabAndMerges(vocab: Record<string, number>, mergesText: string, config: JsonObject = {}): ClipTokenizer {
    const merged = { ...config };
    return new ClipTokenizer({ folder: '<memory>', tokenizerJson: clipTokenizerJson(vocab, parseMerges(mergesText, '<memory>'), merged), config: merged });
  }

  /** Token id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  /** Token string of an id, or undefined. */
  idToTokenString(id: number): string | undefined {
    return this.idToToken[id];
  }

  /** Readable text of a BPE token: byte-level characters decoded as UTF-8, `</w>` dropped (special tokens as-is). */
  tokenText(token: string): string {
    if (token === this.bosToken || token === this.eosToken || token === this.padToken) return token;
    const body = token.endsWith('</w>') ? token.slice(0, -4) : token;
    const bytes: number[] = [];
    for (const ch of body) {
      const b = UNICODE_TO_BYTE.get(ch);
      if (b === undefined) return body; // not byte-level text (an added token): show it unchanged
      bytes.push(b);
    }
    return new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
  }

  /** The pre-tokenizer pieces of a prompt with their offsets in the original text (no token positions). */
  splitWords(text: string): Array<Omit<WordAlignment, 'tokenIndices'>> {
    const norm = normalizeWithOffsets(text);
    const out: Array<Omit<WordAlignment, 'tokenIndices'>> = [];
    for (const m of norm.text.matchAll(new RegExp(CLIP_PATTERN, 'gu'))) {
      const a = m.index;
      const b = a + m[0].length;
      const start = norm.starts[a];
      const end = norm.ends[b - 1];
      out.push({ word: text.slice(start, end), normalized: m[0], start, end });
    }
    return out;
  }

  /**
   * Tokenises a prompt as the SD pipelines do (`padding="max_length"`, `truncation=True`): SOT, at most
   * maxLength - 2 content tokens, EOT, padding. Every word records the positions of its tokens.
   */
  encode(text: string, options: EncodeOptions = {}): TokenizedPrompt {
    if (typeof text !== 'string') throw new TypeError(`encode: the prompt must be a string (got ${typeof text})`);
    const maxLength = options.maxLength ?? this.maxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`encode: maxLength must be an integer >= 2 (got ${maxLength})`);
    const padId = options.padTokenId ?? this.padTokenId;
    const padToken = this.idToToken[padId];
    if (padToken === undefined) throw new RangeError(`encode: padTokenId ${padId} is not in the vocabulary of ${this.folder}`);

    const pieces = this.splitWords(text);
    const capacity = maxLength - 2;
    const ids = [this.bosTokenId];
    const tokens = [this.bosToken];
    const words: WordAlignment[] = [];
    const droppedWords: string[] = [];
    let droppedFrom = -1; // offset in the prompt where the dropped text starts
    let contentCount = 0;
    for (const p of pieces) {
      const enc = this.encodePiece(p.normalized);
      const tokenIndices: number[] = [];
      for (let k = 0; k < enc.ids.length; k++) {
        if (contentCount < capacity) {
          tokenIndices.push(ids.length);
          ids.push(enc.ids[k]);
          tokens.push(enc.tokens[k]);
        }
        contentCount++;
      }
      if (tokenIndices.length < enc.ids.length) {
        droppedWords.push(p.word);
        if (droppedFrom < 0) droppedFrom = p.start;
      }
      words.push({ ...p, tokenIndices });
    }
    ids.push(this.eosTokenId);
    tokens.push(this.eosToken);
    const length = ids.length;
    while (ids.length < maxLength) {
      ids.push(padId);
      tokens.push(padToken);
    }
    const attentionMask = ids.map((_, i) => (i < length ? 1 : 0));
    const droppedTokenCount = contentCount - Math.min(contentCount, capacity);
    const result: TokenizedPrompt = {
      ids, tokens, attentionMask, length, truncated: droppedTokenCount > 0, droppedTokenCount, droppedWords, words,
    };
    if (result.truncated) {
      result.warning =
        `The prompt is ${contentCount} tokens but CLIP reads at most ${capacity} (+ start/end tokens): ` +
        `dropped the last ${droppedTokenCount} token(s), i.e. "${text.slice(droppedFrom).trim()}" ` +
        `(${droppedWords.length} word(s)${words[words.length - droppedWords.length]?.tokenIndices.length ? ', the first one only in part' : ''}). ` +
        `Shorten the prompt to keep them.`;
    }
    return result;
  }

  private encodePiece(piece: string): { ids: number[]; tokens: string[] } {
    const cached = this.pieceCache.get(piece);
    if (cached) return cached;
    const special = piece === this.bosToken || piece === this.eosToken ? this.vocab.get(piece) : undefined;
    const enc = special !== undefined ? { ids: [special], tokens: [piece] } : this.lib.encode(piece, { add_special_tokens: false });
    const value = { ids: enc.ids, tokens: enc.tokens };
    if (this.pieceCache.size < 50_000) this.pieceCache.set(piece, value);
    return value;
  }

  /** Plain HF-style encode of the library (no alignment); used by tests to cross-check the word-wise path. */
  encodeWithLibrary(text: string): number[] {
    return this.lib.encode(text, { add_special_tokens: true }).ids;
  }

  private idOf(token: string, what: string): number {
    const id = this.vocab.get(token);
    if (id === undefined) {
      throw new TokenizerLoadError(`${this.folder}: ${what} "${token}" is not in the vocabulary; check tokenizer_config.json / special_tokens_map.json`);
    }
    return id;
  }
}

// ------------------------------------------------------------------------------------------------ file loading

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TokenizerLoadError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('expected a JSON object');
    return value as JsonObject;
  } catch (e) {
    throw new TokenizerLoadError(`${path} is not valid JSON (${(e as Error).message}); re-export the tokenizer files`);
  }
}

async function hasTokenizerFiles(dir: string): Promise<boolean> {
  return (await exists(join(dir, 'tokenizer.json'))) || ((await exists(join(dir, 'vocab.json'))) && (await exists(join(dir, 'merges.txt'))));
}

async function readTokenizerFiles(dirIn: string): Promise<TokenizerFiles> {
  let dir = resolve(dirIn);
  if (!(await exists(dir))) {
    throw new TokenizerLoadError(
      `tokenizer folder not found: ${dir}. Pass the folder holding vocab.json + merges.txt (or tokenizer.json); ` +
        `in a diffusers/ONNX export that is <model>/tokenizer.`,
    );
  }
  if (!(await hasTokenizerFiles(dir)) && (await hasTokenizerFiles(join(dir, 'tokenizer')))) dir = join(dir, 'tokenizer');

  // Config: special_tokens_map.json overrides tokenizer_config.json. transformers (4.33, the version diffusers 0.21
  // pairs with) builds the tokenizer from tokenizer_config.json and then sets every entry of special_tokens_map.json on
  // it, so where the two disagree — SD 2.x folders whose tokenizer_config says pad "<|endoftext|>" while
  // special_tokens_map says "!" — the prompt is padded with "!" (id 0).
  const config: JsonObject = {};
  if (await exists(join(dir, 'tokenizer_config.json'))) Object.assign(config, await readJson(join(dir, 'tokenizer_config.json')));
  if (await exists(join(dir, 'special_tokens_map.json'))) Object.assign(config, await readJson(join(dir, 'special_tokens_map.json')));

  if (await exists(join(dir, 'tokenizer.json'))) {
    const tokenizerJson = await readJson(join(dir, 'tokenizer.json'));
    const model = tokenizerJson.model as JsonObject | undefined;
    if (!model || model.type !== 'BPE' || model.end_of_word_suffix !== '</w>') {
      throw new TokenizerLoadError(
        `${join(dir, 'tokenizer.json')} is not a CLIP BPE tokenizer (model.type must be "BPE" with end_of_word_suffix "</w>"); ` +
          `point Heed at the tokenizer of a CLIP text encoder`,
      );
    }
    return { folder: dir, tokenizerJson, config };
  }

  const missing = ['vocab.json', 'merges.txt'];
  const present: string[] = [];
  for (const f of missing) if (await exists(join(dir, f))) present.push(f);
  if (present.length < 2) {
    const absent = missing.filter((f) => !present.includes(f));
    throw new TokenizerLoadError(
      `${dir} has no usable CLIP tokenizer: missing ${absent.join(' and ')} (and no tokenizer.json). ` +
        `Fix: pass the model's tokenizer folder (diffusers export: <model>/tokenizer, with vocab.json + merges.txt), ` +
        `or copy those files there from the model you exported.`,
    );
  }
  const vocabRaw = await readJson(join(dir, 'vocab.json'));
  const vocab: Record<string, number> = {};
  for (const [k, v] of Object.entries(vocabRaw)) {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TokenizerLoadError(`${join(dir, 'vocab.json')}: id of "${k}" is not an integer`);
    vocab[k] = v;
  }
  const mergesText = await readFile(join(dir, 'merges.txt'), 'utf8');
  const merges = parseMerges(mergesText, join(dir, 'merges.txt'));
  return { folder: dir, tokenizerJson: clipTokenizerJson(vocab, merges, config), config };
}

function parseMerges(text: string, source: string): string[] {
  const merges: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.length === 0 || (i === 0 && line.startsWith('#version'))) continue;
    if (line.split(' ').length !== 2) throw new TokenizerLoadError(`${source}:${i + 1}: a merge must be two tokens separated by one space (got "${line}")`);
    merges.push(line);
  }
  if (merges.length === 0) throw new TokenizerLoadError(`${source} holds no merges; re-export the tokenizer`);
  return merges;
}

/**
 * The tokenizer.json that HF's CLIPTokenizerFast writes for these files (normalizer, Split + ByteLevel, BPE with
 * `</w>`), e.g. to save a fast-tokenizer file next to vocab.json + merges.txt.
 */
export function clipTokenizerJson(vocab: Record<string, number>, merges: string[], config: JsonObject): JsonObject {
  const bos = tokenContent(config.bos_token) ?? DEFAULT_BOS;
  const eos = tokenContent(config.eos_token) ?? DEFAULT_EOS;
  const unk = tokenContent(config.unk_token) ?? eos;
  const added = [bos, eos].filter((t, i, a) => a.indexOf(t) === i && vocab[t] !== undefined);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added.map((content) => ({
      id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true,
    })),
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing', sep: [eos, vocab[eos]], cls: [bos, vocab[bos]], trim_offsets: false, add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: unk, continuing_subword_prefix: '', end_of_word_suffix: '</w>',
      fuse_unk: false, byte_fallback: false, vocab, merges,
    },
  };
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as JsonObject).content === 'string') return (v as JsonObject).content as string;
  return undefined;
}

// ------------------------------------------------------------------------------------------ normalisation map

/**
 * CLIP normalisation (NFC, lower case) with, for every UTF-16 unit of the result, the span of the original text it
 * came from. NFC is applied per base character + combining marks (composition never crosses such a cluster for
 * ordinary text); lower-casing is applied to the whole string, as the tokenizer does (Greek final sigma), and
 * mapped per code point.
 */
function normalizeWithOffsets(text: string): { text: string; starts: number[]; ends: number[] } {
  const nfcParts: string[] = [];
  const nfcStarts: number[] = [];
  const nfcEnds: number[] = [];
  for (const m of text.matchAll(/\P{M}\p{M}*|\p{M}+/gsu)) {
    const n = m[0].normalize('NFC');
    nfcParts.push(n);
    for (let k = 0; k < n.length; k++) {
      nfcStarts.push(m.index);
      nfcEnds.push(m.index + m[0].length);
    }
  }
  const nfc = nfcParts.join('');
  const lower = nfc.toLowerCase();
  if (lower.length === nfc.length) return { text: lower, starts: nfcStarts, ends: nfcEnds };
  // Lower-casing changed lengths (e.g. "İ" -> "i̇"): rebuild the map code point by code point.
  const starts: number[] = [];
  const ends: number[] = [];
  let pos = 0;
  for (const cp of nfc) {
    const len = cp.toLowerCase().length;
    for (let k = 0; k < len; k++) {
      starts.push(nfcStarts[pos]);
      ends.push(nfcEnds[pos + cp.length - 1]);
    }
    pos += cp.length;
  }
  if (starts.length !== lower.length) {
    // Context-dependent case mapping changed the length differently: fall back to per-code-point lower case.
    let t = '';
    for (const cp of nfc) t += cp.toLowerCase();
    return { text: t, starts, ends };
  }
  return { text: lower, starts, ends };
}

/** openai/CLIP `bytes_to_unicode`: printable bytes map to themselves, the others to U+0100 upwards. Order matters: it
 *  is the vocab order (the model builders write vocabularies with it). */
export function bytesToUnicode(): [number, string][] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  return bs.map((b, i) => [b, String.fromCodePoint(cs[i]!)]);
}

// The inverse table: byte-level symbol → byte.
const UNICODE_TO_BYTE: Map<string, number> = new Map(bytesToUnicode().map(([b, u]) => [u, b]));
