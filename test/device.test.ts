// Execution providers: explicit devices open or fail with the fix named; `auto` picks a device that opens and says
// which; a model run on the resolved device agrees with the CPU run. On a machine without a GPU (CI) `auto` resolves to
// the CPU after saying why each GPU provider did not open; on a GPU machine the same assertions hold for the GPU.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { GraphBuilder, DT } from '../models/lib/graph-builder.js';
import { linear } from '../models/lib/layers.js';
import {
  autoOrder, describeDevice, deviceHint, DeviceError, executionProviders, isDevice, resolveDevice, type ConcreteDevice,
} from '../engine/onnx/device.js';
import { openSessionFromPath, runSession, ort } from '../engine/onnx/session.js';

describe('devices (execution providers)', () => {
  it('names a fix for every device on every platform', () => {
    for (const platform of ['linux', 'win32', 'darwin'] as const) {
      for (const d of ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as ConcreteDevice[]) {
        assert.ok(deviceHint(d, platform).length > 20, `${d} on ${platform}`);
      }
    }
    assert.match(deviceHint('webgpu', 'linux'), /libvulkan1/);
    assert.match(deviceHint('cuda', 'linux'), /ONNXRUNTIME_NODE_INSTALL=cuda12/);
    assert.match(deviceHint('dml', 'linux'), /Windows only/);
    assert.match(deviceHint('coreml', 'win32'), /macOS only/);
  });

  it('auto tries GPU providers before the CPU on each platform, and GPU sessions keep the CPU as fallback', () => {
    for (const p of ['linux', 'win32', 'darwin'] as const) assert.equal(autoOrder(p).at(-1), 'cpu');
    assert.deepEqual(autoOrder('win32'), ['cuda', 'dml', 'webgpu', 'cpu']);
    assert.deepEqual(executionProviders('cpu'), ['cpu']);
    assert.deepEqual(executionProviders('webgpu'), ['webgpu', 'cpu']);
    assert.ok(isDevice('auto') && isDevice('coreml') && !isDevice('gpu') && !isDevice('constructor'));
  });

  it('refuses a provider this platform does not have with a DeviceError naming it', async () => {
    const foreign: ConcreteDevice = process.platform === 'darwin' ? 'dml' : 'coreml';
    await assert.rejects(resolveDevice(foreign), (e: unknown) => {
      assert.ok(e instanceof DeviceError);
      assert.match(e.message, new RegExp(`--device ${foreign}`));
      assert.match(e.message, /only|Fix:/);
      console.log(`      ${e.message}`);
      return true;
    });
  });

  it('webgpu either opens or says what to install', async () => {
    try {
      const r = await resolveDevice('webgpu');
      assert.equal(r.device, 'webgpu');
      console.log('      webgpu opened on this machine');
    } catch (e) {
      assert.ok(e instanceof DeviceError);
      if (process.platform === 'linux') assert.match(e.message, /Vulkan|libvulkan1/);
      console.log(`      ${e.message}`);
    }
  });

  describe('auto', () => {
    let dir: string;
    let modelPath: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'heed-device-'));
      const g = new GraphBuilder({ seed: 5 });
      const x = g.input('x', DT.FLOAT, [4, 64]);
      const h = g.scope('fc1', () => linear(g, x, 64, 128));
      const y = g.scope('fc2', () => linear(g, g.op1('Relu', [h]), 128, 32));
      g.op1('Identity', [y], {}, 'y');
      g.output('y', DT.FLOAT, [4, 32]);
      modelPath = join(dir, 'model.onnx');
      writeFileSync(modelPath, toBinary(ModelProtoSchema, g.finish()));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('resolves to a device that opens, says why it skipped the others, and matches the CPU', async () => {
      const r = await resolveDevice('auto');
      const line = describeDevice(r, 'auto');
      console.log(`      auto → ${line}`);
      assert.ok(autoOrder().includes(r.device));
      const order = autoOrder();
      assert.deepEqual(r.skipped.map((s) => s.device), order.slice(0, order.indexOf(r.device)));
      for (const s of r.skipped) assert.ok(s.reason.length > 0);
      assert.match(line, new RegExp(`^${r.device} \\(auto`));

      const x = new ort.Tensor('float32', Float32Array.from({ length: 256 }, (_, i) => Math.cos(i)), [4, 64]);
      const cpu = await openSessionFromPath(modelPath, { device: 'cpu' });
      const dev = await openSessionFromPath(modelPath, { device: r.device });
      const a = (await runSession(cpu, { x })).y.data as Float32Array;
      const b = (await runSession(dev, { x })).y.data as Float32Array;
      await cpu.release();
      await dev.release();
      let diff = 0;
      let ref = 0;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        ref = Math.max(ref, Math.abs(a[i]));
      }
      console.log(`      ${r.device} vs cpu: max|Δ|/max|ref| ${(diff / ref).toExponential(1)}`);
      assert.ok(diff / ref < 1e-3);
    });
  });
});
