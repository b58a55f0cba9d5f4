// Sessions that open one weights file share one copy of it (SessionOptions.shareWeights, the default), and the VJP
// graphs read weights in place instead of a constant-folded transpose. Measured as what a user's machine feels:
// anonymous memory (/proc/self/smaps_rollup) of a fresh child process before and after opening sessions on a model
// whose weights (64 MiB in an external file) dwarf everything else. Linux only (smaps_rollup).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GraphBuilder, DT } from '../models/lib/graph-builder.js';
import { linear } from '../models/lib/layers.js';
import { loadModel } from '../engine/onnx/model.js';
import { openSession, openSessionFromPath, runSession, ort } from '../engine/onnx/session.js';
import { VjpRunner } from '../engine/onnx/autodiff/runner.js';

const WIDTH = 2048;
const ROWS = 16;
const WEIGHT_MB = (2 * 2 * WIDTH * WIDTH * 4) / 2 ** 20; // two layers of [2048, 4096] and [4096, 2048]

function anonMb(): number {
  const text = readFileSync('/proc/self/smaps_rollup', 'utf8');
  return Number(/^Anonymous:\s+(\d+) kB/m.exec(text)?.[1]) / 1024;
}

/** x [ROWS, WIDTH] → Linear(WIDTH, 2·WIDTH) → Linear(2·WIDTH, WIDTH) → y, weights in `weights.pb` as torch exports them. */
function buildMlp(dir: string): string {
  const g = new GraphBuilder({ seed: 3, external: { dir, fileName: 'weights.pb' } });
  const x = g.input('x', DT.FLOAT, [ROWS, WIDTH]);
  const h = g.scope('fc1', () => linear(g, x, WIDTH, 2 * WIDTH));
  const y = g.scope('fc2', () => linear(g, h, 2 * WIDTH, WIDTH));
  g.op1('Identity', [y], {}, 'y');
  g.output('y', DT.FLOAT, [ROWS, WIDTH]);
  const path = join(dir, 'model.onnx');
  writeFileSync(path, toBinary(ModelProtoSchema, g.finish()));
  return path;
}

function input(): ort.Tensor {
  const data = Float32Array.from({ length: ROWS * WIDTH }, (_, i) => Math.sin(i * 0.37));
  return new ort.Tensor('float32', data, [ROWS, WIDTH]);
}

/** What one fresh process measures: anonymous memory added by opening (and running) sessions in the given mode. */
type Mode = 'shared' | 'private' | 'vjp';
async function measureInChild(modelPath: string, mode: Mode): Promise<number> {
  const here = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [here, '--measure', mode, modelPath], { encoding: 'utf8' });
  const line = r.stdout.split('\n').find((l) => l.startsWith('GREW_MB '));
  assert.ok(line, `measuring child (${mode}) failed: exit ${r.status}\n${r.stderr}`);
  return Number(line.slice('GREW_MB '.length));
}

/**
 * Runs in a fresh process (a long mocha process reuses freed heap pages, which hides growth): opens the sessions of
 * `mode` on the model and prints how much anonymous memory they added.
 */
async function childMeasure(mode: Mode, modelPath: string): Promise<void> {
  // Warm onnxruntime's one-time allocations (environment, thread pools) with one shared session first.
  const warm = await openSessionFromPath(modelPath, { shareWeights: true });
  await warm.release();
  const before = anonMb();
  const keep: { release(): Promise<void> }[] = [];
  if (mode === 'vjp') {
    keep.push(await openSessionFromPath(modelPath));
    keep.push(await openSession(loadModel(modelPath)));
    const runner = await VjpRunner.create(loadModel(modelPath), { seeds: ['y'], wrt: ['x'], session: {} });
    const { residuals } = await runner.forward({ x: input() });
    const grads = await runner.backward(residuals, { y: new ort.Tensor('float32', new Float32Array(ROWS * WIDTH).fill(1), [ROWS, WIDTH]) });
    if (Object.values(grads)[0]!.dims.join(',') !== `${ROWS},${WIDTH}`) throw new Error('wrong gradient dims');
    keep.push({ release: () => runner.dispose() });
  } else {
    for (let i = 0; i < 3; i++) {
      const s = await openSessionFromPath(modelPath, { shareWeights: mode === 'shared' });
      await runSession(s, { x: input() });
      keep.push(s);
    }
  }
  process.stdout.write(`GREW_MB ${anonMb() - before}\n`);
  for (const k of keep) await k.release();
}

if (process.argv[2] === '--measure') {
  await childMeasure(process.argv[3] as Mode, process.argv[4]!);
} else {
  describe('shared weights (one copy per weights file)', function () {
    let dir: string;
    let modelPath: string;
    before(function () {
      if (!existsSync('/proc/self/smaps_rollup')) {
        console.log('      (skipped: /proc/self/smaps_rollup is Linux only)');
        this.skip();
      }
      dir = mkdtempSync(join(tmpdir(), 'heed-shared-weights-'));
      modelPath = buildMlp(dir);
    });
    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('three sessions on one weights file (each after a run) add far less anonymous memory than one copy of the weights', async () => {
      const grew = await measureInChild(modelPath, 'shared');
      console.log(`      weights ${WEIGHT_MB} MiB; 3 shared sessions added ${grew.toFixed(1)} MiB anonymous`);
      assert.ok(grew < 0.5 * WEIGHT_MB, `3 sessions added ${grew.toFixed(1)} MiB of anonymous memory (weights: ${WEIGHT_MB} MiB)`);
    });

    it('private sessions (shareWeights: false) copy the weights each: the contrast the option removes', async () => {
      const grew = await measureInChild(modelPath, 'private');
      console.log(`      3 private sessions added ${grew.toFixed(1)} MiB anonymous`);
      assert.ok(grew > 2 * WEIGHT_MB, `expected about 3 private copies (${3 * WEIGHT_MB} MiB), anonymous memory grew ${grew.toFixed(1)} MiB`);
    });

    it('shared and private sessions compute the same outputs', async () => {
      const a = await openSessionFromPath(modelPath);
      const b = await openSessionFromPath(modelPath, { shareWeights: false });
      const ya = (await runSession(a, { x: input() })).y.data as Float32Array;
      const yb = (await runSession(b, { x: input() })).y.data as Float32Array;
      await a.release();
      await b.release();
      let maxRef = 0;
      let maxDiff = 0;
      for (let i = 0; i < ya.length; i++) {
        maxRef = Math.max(maxRef, Math.abs(yb[i]));
        maxDiff = Math.max(maxDiff, Math.abs(ya[i] - yb[i]));
      }
      console.log(`      max|Δ|/max|ref| shared vs private: ${(maxDiff / maxRef).toExponential(1)}`);
      assert.ok(maxDiff / maxRef < 1e-5);
    });

    it('a staged edited copy and the VJP forward/backward sessions read the weights in place (no transposed copy)', async () => {
      const grew = await measureInChild(modelPath, 'vjp');
      console.log(`      plain + staged + VJP forward + backward sessions added ${grew.toFixed(1)} MiB anonymous`);
      assert.ok(grew < 0.5 * WEIGHT_MB, `4 sessions added ${grew.toFixed(1)} MiB of anonymous memory (weights: ${WEIGHT_MB} MiB)`);
    });
  });
}
