// `heed tokenize`: how CLIP splits a prompt — tokens, ids and which tokens make up each word (the alignment every map
// and `--excite` uses). Also the quickest way to see whether a prompt is truncated at 77 tokens.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipTokenizer, type TokenizedPrompt } from '../text/tokenizer.js';
import { existingDir, type OutputMode } from './common.js';
import { UsageError } from './errors.js';
import { positiveInt } from './options.js';

export interface TokenizeCliOptions extends OutputMode {
  model: string;
  maxLength?: number;
  all?: boolean;
}

/**
 * The tokenizer of a model folder: a tokenizer folder itself, a model root with `tokenizer/` (SD) or tokenizer files
 * at the root (CLIP), or an SD export with its components under `onnx/`.
 */
export async function loadTokenizerFor(dir: string): Promise<ClipTokenizer> {
  const root = existingDir(dir, '--model', 'point it at a model folder or its tokenizer/ folder');
  try {
    return await ClipTokenizer.fromFolder(root);
  } catch (first) {
    const nested = join(root, 'onnx');
    if (existsSync(nested) && statSync(nested).isDirectory()) {
      try {
        const { resolveModelFolder } = await import('../diffusion/folder.js');
        return await ClipTokenizer.fromFolder(resolveModelFolder(root).tokenizer);
      } catch {
        // fall through to the first, more direct, error
      }
    }
    throw first;
  }
}

export interface TokenizeReport {
  prompt: string;
  maxLength: number;
  length: number;
  truncated: boolean;
  warning?: string;
  droppedWords: string[];
  tokens: { index: number; id: number; token: string; text: string; word: number | null }[];
  words: { index: number; word: string; normalized: string; start: number; end: number; tokenIndices: number[] }[];
  /** SDXL folders: the same prompt through tokenizer_2 (its own pad token and window). */
  second?: { length: number; maxLength: number; truncated: boolean; padId: number; ids: number[]; warning?: string };
}

export function tokenizeReport(tok: ClipTokenizer, prompt: string, t: TokenizedPrompt, all: boolean): TokenizeReport {
  const wordOf = new Map<number, number>();
  t.words.forEach((w, wi) => w.tokenIndices.forEach((ti) => wordOf.set(ti, wi)));
  const count = all ? t.ids.length : t.length;
  return {
    prompt,
    maxLength: t.ids.length,
    length: t.length,
    truncated: t.truncated,
    ...(t.warning ? { warning: t.warning } : {}),
    droppedWords: t.droppedWords,
    tokens: t.ids.slice(0, count).map((id, index) => ({
      index, id, token: t.tokens[index]!, text: tok.tokenText(t.tokens[index]!), word: wordOf.get(index) ?? null,
    })),
    words: t.words.map((w, index) => ({ index, word: w.word, normalized: w.normalized, start: w.start, end: w.end, tokenIndices: w.tokenIndices })),
  };
}

function formatTable(r: TokenizeReport): string {
  const lines: string[] = [];
  lines.push(`${r.length - 2} tokens + start/end = ${r.length} of ${r.maxLength} positions${r.truncated ? ' (TRUNCATED)' : ''}`);
  const tokW = Math.max(5, ...r.tokens.map((t) => t.token.length));
  lines.push(`${'pos'.padStart(4)}  ${'id'.padStart(6)}  ${'token'.padEnd(tokW)}  word`);
  for (const t of r.tokens) {
    const word = t.word === null ? '' : `${r.words[t.word]!.word}`;
    lines.push(`${String(t.index).padStart(4)}  ${String(t.id).padStart(6)}  ${t.token.padEnd(tokW)}  ${word}`);
  }
  lines.push('');
  lines.push('words (characters [start, end) → token positions):');
  for (const w of r.words) {
    lines.push(`  ${JSON.stringify(w.word)} [${w.start}, ${w.end}) → ${w.tokenIndices.length ? w.tokenIndices.join(', ') : '(truncated away)'}`);
  }
  return lines.join('\n');
}

export function registerTokenize(program: Command): Command {
  return program
    .command('tokenize')
    .description('show how the model\'s CLIP tokenizer splits a prompt: tokens, ids and the word ↔ token alignment')
    .requiredOption('--model <dir>', 'model folder (SD or CLIP) or its tokenizer/ folder')
    .argument('<prompt...>', 'the prompt (quote it, or give several words)')
    .option('--max-length <n>', 'sequence length including start/end tokens (default: the tokenizer\'s, 77 for CLIP)', positiveInt('--max-length', 100_000))
    .option('--all', 'also list the padding positions')
    .option('--json', 'print JSON on stdout')
    .option('--quiet', 'print only the token ids, space-separated')
    .action(async (words: string[], opts: TokenizeCliOptions) => {
      await runTokenize(words.join(' '), opts);
    });
}

export async function runTokenize(prompt: string, o: TokenizeCliOptions): Promise<TokenizeReport> {
  const tok = await loadTokenizerFor(resolve(o.model));
  if (o.maxLength !== undefined && o.maxLength < 2) throw new UsageError('--max-length must be at least 2 (start and end tokens)');
  const t = tok.encode(prompt, o.maxLength !== undefined ? { maxLength: o.maxLength } : {});
  const report = tokenizeReport(tok, prompt, t, !!o.all);
  const second = join(resolve(o.model), 'tokenizer_2');
  if (existsSync(second)) {
    const tok2 = await ClipTokenizer.fromFolder(second);
    const t2 = tok2.encode(prompt, o.maxLength !== undefined ? { maxLength: o.maxLength } : {});
    report.second = {
      length: t2.length, maxLength: t2.ids.length, truncated: t2.truncated, padId: tok2.padTokenId,
      ids: t2.ids.slice(0, o.all ? t2.ids.length : t2.length), ...(t2.warning ? { warning: `tokenizer_2: ${t2.warning}` } : {}),
    };
  }
  if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else if (o.quiet) process.stdout.write(report.tokens.map((x) => x.id).join(' ') + '\n');
  else {
    process.stdout.write(formatTable(report) + '\n');
    const s = report.second;
    if (s) {
      process.stdout.write(`\ntokenizer_2 (SDXL's second text encoder): ${s.length} of ${s.maxLength} positions` +
        `${s.truncated ? ' (TRUNCATED)' : ''}, pads with id ${s.padId}; ids ${s.ids.join(' ')}\n`);
    }
    if (report.warning) process.stderr.write(`warning: ${report.warning}\n`);
    if (s?.warning) process.stderr.write(`warning: ${s.warning}\n`);
  }
  return report;
}
