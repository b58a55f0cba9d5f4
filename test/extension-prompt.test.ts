// The `.prompt` file format and the editor findings computed from it (extension/src/core, no VS Code needed).
import assert from 'node:assert/strict';
import {
  addExciteEdit,
  blockAtLine,
  parsePromptFile,
  positionToTextOffset,
  textOffsetToPosition,
  textRangeToLineRanges,
} from '../extension/src/core/promptFile.js';
import { attentionBadge, DEFAULT_NEGLECT_THRESHOLD, exciteSubjectWords, lossTraceFromExcite, neglectFindings, overflowFinding, wordAttentions } from '../extension/src/core/tokens.js';
import type { TokenizeResult } from '../engine/protocol/index.js';

const SAMPLE = [
  '# demo prompts', //            0
  'steps: 12', //                 1
  'seed: 42', //                  2
  '', //                          3
  'a cat and a frog', //          4
  '  on a bench', //              5
  'negative: blurry', //          6
  'excite: cat, frog', //         7
  '', //                          8
  '# second one', //              9
  'a red cube', //                10
  'seed: 7', //                   11
].join('\n');

describe('extension: prompt file format', () => {
  it('parses a header, prompts, multi-line text and per-block overrides', () => {
    const f = parsePromptFile(SAMPLE);
    assert.deepEqual(f.header, { steps: 12, seed: 42 });
    assert.equal(f.prompts.length, 2);
    const [a, b] = f.prompts as [NonNullable<(typeof f.prompts)[0]>, NonNullable<(typeof f.prompts)[1]>];
    assert.equal(a.text, 'a cat and a frog on a bench');
    assert.equal(a.startLine, 4);
    assert.equal(a.endLine, 7);
    assert.deepEqual(a.settings, { steps: 12, seed: 42, negative: 'blurry', excite: ['cat', 'frog'] });
    assert.equal(b.text, 'a red cube');
    assert.deepEqual(b.settings, { steps: 12, seed: 7 }, 'excite is never inherited; seed is overridden');
    assert.deepEqual(f.problems, []);
    assert.equal(blockAtLine(f, 5), a);
    assert.equal(blockAtLine(f, 9), undefined, 'a comment between blocks belongs to none');
  });

  it('maps text offsets to document positions across joined lines and back', () => {
    const a = parsePromptFile(SAMPLE).prompts[0]!;
    const bench = a.text.indexOf('bench');
    assert.deepEqual(textOffsetToPosition(a, bench), { line: 5, character: '  on a '.length });
    assert.equal(positionToTextOffset(a, 5, 7), bench);
    assert.equal(positionToTextOffset(a, 6, 0), undefined, 'a setting line is not prompt text');
    // "frog on" spans the line break: two single-line ranges
    const start = a.text.indexOf('frog');
    assert.deepEqual(textRangeToLineRanges(a, start, start + 'frog on'.length), [
      { line: 4, start: 12, end: 16 },
      { line: 5, start: 2, end: 4 },
    ]);
  });

  it('loss: and scale: choose the guided run\'s method and step size, from the header or per block', () => {
    const f = parsePromptFile(['loss: syngen', '', 'a red cube and a blue ball', 'excite: cube, ball', 'scale: 200', '', 'a cat', 'loss: Excite'].join('\n'));
    assert.deepEqual(f.problems, []);
    assert.deepEqual(f.prompts[0]!.settings, { loss: 'syngen', excite: ['cube', 'ball'], scale: 200 });
    assert.deepEqual(f.prompts[1]!.settings, { loss: 'attend-excite' });
    const bad = parsePromptFile(['a cat', 'loss: bind', 'scale: -1'].join('\n'));
    assert.deepEqual(bad.problems.map((p) => `${p.code}@${p.range.line}`).sort(), ['bad-loss@1', 'bad-scale@2']);
    assert.match(bad.problems.find((p) => p.code === 'bad-loss')!.message, /excite .*or syngen/);
  });

  it('reports bad values, unknown keys, excite words missing from the prompt, stray settings blocks', () => {
    const f = parsePromptFile(['a dog', 'steps: many', 'exite: dog', 'excite: cat', 'size: 500x512', '', 'seed: 3'].join('\n'));
    const codes = f.problems.map((p) => `${p.code}@${p.range.line}:${p.range.start}`);
    assert.deepEqual(codes.sort(), ['bad-size@4:6', 'bad-steps@1:7', 'excite-not-in-prompt@3:8', 'settings-without-prompt@6:0', 'unknown-setting@2:0'].sort());
    assert.equal(f.prompts[0]!.text, 'a dog exite: dog', 'an unknown key line stays prompt text');
    assert.match(f.problems.find((p) => p.code === 'bad-steps')!.message, /whole number from 1 to 1000, got 'many'/);
  });

  it('builds the quick-fix edit that adds a word to excite:, with or without an existing line', () => {
    const lines = SAMPLE.split('\n');
    const f = parsePromptFile(SAMPLE);
    const a = f.prompts[0]!;
    assert.deepEqual(addExciteEdit(a, 'bench', (l) => lines[l]!), { range: { line: 7, start: 17, end: 17 }, newText: ', bench' });
    const b = f.prompts[1]!;
    assert.deepEqual(addExciteEdit(b, 'cube', (l) => lines[l]!), { range: { line: 11, start: 7, end: 7 }, newText: '\nexcite: cube' });
    // Applying it yields a file whose block excites the word
    const applied = [...lines.slice(0, 11), 'seed: 7\nexcite: cube'].join('\n');
    assert.deepEqual(parsePromptFile(applied).prompts[1]!.settings.excite, ['cube']);
  });
});

