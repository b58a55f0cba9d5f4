// The binding margin (engine/attention/binding.ts) on maps whose answer is known, and the editor's leakage warning
// built on it (extension/src/core/tokens.ts).
import assert from 'node:assert/strict';
import { bindingMargins, correlation, mayHaveLeaked, DEFAULT_LEAKAGE_THRESHOLD } from '../engine/attention/binding.js';
import { parsePromptFile, useSynGenEdits } from '../extension/src/core/promptFile.js';
import { leakageFindings, reportBindings } from '../extension/src/core/tokens.js';

// 2 × 4 maps: the triangle on the left half, the circle on the right.
const LEFT = Float32Array.from([1, 1, 0, 0, 1, 1, 0, 0]);
const RIGHT = Float32Array.from([0, 0, 1, 1, 0, 0, 1, 1]);
const BOTH = Float32Array.from([1, 2, 2, 1, 1, 2, 2, 1]); // as much on both halves

describe('binding margin', function () {
  it('correlation is Pearson\'s: 1 for the same map up to scale and baseline, −1 for its mirror, 0 for a flat map', function () {
    const a = Float32Array.from([0, 1, 2, 3, 4, 5]);
    assert.ok(Math.abs(correlation(a, a.map((v) => 3 * v + 7)) - 1) < 1e-9);
    assert.ok(Math.abs(correlation(a, a.map((v) => 5 - v)) + 1) < 1e-9);
    assert.equal(correlation(a, new Float32Array(6).fill(2)), 0);
    // numpy.corrcoef([0,1,2,3,4,5], [1,0,3,2,5,4])[0,1] = 0.8285714285714286
    assert.ok(Math.abs(correlation(a, Float32Array.from([1, 0, 3, 2, 5, 4])) - 0.8285714285714286) < 1e-9);
  });

  it('is 2 for modifiers on their own nouns, −2 when swapped, about 0 when a colour spreads over both', function () {
    const maps: Record<string, Float32Array> = { triangle: LEFT, circle: RIGHT, red: LEFT, green: RIGHT, swapRed: RIGHT, swapGreen: LEFT, spread: BOTH };
    const of = (w: string) => maps[w];
    const bound = bindingMargins([{ noun: 'triangle', modifiers: ['red'] }, { noun: 'circle', modifiers: ['green'] }], of);
    assert.deepEqual(bound.map((b) => Math.round(b.margin * 1e9) / 1e9), [2, 2]);
    assert.equal(mayHaveLeaked(bound), false);
    const swapped = bindingMargins([{ noun: 'triangle', modifiers: ['swapRed'] }, { noun: 'circle', modifiers: ['swapGreen'] }], of);
    assert.deepEqual(swapped.map((b) => Math.round(b.margin * 1e9) / 1e9), [-2, -2]);
    const spread = bindingMargins([{ noun: 'triangle', modifiers: ['spread'] }, { noun: 'circle', modifiers: ['spread'] }], of);
    assert.ok(spread.every((b) => Math.abs(b.margin) < 0.5), JSON.stringify(spread));
    assert.equal(mayHaveLeaked(spread), true);
    // The least bound of several modifiers decides; one noun alone, or no modifiers, gives no margin.
    const two = bindingMargins([{ noun: 'triangle', modifiers: ['red', 'swapRed'] }, { noun: 'circle', modifiers: [] }], of);
    assert.deepEqual(two.map((b) => [b.noun, Math.round(b.margin * 1e9) / 1e9]), [['triangle', -2]]);
    assert.deepEqual(bindingMargins([{ noun: 'triangle', modifiers: ['red'] }], of), []);
    assert.equal(mayHaveLeaked([]), false);
  });

  it('the editor warns on each modifier when even the best binding is under the threshold, pointing at SynGen', function () {
    const block = parsePromptFile('a red triangle and a green circle\nseed: 3').prompts[0]!;
    const report = { bindings: [{ noun: 'triangle', modifiers: ['red'], margin: -0.24 }, { noun: 'circle', modifiers: ['green'], margin: 0.25 }, { noun: 7 }] };
    const bindings = reportBindings(report);
    assert.equal(bindings.length, 2, 'malformed entries are dropped');
    const found = leakageFindings(block, bindings, DEFAULT_LEAKAGE_THRESHOLD);
    assert.deepEqual(found.map((p) => [p.code, p.range.line, p.range.start, p.range.end]), [['leaked-binding', 0, 2, 5], ['leaked-binding', 0, 21, 26]]);
    assert.match(found[0]!.message, /'red' may not stay on 'triangle'.*best binding margin 0\.25.*loss: syngen/);
    assert.deepEqual(leakageFindings(block, [{ noun: 'triangle', modifiers: ['red'], margin: 1.3 }, { noun: 'circle', modifiers: ['green'], margin: 0.2 }], DEFAULT_LEAKAGE_THRESHOLD), []);
    assert.deepEqual(reportBindings(undefined), []);
  });

  it('the quick fix sets loss: syngen and the nouns as excite:, rewriting lines in place or appending them', function () {
    const apply = (text: string, nouns: string[]): string => {
      const lines = text.split('\n');
      const block = parsePromptFile(text).prompts[0]!;
      // Apply from the last edit backwards so earlier ranges stay valid.
      const edits = useSynGenEdits(block, nouns, (l) => lines[l]!).sort((a, b) => b.range.line - a.range.line || b.range.start - a.range.start);
      for (const e of edits) lines[e.range.line] = lines[e.range.line]!.slice(0, e.range.start) + e.newText + lines[e.range.line]!.slice(e.range.end);
      return lines.join('\n');
    };
    const appended = apply('a red triangle and a green circle\nseed: 3', ['triangle', 'circle']);
    assert.equal(appended, 'a red triangle and a green circle\nseed: 3\nexcite: triangle, circle\nloss: syngen');
    assert.deepEqual(parsePromptFile(appended).prompts[0]!.settings, { seed: 3, excite: ['triangle', 'circle'], loss: 'syngen' });
    const rewritten = apply('a red triangle and a green circle\nexcite: red, green\nloss: excite\nscale: 80', ['triangle', 'circle']);
    assert.equal(rewritten, 'a red triangle and a green circle\nexcite: triangle, circle\nloss: syngen\nscale: 80');
  });
});
