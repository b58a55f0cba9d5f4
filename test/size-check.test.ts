// Issue 16 items 5 and 10: sizes a generate job cannot run are refused before any session runs, by the CLI
// (exit 2) and the server (invalid_input with the field), instead of an onnxruntime shape error or an OOM kill.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { HeedClient } from '../engine/server/client.js';
import { startServer, type HeedServer } from '../engine/server/server.js';
import { assertUserError, heed } from './cli-helpers.js';

describe('generate size checks (issue 16 items 5, 10)', function () {
  this.timeout(300_000);
  let models: TinyModels;
  let tmp: string;
  let server: HeedServer | undefined;
  before(async () => {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-size-'));
  });
  after(async () => {
    await server?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('CLI: 4096x4096 is refused with the memory estimate (exit 2)', async () => {
    const r = await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '4096x4096', '--max-job-memory-mb', '4096', '--out', join(tmp, 'big')]);
    assertUserError(r, /estimated \d+ MiB.*limit of 4096 MiB/);
  });

  it('CLI: a side that is a multiple of 8 but not of the UNet downsampling is refused (exit 2)', async () => {
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'a cat', '--steps', '1', '--size', '104x64', '--out', join(tmp, 'odd')]), /104x64 does not fit this UNet.*multiples of \d+.*width 64 or 128/);
  });

  it('server: both refused with invalid_input naming the field, before the job runs', async () => {
    server = await startServer({ port: 0, log: () => undefined, outDir: join(tmp, 'out'), maxJobMemoryMb: 4096 });
    const c = await HeedClient.connect(server.url, { token: server.token });
    const big = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 1, width: 4096, height: 4096 });
    assert.equal(big.terminal.type, 'error');
    if (big.terminal.type === 'error') {
      assert.equal(big.terminal.code, 'invalid_input');
      assert.equal(big.terminal.field, 'width');
      assert.match(big.terminal.message, /estimated \d+ MiB.*limit of 4096 MiB/);
    }
    const odd = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat', steps: 1, width: 104, height: 64 });
    assert.equal(odd.terminal.type, 'error');
    if (odd.terminal.type === 'error') {
      assert.equal(odd.terminal.code, 'invalid_input');
      assert.equal(odd.terminal.field, 'width');
      assert.match(odd.terminal.message, /does not fit this UNet.*multiples of \d+.*width 64 or 128/);
    }
    // Issue 16 item 6: an A&E sigma whose Gaussian kernel would be 0/0 = NaN is refused up front with its field.
    const nan = await c.request({ type: 'generate', model: models.sd, prompt: 'a cat and a frog', steps: 1, width: 64, height: 64, excite: { subjects: ['cat'], sigma: 1e-300, kernel: 31 } });
    assert.equal(nan.terminal.type, 'error');
    if (nan.terminal.type === 'error') {
      assert.equal(nan.terminal.code, 'invalid_input');
      assert.equal(nan.terminal.field, 'excite.sigma');
    }
    await c.close();
  });

  it('CLI: an A&E sigma that would make the smoothing kernel NaN is refused at the flag (exit 2), a normal one runs', async () => {
    const base = ['generate', '--model', models.sd, '--prompt', 'a cat and a frog', '--steps', '1', '--size', '64', '--excite', 'cat', '--ae-max-refinement', '1'];
    assertUserError(await heed([...base, '--ae-sigma', '1e-300', '--out', join(tmp, 'nan')]), /--ae-sigma must be a number between/);
    const ok = await heed([...base, '--ae-sigma', '0.5', '--out', join(tmp, 'sigma-ok')]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});
