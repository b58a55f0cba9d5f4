// Parser for `.prompt` files (language id `heed-prompt`). Pure: no 'vscode' import, so the root mocha tests it.
//
// The format, in one example (PROMPT_FORMAT.md has the whole story):
//
//   # a comment line
//   steps: 20          <- a first block holding only settings is the header: defaults for every prompt
//   seed: 42
//
//   a cat and a frog on a bench     <- every other block is one prompt; its text lines are joined with spaces
//   negative: blurry, low quality
//   excite: cat, frog
//
//   a red cube on a blue sphere
//   seed: 7
//
// Blocks are separated by blank lines. A line `key: value` whose key is a known setting is a setting; any other line
// is prompt text. Positions are zero-based (line, UTF-16 character), like VS Code's, so the extension maps them 1:1.

export const SETTING_KEYS = ['negative', 'seed', 'steps', 'guidance', 'scheduler', 'excite', 'loss', 'scale', 'size'] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

export interface PromptSettings {
  negative?: string;
  seed?: number;
  steps?: number;
  guidance?: number;
  scheduler?: string;
  /** Words to excite (Attend-and-Excite subjects), as typed. */
  excite?: string[];
  /** The guided run's loss: Attend-and-Excite's (default) or SynGen's binding loss (`loss: syngen`). */
  loss?: 'attend-excite' | 'syngen';
  /** The guided run's step-size scale factor (A&E default 20; SynGen's constant step). */
  scale?: number;
  /** Image size in pixels. */
  size?: { width: number; height: number };
}

/** A single-line range: `line`, characters [start, end). */
export interface LineRange {
  line: number;
  start: number;
  end: number;
}

export interface SettingLine {
  key: SettingKey;
  /** The raw value text, trimmed. */
  value: string;
  keyRange: LineRange;
  valueRange: LineRange;
}

/** One prompt text line's place in the joined prompt text. */
export interface TextSegment {
  /** Offset of this line's first character in `PromptBlock.text`. */
  textStart: number;
  line: number;
  /** Character of the segment's first (non-blank) character on its line. */
  character: number;
  length: number;
}

export type Severity = 'error' | 'warning' | 'information' | 'hint';

export interface Problem {
  range: LineRange;
  message: string;
  severity: Severity;
  /** Stable machine-readable code, for quick fixes and tests. */
  code: string;
}

export interface PromptBlock {
  /** 0-based index among the prompts of the file (the header is not counted). */
  index: number;
  startLine: number;
  /** Last line of the block (inclusive). */
  endLine: number;
  /** Prompt text: the block's text lines, trimmed, joined with single spaces. */
  text: string;
  segments: TextSegment[];
  /** This block's own setting lines. */
  settingLines: SettingLine[];
  /** Header settings overridden by this block's own. */
  settings: PromptSettings;
}

export interface ParsedPromptFile {
  header: PromptSettings;
  headerLines: SettingLine[];
  prompts: PromptBlock[];
  problems: Problem[];
}

const SETTING_LINE = /^(\s*)([A-Za-z][A-Za-z_-]*)(\s*):(.*)$/;

function isSettingKey(key: string): key is SettingKey {
  return (SETTING_KEYS as readonly string[]).includes(key);
}

interface RawLine {
  line: number;
  text: string;
}

/** Splits a document into blocks of non-blank, non-comment lines (comments neither end nor belong to a block). */
function splitBlocks(lines: string[]): RawLine[][] {
  const blocks: RawLine[][] = [];
  let current: RawLine[] = [];
  lines.forEach((text, line) => {
    const trimmed = text.trim();
    if (trimmed.startsWith('#')) return;
    if (trimmed === '') {
      if (current.length > 0) blocks.push(current);
      current = [];
      return;
    }
    current.push({ line, text });
  });
  if (current.length > 0) blocks.push(current);
  return blocks;
}

function parseSetting(raw: RawLine): SettingLine | { unknownKey: string; range: LineRange } | undefined {
  const m = SETTING_LINE.exec(raw.text);
  if (!m) return undefined;
  const [, lead, key, gap, rest] = m as unknown as [string, string, string, string, string];
  const keyStart = lead.length;
  const keyRange = { line: raw.line, start: keyStart, end: keyStart + key.length };
  const lower = key.toLowerCase();
  if (!isSettingKey(lower)) return { unknownKey: key, range: keyRange };
  const valueOffset = keyStart + key.length + gap.length + 1;
  const valueLead = rest.length - rest.trimStart().length;
  const value = rest.trim();
  return {
    key: lower,
    value,
    keyRange,
    valueRange: { line: raw.line, start: valueOffset + valueLead, end: valueOffset + valueLead + value.length },
  };
}

