// `heed demo`'s settings: a models folder's demo.json over the built-in defaults (a malformed file is a usage error
// naming it), and the subject phrases the demo explains with CLIP.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_DEFAULTS, demoModels, demoSettings, subjectPhrases } from '../engine/cli/demo.js';
import { HeedError } from '../engine/errors.js';

const REPO = resolve(fileURLToPath(new URL('../../', import.meta.url)));

describe('heed demo settings', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'heed-demo-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('no demo.json: the built-in defaults (random-weight models)', () => {
    assert.deepEqual(demoSettings(dir), DEMO_DEFAULTS);
    assert.equal(DEMO_DEFAULTS.trained, false);
  });

  it('demo.json overrides what it names and keeps the rest', () => {
    writeFileSync(join(dir, 'demo.json'), JSON.stringify({ prompt: 'a red circle', seed: 7, width: 128, trained: true, excite: 'red', aeScaleFactor: 80 }));
    assert.deepEqual(demoSettings(dir), { ...DEMO_DEFAULTS, prompt: 'a red circle', seed: 7, width: 128, trained: true, excite: 'red', aeScaleFactor: 80 });
    assert.equal(DEMO_DEFAULTS.excite, 'auto');
  });

  it('a malformed demo.json is a usage error naming the file and the field', () => {
    writeFileSync(join(dir, 'demo.json'), '{ "seed": ');
    assert.throws(() => demoSettings(dir), (e: unknown) => e instanceof HeedError && e.kind === 'invalid_input' && /demo\.json is not valid JSON/.test(e.message));
    writeFileSync(join(dir, 'demo.json'), JSON.stringify({ steps: 'many' }));
    assert.throws(() => demoSettings(dir), /"steps" must be a non-negative number/);
  });

  it('the committed Shapes folder is the default and its demo.json is a trained two-subject prompt', () => {
    const m = demoModels(undefined);
    assert.equal(m.dir, join(REPO, 'models', 'shapes'));
    const s = demoSettings(m.dir);
    assert.equal(s.trained, true);
    assert.equal(subjectPhrases(s.prompt).length, 2);
  });

  it('a folder without the models names what is missing and how to get it', () => {
    assert.throws(() => demoModels(dir), /missing sd\/, vit\/, clip\/.*--models DIR/);
  });

  it('subject phrases split at and / with / commas and drop phrases of function words only', () => {
    assert.deepEqual(subjectPhrases('a green circle and a yellow square'), ['a green circle', 'a yellow square']);
    assert.deepEqual(subjectPhrases('a cat, a dog with a hat'), ['a cat', 'a dog', 'a hat']);
    assert.deepEqual(subjectPhrases('a red circle'), ['a red circle']);
    assert.deepEqual(subjectPhrases('the and a'), []);
  });
});
