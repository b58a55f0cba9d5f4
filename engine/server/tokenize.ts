// Tokenization runs on the main thread, not in a worker: it takes well under a millisecond once the tokenizer is
// loaded, and the editor asks for it on every hover — queued behind a minutes-long generation it would be useless.
// Tokenizers are cached by folder (a handful; each holds the CLIP vocabulary, a few MB).
import { ClipTokenizer } from '../diffusion/tokenizer.js';
import { ProtocolError } from './errors.js';
import type { TokenizeResult } from './protocol.js';

const MAX_CACHED = 8;

export class TokenizerService {
  private readonly cache = new Map<string, Promise<ClipTokenizer>>();

  private load(dir: string): Promise<ClipTokenizer> {
    let p = this.cache.get(dir);
    if (p) {
      this.cache.delete(dir); // re-insert: Map order is the LRU order
      this.cache.set(dir, p);
      return p;
    }
    p = ClipTokenizer.fromFolder(dir);
    this.cache.set(dir, p);
    p.catch(() => this.cache.delete(dir));
    while (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
    return p;
  }

  async tokenize(modelDir: string, text: string): Promise<TokenizeResult> {
    let tok: ClipTokenizer;
    try {
      tok = await this.load(modelDir);
    } catch (e) {
      throw new ProtocolError('model_invalid', (e as Error).message, 'model');
    }
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
}
