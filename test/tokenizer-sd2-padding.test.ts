// SD 2.x tokenizer folders pad with "!" (id 0), and some say so only in special_tokens_map.json while their
// tokenizer_config.json still names "<|endoftext|>". The ids must be what transformers' CLIPTokenizer gives as
// diffusers calls it (padding="max_length", truncation=True): test/fixtures/sd2-tokenizer/make_sd2_tokenizer.py
// recorded them with transformers 49b69fe0 (4.33.0.dev0) on the real CLIP BPE of the reference export.
import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipTokenizer } from '../engine/text/tokenizer.js';
import { requireReference } from './helpers/reference.js';

interface TokenizerCase {
  name: string;
  tokenizer_config: Record<string, unknown>;
  special_tokens_map: Record<string, unknown> | null;
  pad_token: string;
  pad_token_id: number;
  results: { prompt: string; input_ids: number[]; attention_mask: number[] }[];
}

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sd2-tokenizer/cases.json', import.meta.url)));

describe('SD 2.x tokenizer padding vs transformers (special_tokens_map.json over tokenizer_config.json)', function () {
  const { cases } = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: TokenizerCase[] };
  let tokFolder = '';
  const dirs: string[] = [];
  before(function () {
    tokFolder = join(requireReference(this), 'sd-tiny-v1/onnx/tokenizer');
  });
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  for (const c of cases) {
    it(`${c.name}: pad "${c.pad_token}" (${c.pad_token_id}) and the padded ids of every prompt`, async function () {
      const dir = mkdtempSync(join(tmpdir(), 'heed-sd2-tok-'));
      dirs.push(dir);
      for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(tokFolder, f), join(dir, f));
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(c.tokenizer_config));
      if (c.special_tokens_map) writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(c.special_tokens_map));
      const tok = await ClipTokenizer.fromFolder(dir);
      assert.equal(tok.padTokenId, c.pad_token_id, 'pad token id');
      for (const r of c.results) {
        const enc = tok.encode(r.prompt);
        assert.deepEqual(enc.ids, r.input_ids, `ids of ${JSON.stringify(r.prompt.slice(0, 30))}`);
        assert.deepEqual(enc.attentionMask, r.attention_mask, `attention mask of ${JSON.stringify(r.prompt.slice(0, 30))}`);
      }
    });
  }
});