/** A tokenization of `text` by whitespace, one token per word, window of `maxLength` (hand-built, CLIP's layout). */
function fakeTokenize(text: string, maxLength: number): TokenizeResult {
  const words: TokenizeResult['words'] = [];
  const re = /\S+/g;
  let m: RegExpExecArray | null;
  let pos = 1;
  const dropped: string[] = [];
  const tokens = ['<|startoftext|>'];
  while ((m = re.exec(text))) {
    const fits = pos <= maxLength - 2;
    words.push({ word: m[0], start: m.index, end: m.index + m[0].length, tokenIndices: fits ? [pos] : [] });
    if (fits) tokens.push(`${m[0]}</w>`), pos++;
    else dropped.push(m[0]);
  }
  const length = pos + 1;
  return { kind: 'tokenize', ids: tokens.map((_, i) => i), tokens, length, maxLength, truncated: dropped.length > 0, droppedWords: dropped, words };
}

describe('extension: findings from a tokenization and a run', () => {
  it('marks everything past the token window, across lines', () => {
    const f = parsePromptFile('one two three\nfour five six');
    const block = f.prompts[0]!;
    const tok = fakeTokenize(block.text, 6); // SOT + 4 content + EOT: "five six" fall off
    const o = overflowFinding(block, tok)!;
    assert.equal(block.text.slice(o.textStart), 'five six');
    assert.deepEqual(o.ranges, [{ line: 1, start: 5, end: 13 }]);
    assert.equal(o.problem.code, 'past-token-window');
    assert.equal(overflowFinding(block, fakeTokenize(block.text, 77)), undefined);
  });

  it('places per-word attention and flags neglected subjects relative to the strongest subject', () => {
    const block = parsePromptFile('a cat and a frog\nexcite: cat').prompts[0]!;
    const tok = fakeTokenize(block.text, 77);
    const maps = [
      { word: 'a', tokenIndices: [1], maxAttention: 0.9 },
      { word: 'cat', tokenIndices: [2], maxAttention: 0.8 },
      { word: 'and', tokenIndices: [3], maxAttention: 0.01 },
      { word: 'a', tokenIndices: [4], maxAttention: 0.5 },
      { word: 'frog', tokenIndices: [5], maxAttention: 0.09 },
    ];
    const att = wordAttentions(block, maps, tok);
    assert.deepEqual(att.map((a) => [a.word, a.textStart, +a.relative.toFixed(3)]), [
      ['a', 0, 1],
      ['cat', 2, 0.889],
      ['and', 6, 0.011],
      ['a', 10, 0.556],
      ['frog', 12, 0.1],
    ]);
    const neglected = neglectFindings(block, att, 0.2);
    assert.deepEqual(neglected.map((n) => [n.word, n.alreadyExcited, n.problem.range]), [['frog', false, { line: 0, start: 12, end: 16 }]], '"and" is a function word, not a subject');
    assert.equal(attentionBadge(1), '█ 1.00');
    // Without a tokenization, words are found by search, in order
    assert.deepEqual(wordAttentions(block, maps).map((a) => a.textStart), [0, 2, 6, 10, 12]);
  });

  it('compares only subjects with each other: "a", "and" and colours do not set the scale (engine/attention/neglect.ts)', () => {
    const block = parsePromptFile('a red circle and a blue square').prompts[0]!;
    const tok = fakeTokenize(block.text, 77);
    const maps = (square: number) => [
      { word: 'a', tokenIndices: [1], maxAttention: 0.9 },
      { word: 'red', tokenIndices: [2], maxAttention: 0.7 },
      { word: 'circle', tokenIndices: [3], maxAttention: 0.3 },
      { word: 'and', tokenIndices: [4], maxAttention: 0.05 },
      { word: 'a', tokenIndices: [5], maxAttention: 0.8 },
      { word: 'blue', tokenIndices: [6], maxAttention: 0.6 },
      { word: 'square', tokenIndices: [7], maxAttention: square },
    ];
    // circle 0.3 and square 0.25 are a third of "a"'s attention, but balanced with each other: nothing to flag.
    assert.deepEqual(neglectFindings(block, wordAttentions(block, maps(0.25), tok), 0.5), []);
    // square at 0.1 is a third of circle's: flagged, with its share of the strongest SUBJECT in the message.
    const found = neglectFindings(block, wordAttentions(block, maps(0.1), tok), 0.5);
    assert.deepEqual(found.map((n) => n.word), ['square']);
    assert.match(found[0]!.problem.message, /33% of the strongest subject's \(threshold 50%\)/);
    // Subjects named by the last A&E run (excite.json) join the guess: an excited colour competes then.
    const named = exciteSubjectWords({ subjects: [{ word: 'red', tokenIndex: 2 }, { word: 'square', tokenIndex: 7 }] });
    assert.deepEqual(named, ['red', 'square']);
    assert.deepEqual(neglectFindings(block, wordAttentions(block, maps(0.25), tok), 0.5, named).map((n) => n.word), ['circle', 'square']);
    assert.deepEqual(neglectFindings(block, wordAttentions(block, maps(0.25), tok), 0.4, named).map((n) => n.word), ['square'], '0.3/0.7 = 0.43, 0.25/0.7 = 0.36');
    assert.deepEqual(exciteSubjectWords(undefined), []);
  });

  it('the setting heed.neglectThreshold defaults to the engine\'s measured threshold', async () => {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../extension/package.json', import.meta.url), 'utf8')) as {
      contributes: { configuration: { properties: Record<string, { default?: unknown }> } };
    };
    assert.equal(pkg.contributes.configuration.properties['heed.neglectThreshold']!.default, DEFAULT_NEGLECT_THRESHOLD);
  });
});

