// Tokenization is answered at once, never queued behind a generation: the editor asks on every hover. It runs in a
// small dedicated thread (tokenize-worker.ts) because loading a real CLIP tokenizer takes about a second of
// synchronous work, which on the main thread would stall every connection's events.
import { Worker } from 'node:worker_threads';
import { ProtocolError } from './errors.js';
import type { TokenizeResult } from '../protocol/index.js';
import type { TokenizeReplyMsg, TokenizeRequestMsg } from './tokenize-worker.js';

const WORKER_URL = new URL('./tokenize-worker.js', import.meta.url);

export class TokenizerService {
  private worker?: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: TokenizeResult) => void; reject: (e: Error) => void }>();

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_URL);
    w.unref(); // never keeps the process alive by itself
    w.on('message', (m: TokenizeReplyMsg) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.ok) p.resolve(m.result);
      else p.reject(new ProtocolError(m.name === 'TokenizerLoadError' ? 'model_invalid' : 'invalid_input', m.message, m.name === 'TokenizerLoadError' ? 'model' : 'text'));
    });
    const fail = (why: string): void => {
      for (const p of this.pending.values()) p.reject(new ProtocolError('internal', `the tokenizer thread stopped (${why}); retry`));
      this.pending.clear();
      this.worker = undefined; // the next request starts a fresh one
    };
    w.on('error', (e) => fail(e.message));
    w.on('exit', (code) => fail(`exit code ${code}`));
    this.worker = w;
    return w;
  }

  tokenize(modelDir: string, text: string): Promise<TokenizeResult> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.start().postMessage({ seq, dir: modelDir, text } satisfies TokenizeRequestMsg);
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
