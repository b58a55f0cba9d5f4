// The prompt editor on SDXL folders: the server's tokenizer thread also tokenizes with tokenizer_2 (its own pad token
// and window), and the editor warns when either window is exceeded, naming which encoder loses the tail.
import { strict as assert } from 'node:assert';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TokenizerService } from '../engine/server/tokenize.js';
import { ClipTokenizer } from '../engine/text/tokenizer.js';
import { overflowFinding } from '../extension/src/core/tokens.js';
import { parsePromptFile } from '../extension/src/core/promptFile.js';
import type { TokenizeResult } from '../engine/protocol/index.js';
import { heed } from './cli-helpers.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));

describe('SDXL prompt tokenization in the editor', function () {
  this.timeout(60_000);
  const service = new TokenizerService();
  after(() => service.close());

  it('tokenizes with both tokenizers; tokenizer_2 pads with "!" and reports its own window', async () => {
    const r = await service.tokenize(FIXTURE, 'a cat and a frog');
    assert.ok(r.second);
    assert.equal(r.second.maxLength, 77);
    assert.equal(r.second.length, r.length);
    assert.equal(r.second.truncated, false);
    const tok2 = await ClipTokenizer.fromFolder(join(FIXTURE, 'tokenizer_2'));
    assert.equal(tok2.encode('a cat').ids[4], 0); // "!" pads tokenizer_2
    assert.equal(r.ids[r.length], r.ids[r.length - 1]); // tokenizer pads with <|endoftext|>
  });

  it('a prompt past the window is flagged for both SDXL text encoders', async () => {
    const long = Array.from({ length: 90 }, (_, i) => ['cat', 'frog', 'dog'][i % 3]).join(' ');
    const block = parsePromptFile(long).prompts[0]!;
    const r = await service.tokenize(FIXTURE, block.text);
    assert.equal(r.truncated, true);
    assert.equal(r.second?.truncated, true);
    const o = overflowFinding(block, r);
    assert.ok(o);
    assert.match(o.problem.message, /window of both SDXL text encoders/);
  });

  it('only tokenizer_2 cut the prompt: a warning naming the second encoder', () => {
    const text = 'a cat and a frog';
    const block = parsePromptFile(text).prompts[0]!;
    const tok: TokenizeResult = {
      kind: 'tokenize', ids: [], tokens: [], length: 7, maxLength: 77, truncated: false, droppedWords: [], words: [],
      second: { length: 5, maxLength: 5, truncated: true, droppedWords: ['a', 'frog'] },
    };
    const o = overflowFinding(block, tok);
    assert.ok(o);
    assert.equal(o.problem.code, 'past-token-window-2');
    assert.match(o.problem.message, /second SDXL text encoder \(tokenizer_2\): 2 words \(a, frog\)/);
    assert.equal(o.textStart, text.lastIndexOf('a'));
  });

  it('heed tokenize on an SDXL folder also reports tokenizer_2 (pads with "!" = 0)', async () => {
    const r = await heed(['tokenize', '--model', FIXTURE, '--json', '--all', 'a cat']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as { ids?: unknown; tokens: { id: number }[]; second: { padId: number; ids: number[]; length: number } };
    assert.equal(rep.second.padId, 0);
    assert.equal(rep.second.length, 4);
    assert.deepEqual(rep.second.ids.slice(0, 4), rep.tokens.slice(0, 4).map((t) => t.id));
    assert.ok(rep.second.ids.slice(4).every((id) => id === 0));
    assert.ok(rep.tokens.slice(4).every((t) => t.id === rep.tokens[3]!.id)); // tokenizer pads with <|endoftext|>
  });
});