describe('extension: TextMate grammar of .prompt files', () => {
  it('colours settings, excite subjects and comments line by line', async () => {
    const { readFileSync } = await import('node:fs');
    const g = JSON.parse(readFileSync(new URL('../../extension/syntaxes/heed-prompt.tmLanguage.json', import.meta.url), 'utf8')) as {
      repository: Record<string, { match: string }>;
    };
    const re = (name: string): RegExp => new RegExp(g.repository[name]!.match);
    assert.ok(re('comment').test('  # a comment'));
    assert.deepEqual(re('excite').exec('excite: cat, frog')?.slice(1), ['excite', ':', ' cat, frog']);
    assert.deepEqual(re('number-setting').exec('steps: 30')?.slice(1, 4), ['steps', ':', '30']);
    assert.equal(re('number-setting').exec('seed: abc')?.[4], 'abc', 'a non-numeric value is marked invalid');
    assert.equal(re('negative').exec('a negative: mood'), null, 'settings are recognised at the start of a line only');
    assert.deepEqual(re('word-setting').exec('loss: syngen')?.slice(1, 4), ['loss', ':', 'syngen']);
    assert.deepEqual(re('number-setting').exec('scale: 200')?.slice(1, 4), ['scale', ':', '200']);
  });
});

describe('extension: A&E loss trace from excite.json', () => {
  it('keeps loss evaluations in order, names scores after the subjects, ignores updates and junk', () => {
    const excite = {
      subjects: ['cat', { word: 'frog' }],
      events: [
        { kind: 'loss', step: 0, loss: 0.9, scores: [0.1, 0.4] },
        { kind: 'update', step: 0, loss: 0.9 },
        { kind: 'loss', step: 0, iteration: 1, loss: 0.5, scores: [0.5, 0.6] },
        { kind: 'loss', step: 1, loss: 0.2, scores: [0.8, 0.9] },
        'junk',
      ],
    };
    assert.deepEqual(lossTraceFromExcite(excite), [
      { step: 0, loss: 0.9, scores: { cat: 0.1, frog: 0.4 } },
      { step: 0, iteration: 1, loss: 0.5, scores: { cat: 0.5, frog: 0.6 } },
      { step: 1, loss: 0.2, scores: { cat: 0.8, frog: 0.9 } },
    ]);
    assert.deepEqual(lossTraceFromExcite(undefined), []);
    assert.deepEqual(lossTraceFromExcite({ events: 'no' }), []);
  });
});