/** Applies one setting line to `into`; returns a problem when the value is not valid. */
function applySetting(s: SettingLine, into: PromptSettings): Problem | undefined {
  const bad = (message: string): Problem => ({ range: s.valueRange.end > s.valueRange.start ? s.valueRange : s.keyRange, message, severity: 'error', code: `bad-${s.key}` });
  switch (s.key) {
    case 'negative':
      into.negative = s.value;
      return undefined;
    case 'scheduler':
      if (!/^[A-Za-z][\w-]*$/.test(s.value)) return bad(`scheduler must be a name such as pndm or ddim, got '${s.value}'`);
      into.scheduler = s.value.toLowerCase();
      return undefined;
    case 'seed': {
      if (!/^\d+$/.test(s.value) || !Number.isSafeInteger(Number(s.value))) return bad(`seed must be a whole number ≥ 0, got '${s.value}'`);
      into.seed = Number(s.value);
      return undefined;
    }
    case 'steps': {
      const n = Number(s.value);
      if (!/^\d+$/.test(s.value) || n < 1 || n > 1000) return bad(`steps must be a whole number from 1 to 1000, got '${s.value}'`);
      into.steps = n;
      return undefined;
    }
    case 'guidance': {
      const n = Number(s.value);
      if (s.value === '' || !Number.isFinite(n) || n < 0) return bad(`guidance must be a number ≥ 0 (7.5 is usual), got '${s.value}'`);
      into.guidance = n;
      return undefined;
    }
    case 'size': {
      const m = /^(\d+)\s*[x×]\s*(\d+)$/i.exec(s.value) ?? /^(\d+)$/.exec(s.value);
      const w = m ? Number(m[1]) : NaN;
      const h = m ? Number(m[2] ?? m[1]) : NaN;
      if (!m || w % 8 !== 0 || h % 8 !== 0 || w < 8 || h < 8) return bad(`size must be WIDTHxHEIGHT in pixels, multiples of 8 (e.g. 512x512), got '${s.value}'`);
      into.size = { width: w, height: h };
      return undefined;
    }
    case 'excite': {
      const words = s.value.split(',').map((w) => w.trim()).filter((w) => w.length > 0);
      into.excite = words;
      return undefined;
    }
    case 'loss': {
      const v = s.value.toLowerCase();
      if (v !== 'excite' && v !== 'attend-excite' && v !== 'syngen') return bad(`loss must be excite (Attend-and-Excite) or syngen (SynGen: binds colours and other modifiers to their nouns), got '${s.value}'`);
      into.loss = v === 'syngen' ? 'syngen' : 'attend-excite';
      return undefined;
    }
    case 'scale': {
      const n = Number(s.value);
      if (s.value === '' || !Number.isFinite(n) || n <= 0 || n > 1e4) return bad(`scale must be a number above 0 (the guidance step size; 20 is the default), got '${s.value}'`);
      into.scale = n;
      return undefined;
    }
  }
}

/** Where each comma-separated word of an `excite:` line sits on its line. */
export function exciteWordRanges(s: SettingLine): { word: string; range: LineRange }[] {
  const out: { word: string; range: LineRange }[] = [];
  let offset = 0;
  for (const part of s.value.split(',')) {
    const lead = part.length - part.trimStart().length;
    const word = part.trim();
    if (word.length > 0) {
      const start = s.valueRange.start + offset + lead;
      out.push({ word, range: { line: s.valueRange.line, start, end: start + word.length } });
    }
    offset += part.length + 1;
  }
  return out;
}

/** Case-insensitive whole-word search of `word` (may hold spaces) in the prompt text; -1 when absent. */
export function findWord(text: string, word: string): number {
  const escaped = word.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\s+/g, '\\s+');
  const m = new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, 'iu').exec(text);
  return m ? m.index : -1;
}

export function parsePromptFile(source: string): ParsedPromptFile {
  const lines = source.split(/\r?\n/);
  const problems: Problem[] = [];
  const header: PromptSettings = {};
  const headerLines: SettingLine[] = [];
  const prompts: PromptBlock[] = [];

  splitBlocks(lines).forEach((block, blockNo) => {
    const settingLines: SettingLine[] = [];
    const textLines: RawLine[] = [];
    for (const raw of block) {
      const s = parseSetting(raw);
      if (s && 'key' in s) settingLines.push(s);
      else {
        if (s) {
          problems.push({
            range: s.range,
            message: `'${s.unknownKey}:' is not a setting (known: ${SETTING_KEYS.join(', ')}), so this line is part of the prompt text`,
            severity: 'information',
            code: 'unknown-setting',
          });
        }
        textLines.push(raw);
      }
    }
    const seen = new Set<SettingKey>();
    for (const s of settingLines) {
      if (seen.has(s.key)) problems.push({ range: s.keyRange, message: `'${s.key}' is set twice in this block; the last one wins`, severity: 'warning', code: 'duplicate-setting' });
      seen.add(s.key);
    }

    if (textLines.length === 0) {
      if (blockNo === 0) {
        for (const s of settingLines) {
          const p = applySetting(s, header);
          if (p) problems.push(p);
          if (s.key === 'excite') problems.push({ range: s.keyRange, message: `excite: belongs to a prompt block: each prompt has its own subjects`, severity: 'warning', code: 'excite-in-header' });
        }
        headerLines.push(...settingLines);
      } else {
        const first = settingLines[0]!;
        problems.push({
          range: { line: first.keyRange.line, start: 0, end: lines[first.keyRange.line]!.length },
          message: `This block has settings but no prompt text; only the first block of the file can be a settings header. Add the prompt text or join it to the prompt above (remove the blank line).`,
          severity: 'warning',
          code: 'settings-without-prompt',
        });
      }
      return;
    }

    let text = '';
    const segments: TextSegment[] = [];
    for (const raw of textLines) {
      const lead = raw.text.length - raw.text.trimStart().length;
      const t = raw.text.trim();
      if (text.length > 0) text += ' ';
      segments.push({ textStart: text.length, line: raw.line, character: lead, length: t.length });
      text += t;
    }
    const settings: PromptSettings = { ...header, excite: undefined };
    delete settings.excite;
    for (const s of settingLines) {
      const p = applySetting(s, settings);
      if (p) problems.push(p);
      if (s.key === 'excite') {
        for (const { word, range } of exciteWordRanges(s)) {
          if (findWord(text, word) < 0) problems.push({ range, message: `'${word}' is not a word of this prompt, so it cannot be excited`, severity: 'error', code: 'excite-not-in-prompt' });
        }
      }
    }
    prompts.push({ index: prompts.length, startLine: block[0]!.line, endLine: block[block.length - 1]!.line, text, segments, settingLines, settings });
  });

  return { header, headerLines, prompts, problems };
}

