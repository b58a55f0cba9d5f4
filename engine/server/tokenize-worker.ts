// Tokenizer thread: loads CLIP tokenizers (about a second for a real 49k-token vocabulary, all synchronous work) and
// tokenizes on request, so neither blocks the server's main thread. Pure JS, no onnxruntime: a worker thread is
// enough here (see worker-handle.ts for why jobs use processes).
import { parentPort } from 'node:worker_threads';
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

async function tokenize(dir: string, text: string): Promise<TokenizeResult> {
  const tok = await load(dir);
  const t = tok.encode(text);
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
  };
}

parentPort?.on('message', (msg: TokenizeRequestMsg) => {
  tokenize(msg.dir, msg.text).then(
    (result) => parentPort!.postMessage({ seq: msg.seq, ok: true, result } satisfies TokenizeReplyMsg),
    (e: unknown) => parentPort!.postMessage({ seq: msg.seq, ok: false, name: (e as Error).name ?? 'Error', message: (e as Error).message ?? String(e) } satisfies TokenizeReplyMsg),
  );
});
