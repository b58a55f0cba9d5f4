// Tokenizer thread: loads CLIP tokenizers (about a second for a real 49k-token vocabulary, all synchronous work) and
// tokenizes on request, so neither blocks the server's main thread. Pure JS, no onnxruntime: a worker thread is
// enough here (see worker-handle.ts for why jobs use processes).
import { parentPort } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ClipTokenizer } from '../text/tokenizer.js';
import type { TokenizeResult } from '../protocol/index.js';

export type TokenizeRequestMsg = { seq: number; dir: string; text: string };
export type TokenizeReplyMsg = { seq: number; ok: true; result: TokenizeResult } | { seq: number; ok: false; name: string; message: string };

const MAX_CACHED = 8;
const cache = new Map<string, Promise<ClipTokenizer>>();

function load(dir: string): Promise<ClipTokenizer> {
  let p = cache.get(dir);
  if (p) {
    cache.delete(dir); // re-insert: Map order is the LRU order
    cache.set(dir, p);
    return p;
  }
  p = ClipTokenizer.fromFolder(dir);
  cache.set(dir, p);
  p.catch(() => cache.delete(dir));
  while (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value as string);
  return p;
}

/** SDXL folders carry a second tokenizer (tokenizer_2/); null when `dir` is not a model folder with one. */
async function loadSecond(dir: string): Promise<ClipTokenizer | null> {
  const second = join(dir, 'tokenizer_2');
  const has = existsSync(join(second, 'tokenizer.json')) || (existsSync(join(second, 'vocab.json')) && existsSync(join(second, 'merges.txt')));
  return has ? load(second) : null;
}

async function tokenize(dir: string, text: string): Promise<TokenizeResult> {
  const tok = await load(dir);
  const t = tok.encode(text);
  const tok2 = await loadSecond(dir);
  const t2 = tok2?.encode(text);
  return {
    kind: 'tokenize',
    ids: t.ids,
    tokens: t.tokens,
    length: t.length,
    maxLength: tok.maxLength,
    truncated: t.truncated,
    droppedWords: t.droppedWords,
    ...(t.warning ? { warning: t.warning } : {}),
    words: t.words.map((w) => ({ word: w.word, start: w.start, end: w.end, tokenIndices: w.tokenIndices })),
    ...(tok2 && t2 ? {
      second: {
        length: t2.length, maxLength: tok2.maxLength, truncated: t2.truncated, droppedWords: t2.droppedWords,
        ...(t2.warning ? { warning: `tokenizer_2: ${t2.warning}` } : {}),
      },
    } : {}),
  };
}

parentPort?.on('message', (msg: TokenizeRequestMsg) => {
  tokenize(msg.dir, msg.text).then(
    (result) => parentPort!.postMessage({ seq: msg.seq, ok: true, result } satisfies TokenizeReplyMsg),
    (e: unknown) => parentPort!.postMessage({ seq: msg.seq, ok: false, name: (e as Error).name ?? 'Error', message: (e as Error).message ?? String(e) } satisfies TokenizeReplyMsg),
  );
});
