import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipTokenizer, TokenizerLoadError, clipTokenizerJson } from '../engine/text/tokenizer.js';
import { readNpy } from '../engine/io/npy.js';
import { requireReference } from './helpers/reference.js';

/**
 * An independent transcription of openai/CLIP's SimpleTokenizer rules (bytes_to_unicode, `</w>` word ends, merges
 * by rank), written without the library, to cross-check ids on arbitrary text. Normalisation is lower-casing only,
 * as SimpleTokenizer with ftfy/html being no-ops on these strings.
 */
class ReferenceBpe {
  private readonly ranks = new Map<string, number>();
  private readonly byteToChar: string[] = [];
  constructor(private readonly vocab: Record<string, number>, mergesText: string) {
    mergesText.split('\n').slice(1).filter((l) => l.length > 0).forEach((l, i) => this.ranks.set(l, i));
    const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    let extra = 0;
    for (let b = 0; b < 256; b++) this.byteToChar[b] = String.fromCodePoint(printable(b) ? b : 256 + extra++);
  }
  private bpe(word: string): string[] {
    let parts = Array.from(word);
    parts[parts.length - 1] += '</w>';
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = this.ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) return parts;
      const a = parts[best];
      const b = parts[best + 1];
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i + 1 < parts.length && parts[i] === a && parts[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(parts[i]);
      }
      parts = next;
    }
  }
  encode(text: string): number[] {
    const cleaned = text.replace(/\s+/g, ' ').trim().toLowerCase();
    const pat = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;
    const ids = [this.vocab['<|startoftext|>']];
    for (const m of cleaned.matchAll(pat)) {
      if (m[0] === '<|startoftext|>' || m[0] === '<|endoftext|>') {
        ids.push(this.vocab[m[0]]);
        continue;
      }
      const mapped = Array.from(new TextEncoder().encode(m[0]), (b) => this.byteToChar[b]).join('');
      for (const tok of this.bpe(mapped)) ids.push(this.vocab[tok]);
    }
    ids.push(this.vocab['<|endoftext|>']);
    return ids;
  }
}

function int64Row(path: string, row: number): number[] {
  const a = readNpy(path);
  assert.equal(a.dtype, 'int64');
  const width = a.shape[a.shape.length - 1];
  return Array.from((a.data as BigInt64Array).subarray(row * width, (row + 1) * width), Number);
}

