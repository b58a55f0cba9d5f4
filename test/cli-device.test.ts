// `--device` on the commands that run models: a device that cannot open is a user error (exit 2, one line naming the
// fix) before any model loads; `auto` says which device it picked and runs.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { heed, assertUserError } from './cli-helpers.js';

// A provider onnxruntime-node has no backend for on this platform (no native library is tried, so stderr stays clean).
const FOREIGN = process.platform === 'darwin' ? 'dml' : 'coreml';

describe('cli: --device', function () {
  let models: TinyModels;
  let tmp: string;
  before(async () => {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-device-'));
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('generate: a device this platform lacks → exit 2 naming the fix, nothing written', async () => {
    const out = join(tmp, 'gen-foreign');
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64x64', '--device', FOREIGN, '--out', out]);
    assertUserError(r, new RegExp(`cannot run on --device ${FOREIGN}: .*Fix: .*--device cpu`));
    assert.ok(!existsSync(join(out, 'image.png')));
  });

  it('explain: an unknown device name → exit 2 listing the choices', async () => {
    const r = await heed(['explain', '--model', models.vit, '--image', join(models.sd, '..', 'nonexistent.png'), '--device', 'gpu', '--out', join(tmp, 'ex')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--device|gpu/);
  });

  it('generate --device auto: picks a device that opens, says which, and writes the image', async () => {
    const out = join(tmp, 'gen-auto');
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '64x64', '--seed', '1', '--device', 'auto', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.startsWith('device: '));
    assert.ok(line, `no "device:" line in:\n${r.stdout}`);
    assert.match(line!, /^device: (cpu|webgpu|cuda|dml|coreml) \(auto/);
    assert.ok(existsSync(join(out, 'image.png')));
  });
});
