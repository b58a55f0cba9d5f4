// Subject words → token positions, with the reference CLIP tokenizer.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { ClipTokenizer } from '../engine/text/tokenizer.js';
import { resolveSubjects, autoSubjects, SubjectError } from '../engine/guidance/subjects.js';
import { requireReference } from './helpers/reference.js';

describe('Attend-and-Excite subjects', function () {
  let tok: ClipTokenizer;
  before(async function () {
    const ref = requireReference(this);
    tok = await ClipTokenizer.fromFolder(join(ref, 'sd-tiny-v1/onnx/tokenizer'));
  });

  it('words map to the reference token indices [2, 5]', function () {
    const p = 'a cat and a frog';
    const s = resolveSubjects(tok.encode(p), p, 'cat,frog');
    assert.deepEqual(s.map((x) => x.tokenIndex), [2, 5]);
    assert.deepEqual(resolveSubjects(tok.encode(p), p, 'Frog').map((x) => x.tokenIndex), [5]);
    assert.deepEqual(resolveSubjects(tok.encode(p), p, '2,5').map((x) => x.tokenIndex), [2, 5]);
  });

  it('a word of several tokens is scored at its last token, and says so', function () {
    const p = 'an astronaut riding a horse';
    const enc = tok.encode(p);
    const astronaut = enc.words.find((w) => w.word === 'astronaut');
    assert.ok(astronaut);
    const [s] = resolveSubjects(enc, p, 'astronaut');
    assert.equal(s.tokenIndex, astronaut.tokenIndices[astronaut.tokenIndices.length - 1]);
    if (astronaut.tokenIndices.length > 1) assert.match(s.note ?? '', /last/);
  });

  it('auto picks the nouns and skips picture-style nouns and -ing forms', function () {
    assert.deepEqual(autoSubjects('a photo of an astronaut riding a red horse and a frog'), ['astronaut', 'horse', 'frog']);
    const p = 'a cat and a frog';
    assert.deepEqual(resolveSubjects(tok.encode(p), p, 'auto').map((x) => x.word), ['cat', 'frog']);
  });

  it('bad subjects get errors that say what to do', function () {
    const p = 'a cat and a frog';
    const enc = tok.encode(p);
    assert.throws(() => resolveSubjects(enc, p, 'dog'), (e: Error) => e instanceof SubjectError && /'dog' is not a word of the prompt.*cat/.test(e.message));
    assert.throws(() => resolveSubjects(enc, p, ''), /subject list is empty/);
    assert.throws(() => resolveSubjects(enc, p, '0'), /not a prompt token/);
    assert.throws(() => resolveSubjects(enc, p, '9'), /not a prompt token/);
    const long = `${'red '.repeat(80)}frog`;
    assert.throws(() => resolveSubjects(tok.encode(long), long, 'frog'), /beyond the 77-token window/);
    assert.throws(() => resolveSubjects(tok.encode('very quickly'), 'very quickly', 'auto'), /found no noun/);
  });
});
