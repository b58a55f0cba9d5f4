// The random-weight SDXL builder (`node dist/models/build.js --kind sdxl --size tiny`) against the real tiny export of
// test/fixtures/sdxl (made with diffusers' own classes, same architecture): the same graph inputs and outputs (names,
// element types), the same attention Softmax nodes and UNet parameter count; and `heed generate` end to end on the
// built folder (child process), plain, with maps, and with Attend-and-Excite.
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { graphValues } from '../engine/diffusion/boundary.js';
import { heed, REPO } from './cli-helpers.js';

const FIXTURE = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));

function io(path: string): { inputs: string[]; outputs: string[]; softmax: string[] } {
  const graph = new Graph(loadModel(path));
  const fmt = (s: { name: string; type: string }) => `${s.name}:${s.type}`;
  return {
    inputs: graphValues(graph, 'input').map(fmt).sort(),
    outputs: graphValues(graph, 'output').map(fmt).sort(),
    softmax: graph.nodes.filter((n) => n.opType === 'Softmax').map((n) => n.name).sort(),
  };
}

describe('SDXL builder and `heed generate` on an SDXL folder', function () {
  this.timeout(600_000);
  let tmp = '';
  let built = '';
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'heed-sdxl-build-'));
    built = join(tmp, 'model');
    const r = await heed(['--kind', 'sdxl', '--size', 'tiny', '--out', built], { script: join(REPO, 'dist/models/build.js') });
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('builds the layout and graph interface of the real export', () => {
    for (const c of ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder']) {
      const a = io(join(built, c, 'model.onnx'));
      const b = io(join(FIXTURE, c, 'model.onnx'));
      assert.deepEqual(a.inputs, b.inputs, `${c} inputs`);
      assert.deepEqual(a.outputs, b.outputs, `${c} outputs`);
      if (c === 'unet') assert.deepEqual(a.softmax, b.softmax, 'UNet attention Softmax nodes');
    }
    assert.ok(existsSync(join(built, 'unet', 'model.onnx_data')));
    const info = JSON.parse(readFileSync(join(built, 'heed_build.json'), 'utf8')) as { parameter_counts: { unet: number } };
    const meta = JSON.parse(readFileSync(join(FIXTURE, 'ref', 'meta.json'), 'utf8')) as { unet_params: number };
    assert.equal(info.parameter_counts.unet, meta.unet_params);
    for (const f of ['model_index.json', 'scheduler/scheduler_config.json', 'tokenizer_2/special_tokens_map.json']) {
      assert.ok(existsSync(join(built, f)), f);
    }
  });

  it('heed generate runs on it with maps and writes an SDXL report', async () => {
    const out = join(tmp, 'gen');
    const r = await heed(['generate', '--model', built, '--prompt', 'a cat and a frog', '--steps', '2', '--size', '192x128',
      '--seed', '1', '--maps', '--guidance-rescale', '0.5', '--original-size', '384x256', '--crop-coords', '8,16',
      '--out', out, '--json', '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      settings: { guidance: number; architecture: string; guidanceRescale: number; timeIds: number[] }; maps: { word: string }[];
    };
    // (height, width), (top, left), then the target size defaulting to the image's 128x192.
    assert.deepEqual(report.settings.timeIds, [256, 384, 8, 16, 128, 192]);
    assert.equal(report.settings.architecture, 'sdxl');
    assert.equal(report.settings.guidance, 5);
    assert.equal(report.settings.guidanceRescale, 0.5);
    assert.deepEqual(report.maps.map((m) => m.word), ['a', 'cat', 'and', 'frog']); // one map per distinct word
    assert.ok(existsSync(join(out, 'image.png')));
  });

  it('heed generate --excite runs Attend-and-Excite on it at the latent/4 grid', async () => {
    const out = join(tmp, 'excite');
    const r = await heed(['generate', '--model', built, '--prompt', 'a cat and a frog', '--steps', '2', '--size', '256x256',
      '--seed', '1', '--excite', 'cat,frog', '--ae-max-iter-to-alter', '1', '--out', out, '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    const ex = JSON.parse(readFileSync(join(out, 'excite.json'), 'utf8')) as { options: { resolution: number } };
    assert.equal(ex.options.resolution, 8);
  });

  it('an out-of-range --guidance-rescale and a malformed --crop-coords are usage errors (exit 2)', async () => {
    const r = await heed(['generate', '--model', built, '--prompt', 'a cat', '--guidance-rescale', '2', '--out', join(tmp, 'x')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--guidance-rescale/);
    const c = await heed(['generate', '--model', built, '--prompt', 'a cat', '--crop-coords', '8x16', '--out', join(tmp, 'x')]);
    assert.equal(c.code, 2, c.stderr);
    assert.match(c.stderr, /--crop-coords must look like 0,0 \(top,left\)/);
  });
});