/** Maps an offset in `block.text` to a document position. Offsets on a joining space map to the end of the line before. */
export function textOffsetToPosition(block: PromptBlock, offset: number): { line: number; character: number } {
  let seg = block.segments[0]!;
  for (const s of block.segments) if (s.textStart <= offset) seg = s;
  const within = Math.min(offset - seg.textStart, seg.length);
  return { line: seg.line, character: seg.character + within };
}

/** Maps [start, end) of `block.text` to single-line document ranges (one per text line it touches). */
export function textRangeToLineRanges(block: PromptBlock, start: number, end: number): LineRange[] {
  const out: LineRange[] = [];
  for (const s of block.segments) {
    const a = Math.max(start, s.textStart);
    const b = Math.min(end, s.textStart + s.length);
    if (b > a) out.push({ line: s.line, start: s.character + (a - s.textStart), end: s.character + (b - s.textStart) });
  }
  return out;
}

/** Maps a document position to an offset in `block.text`, or undefined when it is not on the block's prompt text. */
export function positionToTextOffset(block: PromptBlock, line: number, character: number): number | undefined {
  for (const s of block.segments) {
    if (s.line === line && character >= s.character && character <= s.character + s.length) return s.textStart + (character - s.character);
  }
  return undefined;
}

/** The prompt block whose lines include `line`, if any. */
export function blockAtLine(file: ParsedPromptFile, line: number): PromptBlock | undefined {
  return file.prompts.find((p) => line >= p.startLine && line <= p.endLine);
}

/**
 * The text edit that adds `word` to a block's `excite:` line (creating the line after the block's last line when
 * there is none). Returned as a replacement of a single-line range, or an insertion at the start of a line.
 */
export function addExciteEdit(block: PromptBlock, word: string, lineText: (line: number) => string): { range: LineRange; newText: string } {
  const excite = [...block.settingLines].reverse().find((s) => s.key === 'excite');
  if (excite) {
    const existing = exciteWordRanges(excite).map((w) => w.word.toLowerCase());
    if (existing.includes(word.toLowerCase())) return { range: { ...excite.valueRange, start: excite.valueRange.end }, newText: '' };
    const sep = excite.value.length > 0 ? ', ' : '';
    return { range: { line: excite.valueRange.line, start: excite.valueRange.end, end: excite.valueRange.end }, newText: `${sep}${word}` };
  }
  const last = lineText(block.endLine);
  return { range: { line: block.endLine, start: last.length, end: last.length }, newText: `\nexcite: ${word}` };
}

/**
 * The edits of the quick fix "Generate with SynGen" for a leakage warning: the block's `excite:` line becomes the
 * nouns (SynGen binds each noun's modifiers to it; colour words there would be read as nouns) and `loss: syngen` is
 * set. Existing lines are rewritten in place; missing ones are appended after the block's last line, in one edit.
 */
export function useSynGenEdits(block: PromptBlock, nouns: readonly string[], lineText: (line: number) => string): { range: LineRange; newText: string }[] {
  const edits: { range: LineRange; newText: string }[] = [];
  const append: string[] = [];
  const set = (key: SettingKey, value: string): void => {
    const line = [...block.settingLines].reverse().find((s) => s.key === key);
    if (line) edits.push({ range: line.valueRange, newText: value });
    else append.push(`${key}: ${value}`);
  };
  set('excite', nouns.join(', '));
  set('loss', 'syngen');
  if (append.length > 0) {
    const last = lineText(block.endLine);
    edits.push({ range: { line: block.endLine, start: last.length, end: last.length }, newText: append.map((l) => `\n${l}`).join('') });
  }
  return edits;
}