describe('extension: .npy reader of the map panel', () => {
  it('reads float32 and float64 arrays written by the engine writer, and names what it cannot read', async () => {
    const { encodeNpy } = await import('../engine/io/npy.js');
    const { parseNpyFloat } = await import('../extension/src/core/npy.js');
    const f32 = parseNpyFloat(new Uint8Array(encodeNpy(new Float32Array([1.5, -2, 3.25, 0, 7, 8]), [2, 3])));
    assert.deepEqual(f32.shape, [2, 3]);
    assert.deepEqual(Array.from(f32.data), [1.5, -2, 3.25, 0, 7, 8]);
    const f64 = parseNpyFloat(new Uint8Array(encodeNpy(new Float64Array([0.1, 0.2, 0.3]), [3])));
    assert.deepEqual(f64.shape, [3]);
    assert.deepEqual(Array.from(f64.data), Array.from(new Float32Array([0.1, 0.2, 0.3])));
    assert.throws(() => parseNpyFloat(new Uint8Array(encodeNpy(new Int32Array([1, 2]), [2]))), /dtype <i4 is not supported/);
    assert.throws(() => parseNpyFloat(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])), /magic bytes/);
    const cut = new Uint8Array(encodeNpy(new Float32Array([1, 2, 3, 4]), [4])).subarray(0, -4);
    assert.throws(() => parseNpyFloat(cut), /shorter than its shape/);
  });

  it('writes float32 .npy files that the engine reader (an independent parser) reads back', async () => {
    const { readNpy } = await import('../engine/io/npy.js');
    const { encodeNpyFloat32 } = await import('../extension/src/core/npy.js');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'heed-npy-'));
    try {
      for (const [shape, values] of [[[2, 3], [1.5, -2, 3.25, 0, 7, 8]], [[4], [0.1, 0.2, 0.3, 0.4]], [[1, 1, 2], [9, -9]]] as const) {
        const bytes = encodeNpyFloat32(shape, values);
        const headerEnd = 10 + new DataView(bytes.buffer).getUint16(8, true);
        assert.equal(headerEnd % 64, 0, 'data aligned to 64 bytes as numpy writes it');
        const file = join(dir, 'a.npy');
        writeFileSync(file, bytes);
        const back = readNpy(file);
        assert.deepEqual(back.shape, [...shape]);
        assert.deepEqual(Array.from(back.data as Float32Array), Array.from(new Float32Array(values)));
      }
      assert.throws(() => encodeNpyFloat32([2, 2], [1, 2, 3]), /holds 4 values, got 3/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
