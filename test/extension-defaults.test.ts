// The extension's default model folders: the Shapes models next to the engine it runs (a checkout's models/shapes,
// the .vsix's engine/models/shapes), found from the CLI path; none when that folder has no model.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultModelDir, engineRoot } from '../extension/src/core/defaults.js';

const REPO = resolve(fileURLToPath(new URL('../../', import.meta.url)));

describe('extension: default models', () => {
  it('a checkout\'s CLI finds the committed Shapes models', () => {
    const cli = join(REPO, 'dist', 'engine', 'cli', 'main.js');
    assert.equal(engineRoot(cli), REPO);
    for (const kind of ['sd', 'vit', 'clip'] as const) assert.equal(defaultModelDir(cli, kind), join(REPO, 'models', 'shapes', kind));
  });

  it('a bundled engine (engine/dist/engine/cli/main.js) looks in engine/models/shapes, and a folder without a model is no default', () => {
    const ext = mkdtempSync(join(tmpdir(), 'heed-ext-'));
    try {
      const cli = join(ext, 'engine', 'dist', 'engine', 'cli', 'main.js');
      assert.equal(defaultModelDir(cli, 'sd'), '');
      mkdirSync(join(ext, 'engine', 'models', 'shapes', 'sd'), { recursive: true });
      assert.equal(defaultModelDir(cli, 'sd'), '', 'an empty folder is not a model');
      writeFileSync(join(ext, 'engine', 'models', 'shapes', 'sd', 'model_index.json'), '{}');
      assert.equal(defaultModelDir(cli, 'sd'), join(ext, 'engine', 'models', 'shapes', 'sd'));
      assert.equal(defaultModelDir(cli, 'vit'), '');
    } finally {
      rmSync(ext, { recursive: true, force: true });
    }
  });
});