describe('tokenizer: CLIP BPE from vocab.json + merges.txt', function () {
  let ref: string;
  let tok: ClipTokenizer;
  before(async function () {
    ref = requireReference(this);
    tok = await ClipTokenizer.fromFolder(join(ref, 'sd-tiny-v1/onnx/tokenizer'));
  });

  it('reads special tokens, padding and the context length from the folder', () => {
    assert.equal(tok.bosTokenId, 49406);
    assert.equal(tok.eosTokenId, 49407);
    assert.equal(tok.padTokenId, 49407); // tokenizer_config pad_token "<|endoftext|>" as in SD1.x
    assert.equal(tok.maxLength, 77);
  });

  it('"a cat and a frog" gives the SD ids and equals input_ids_cond.npy; "" equals input_ids_uncond.npy', () => {
    const r = tok.encode('a cat and a frog');
    assert.deepEqual(r.ids.slice(0, 7), [49406, 320, 2368, 537, 320, 11438, 49407]);
    assert.deepEqual(r.tokens.slice(0, 7), ['<|startoftext|>', 'a</w>', 'cat</w>', 'and</w>', 'a</w>', 'frog</w>', '<|endoftext|>']);
    assert.equal(r.length, 7);
    assert.deepEqual(r.ids, int64Row(join(ref, 'sd-tiny-v1/ref/input_ids_cond.npy'), 0));
    const e = tok.encode('');
    assert.deepEqual(e.ids, int64Row(join(ref, 'sd-tiny-v1/ref/input_ids_uncond.npy'), 0));
    assert.equal(e.length, 2);
    assert.deepEqual(e.words, []);
    assert.equal(e.truncated, false);
    assert.deepEqual(e.attentionMask.slice(0, 3), [1, 1, 0]);
  });

  it('clip-tiny (files at the model root) reproduces ref/input_ids.npy and attention_mask.npy', async () => {
    const clip = await ClipTokenizer.fromFolder(join(ref, 'clip-tiny'));
    const texts = ['a red disk', 'a blue square'];
    texts.forEach((t, i) => {
      const r = clip.encode(t);
      assert.deepEqual(r.ids, int64Row(join(ref, 'clip-tiny/ref/input_ids.npy'), i));
      assert.deepEqual(r.attentionMask, int64Row(join(ref, 'clip-tiny/ref/attention_mask.npy'), i));
    });
  });

  it('agrees with an independent SimpleTokenizer transcription and with the library on varied text', () => {
    const vocab = JSON.parse(readFileSync(join(ref, 'sd-tiny-v1/onnx/tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    const bpe = new ReferenceBpe(vocab, readFileSync(join(ref, 'sd-tiny-v1/onnx/tokenizer/merges.txt'), 'utf8'));
    const texts = [
      'A photorealistic portrait of an astronaut riding a horse, 4k, trending on artstation!!!',
      "it's a dog's life -- they'll say we'd've won (maybe)",
      'Café crème brûlée, naïve façade; 12345 #hashtag @user e-mail@x.org',
      '   multiple   spaces\tand\nnewlines   ',
      'emoji 🐱🐸 and symbols ©®™ ½ ≥ ∞',
      'Ünïcödé ΑΘΗΝΑ Москва 東京タワー',
      'a cat<|endoftext|>a frog',
      'thisisaverylongwordwithoutanyspacesatallreally',
    ];
    for (const t of texts) {
      const r = tok.encode(t);
      const expected = bpe.encode(t);
      assert.deepEqual(r.ids.slice(0, r.length), expected, `text: ${t}`);
      assert.deepEqual(r.ids.slice(0, r.length), tok.encodeWithLibrary(t), `library, text: ${t}`);
    }
  });

  it('aligns words to token positions and to offsets in the original text', () => {
    const prompt = 'A Photorealistic cat,  sitting!! on a mat';
    const r = tok.encode(prompt);
    for (const w of r.words) assert.equal(prompt.slice(w.start, w.end), w.word);
    const byWord = new Map(r.words.map((w) => [w.word, w]));
    const photo = byWord.get('Photorealistic');
    assert.ok(photo);
    assert.equal(photo.start, 2);
    assert.equal(photo.end, 16);
    assert.deepEqual(photo.tokenIndices, [2, 3]); // photo + realistic</w>
    assert.deepEqual(photo.tokenIndices.map((i) => r.tokens[i]), ['photo', 'realistic</w>']);
    const comma = byWord.get(',');
    assert.deepEqual(comma && [comma.start, comma.end, comma.tokenIndices], [20, 21, [5]]);
    const bang = byWord.get('!!');
    assert.deepEqual(bang && [bang.start, bang.end, r.tokens[bang.tokenIndices[0]]], [30, 32, '!!</w>']);
    // Every content position belongs to exactly one word, in order.
    const all = r.words.flatMap((w) => w.tokenIndices);
    assert.deepEqual(all, Array.from({ length: r.length - 2 }, (_, i) => i + 1));
    // Normalisation that changes the text keeps offsets in the original: "CAFÉ" written with a combining accent.
    const decomposed = 'a CAFE\u0301 sign';
    const d = tok.encode(decomposed);
    const cafe = d.words[1];
    assert.equal(cafe.word, 'CAFE\u0301');
    assert.equal(cafe.normalized, 'café');
    assert.deepEqual([cafe.start, cafe.end], [2, 7]);
    assert.equal(tok.tokenText(d.tokens[cafe.tokenIndices[0]]), 'café');
  });

  it('truncates a prompt over 77 tokens to 75 + SOT + EOT and says what was dropped', () => {
    const words = Array.from({ length: 80 }, (_, i) => (i % 2 ? 'cat' : 'dog'));
    const prompt = `${words.join(' ')} the end`;
    const r = tok.encode(prompt);
    assert.equal(r.ids.length, 77);
    assert.equal(r.length, 77);
    assert.equal(r.ids[0], 49406);
    assert.equal(r.ids[76], 49407);
    assert.ok(r.truncated);
    assert.equal(r.droppedTokenCount, 82 - 75);
    assert.deepEqual(r.droppedWords, ['cat', 'dog', 'cat', 'dog', 'cat', 'the', 'end']);
    assert.match(r.warning ?? '', /82 tokens/);
    assert.match(r.warning ?? '', /dropped the last 7 token/);
    assert.match(r.warning ?? '', /"cat dog cat dog cat the end"/);
    const dropped = r.words.filter((w) => w.tokenIndices.length === 0);
    assert.equal(dropped.length, 7);
    assert.equal(prompt.slice(dropped[0].start), 'cat dog cat dog cat the end');
    // Exactly 75 content tokens fit without truncation.
    const fits = tok.encode(words.slice(0, 75).join(' '));
    assert.equal(fits.truncated, false);
    assert.equal(fits.warning, undefined);
  });

  it('loads a folder that has only tokenizer.json (+ tokenizer_config.json) and tokenises identically', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'heed-tokjson-'));
    try {
      const src = join(ref, 'sd-tiny-v1/onnx/tokenizer');
      const vocab = JSON.parse(readFileSync(join(src, 'vocab.json'), 'utf8')) as Record<string, number>;
      const merges = readFileSync(join(src, 'merges.txt'), 'utf8').split('\n').slice(1).filter((l) => l.length > 0);
      const config = JSON.parse(readFileSync(join(src, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(clipTokenizerJson(vocab, merges, config)));
      copyFileSync(join(src, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
      const fast = await ClipTokenizer.fromFolder(dir);
      for (const t of ['a cat and a frog', 'A Photorealistic cat,  sitting!! on a mat', '']) assert.deepEqual(fast.encode(t), tok.encode(t));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('honours maxLength and padTokenId overrides', () => {
    const r = tok.encode('a cat', { maxLength: 8, padTokenId: 0 });
    assert.deepEqual(r.ids, [49406, 320, 2368, 49407, 0, 0, 0, 0]);
    assert.equal(r.tokens[4], '!');
  });
});

describe('tokenizer: load errors', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'heed-tok-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('names a missing folder and the fix', async () => {
    const missing = join(tmp, 'nope');
    await assert.rejects(ClipTokenizer.fromFolder(missing), (e: Error) => {
      assert.ok(e instanceof TokenizerLoadError);
      assert.match(e.message, /tokenizer folder not found/);
      assert.ok(e.message.includes(missing));
      assert.match(e.message, /vocab\.json \+ merges\.txt/);
      return true;
    });
  });

  it('names the missing files of an incomplete folder', async function () {
    const ref = requireReference(this);
    const dir = join(tmp, 'only-vocab');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    copyFileSync(join(ref, 'sd-tiny-v1/onnx/tokenizer/vocab.json'), join(dir, 'vocab.json'));
    await assert.rejects(ClipTokenizer.fromFolder(dir), /missing merges\.txt[\s\S]*Fix: pass the model's tokenizer folder/);
  });

  it('rejects a malformed merges file and a non-CLIP tokenizer.json with the file name', async () => {
    const bad = join(tmp, 'bad-merges');
    mkdirSync(bad);
    writeFileSync(join(bad, 'vocab.json'), JSON.stringify({ a: 0, '<|startoftext|>': 1, '<|endoftext|>': 2 }));
    writeFileSync(join(bad, 'merges.txt'), '#version: 0.2\na b c\n');
    await assert.rejects(ClipTokenizer.fromFolder(bad), /merges\.txt:2: a merge must be two tokens/);
    const wp = join(tmp, 'wordpiece');
    mkdirSync(wp);
    writeFileSync(join(wp, 'tokenizer.json'), JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }));
    await assert.rejects(ClipTokenizer.fromFolder(wp), /not a CLIP BPE tokenizer/);
  });
});
