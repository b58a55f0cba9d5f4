// Which onnxruntime execution provider runs the sessions. onnxruntime-node 1.30 bundles CPU and WebGPU (Dawn: Vulkan on
// Linux, D3D12 on Windows, Metal on macOS), DirectML on Windows and CoreML on macOS; CUDA needs provider libraries that
// its install step downloads only when asked. A device that cannot open fails fast with a native message that does not
// say what to install; this module turns it into one that does, and resolves `auto` to the best device that opens.
// onnxruntime is imported only when a device is probed: the CLI's --help and the server's workers load this module
// for its names and checks without paying for the runtime's start-up.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { HeedError } from '../errors.js';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  GraphProtoSchema, ModelProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema, TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema, TypeProto_TensorSchema, TypeProtoSchema, ValueInfoProtoSchema,
} from 'onnx-buf';

export const DEVICES = ['auto', 'cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const;
export type Device = (typeof DEVICES)[number];
/** A device a session can actually be created on. */
export type ConcreteDevice = Exclude<Device, 'auto'>;

/** A device that will not open: the caller's choice to change (or the machine's setup to fix), field `device`. */
export class DeviceError extends HeedError {
  constructor(readonly device: Device, message: string) {
    super('invalid_input', message, { field: 'device' });
    this.name = 'DeviceError';
  }
}

export function isDevice(v: string): v is Device {
  return (DEVICES as readonly string[]).includes(v);
}

/** What a user must install or change when `device` will not open, by platform. */
export function deviceHint(device: ConcreteDevice, platform: NodeJS.Platform = process.platform): string {
  switch (device) {
    case 'cpu':
      return 'the CPU provider ships inside onnxruntime-node; reinstall the package (npm ci)';
    case 'webgpu':
      return platform === 'linux'
        ? 'WebGPU on Linux runs over Vulkan: install the Vulkan loader and a driver (Debian/Ubuntu: apt-get install ' +
          'libvulkan1 mesa-vulkan-drivers; NVIDIA: the proprietary driver with its Vulkan ICD), then check with vulkaninfo'
        : 'WebGPU needs a GPU adapter (Windows: D3D12, macOS: Metal); update the graphics driver';
    case 'cuda':
      return platform === 'linux' || platform === 'win32'
        ? 'the CUDA provider is not installed by default: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci ' +
          '(downloads the provider libraries) on a machine with CUDA 12 and cuDNN 9'
        : 'CUDA is available on Linux and Windows only';
    case 'dml':
      return platform === 'win32' ? 'DirectML needs a DirectX 12 capable GPU and driver' : 'DirectML is Windows only; on this platform use --device auto';
    case 'coreml':
      return platform === 'darwin' ? 'CoreML needs macOS 10.15 or newer' : 'CoreML is macOS only; on this platform use --device auto';
  }
}

/** The order `auto` tries on a platform: dedicated GPU providers first, CPU last (it always opens). */
export function autoOrder(platform: NodeJS.Platform = process.platform): ConcreteDevice[] {
  if (platform === 'win32') return ['cuda', 'dml', 'webgpu', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'webgpu', 'cpu'];
  return ['cuda', 'webgpu', 'cpu'];
}

/** Execution providers for a concrete device; GPU devices keep CPU as the fallback for operators they lack. */
export function executionProviders(device: ConcreteDevice): string[] {
  return device === 'cpu' ? ['cpu'] : [device, 'cpu'];
}

/** The folder of onnxruntime-node's native binding for this platform (where provider libraries are installed). */
function ortBinaryDir(): string | undefined {
  try {
    const main = createRequire(import.meta.url).resolve('onnxruntime-node'); // …/onnxruntime-node/dist/index.js
    return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

const VULKAN_LOADER_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/lib64', '/lib'];

/**
 * What is certainly missing for a device, found without opening it (file checks), or undefined when it may open.
 * Trying a session where a library is absent makes onnxruntime and Dawn print native errors to stderr; checking first
 * keeps `auto` quiet and names the missing piece exactly.
 */
export function missingPiece(device: ConcreteDevice, platform: NodeJS.Platform = process.platform): string | undefined {
  if (device === 'cuda' && (platform === 'linux' || platform === 'win32')) {
    const lib = platform === 'linux' ? 'libonnxruntime_providers_cuda.so' : 'onnxruntime_providers_cuda.dll';
    const dir = ortBinaryDir();
    if (dir && !existsSync(join(dir, lib))) return `the CUDA provider library ${lib} is not installed beside onnxruntime-node's binding`;
  }
  if (device === 'webgpu' && platform === 'linux') {
    const extra = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
    if (![...extra, ...VULKAN_LOADER_DIRS].some((d) => existsSync(join(d, 'libvulkan.so.1')))) return 'the Vulkan loader libvulkan.so.1 is not installed';
  }
  return undefined;
}

/** ORT's native message, first line only, without its source-file prefix. */
function nativeReason(e: unknown): string {
  const first = String((e as Error)?.message ?? e).split('\n')[0];
  return first.replace(/^\/\S+:\d+ [^ ]+ /, '').replace(/[.\s]+$/, '').slice(0, 240);
}

/** An error for a session that could not open on `device`, naming what is missing. */
export function deviceOpenError(device: ConcreteDevice, e: unknown): DeviceError {
  return new DeviceError(device, `cannot run on --device ${device}: ${nativeReason(e)}. Fix: ${deviceHint(device)}; or use --device cpu`);
}

/** A one-node float model (y = Relu(x)): small enough to open on any provider in milliseconds. */
function probeModel(): Uint8Array {
  const vi = (name: string) => create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType: 1,
          shape: create(TensorShapeProtoSchema, { dim: [create(TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: 4n } })] }),
        }),
      },
    }),
  });
  const model = create(ModelProtoSchema, {
    irVersion: 7n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: 14n })],
    graph: create(GraphProtoSchema, {
      name: 'heed-device-probe',
      node: [create(NodeProtoSchema, { name: 'relu', opType: 'Relu', input: ['x'], output: ['y'] })],
      input: [vi('x')],
      output: [vi('y')],
    }),
  });
  return toBinary(ModelProtoSchema, model);
}

export interface ResolvedDevice {
  device: ConcreteDevice;
  /** Devices `auto` tried first and why each did not open (empty for an explicit device). */
  skipped: { device: ConcreteDevice; reason: string }[];
}

const resolved = new Map<Device, Promise<ResolvedDevice>>();

/**
 * Resolves `auto` to the first device of autoOrder() on which a session opens, and checks that an explicit device
 * opens at all (a DeviceError that names the fix otherwise). Cached per process: probing costs a session each.
 */
export function resolveDevice(device: Device = 'cpu'): Promise<ResolvedDevice> {
  let p = resolved.get(device);
  if (!p) {
    p = probe(device);
    // A failed probe is not cached: the user may install the missing piece and retry in the same server process.
    p.catch(() => resolved.delete(device));
    resolved.set(device, p);
  }
  return p;
}

async function probe(device: Device): Promise<ResolvedDevice> {
  if (device === 'cpu') return { device, skipped: [] };
  const ort = await import('onnxruntime-node');
  const bytes = probeModel();
  const candidates = device === 'auto' ? autoOrder() : [device];
  const skipped: ResolvedDevice['skipped'] = [];
  for (const d of candidates) {
    const missing = missingPiece(d);
    if (missing) {
      if (device !== 'auto') throw deviceOpenError(d, new Error(missing));
      skipped.push({ device: d, reason: missing });
      continue;
    }
    try {
      // The device alone: with a fallback list onnxruntime-common silently drops providers it has no backend for.
      const s = await ort.InferenceSession.create(bytes, { executionProviders: [d], logSeverityLevel: 4 });
      await s.release();
      return { device: d, skipped };
    } catch (e) {
      if (device !== 'auto') throw deviceOpenError(d, e);
      skipped.push({ device: d, reason: nativeReason(e) });
    }
  }
  // Unreachable in practice: the CPU provider always opens.
  throw new DeviceError(device, `no execution provider opened (${skipped.map((s) => `${s.device}: ${s.reason}`).join('; ')})`);
}

/** One line for logs and reports: "webgpu" or "cpu (auto; cuda: …, webgpu: …)". */
export function describeDevice(r: ResolvedDevice, requested: Device): string {
  if (requested !== 'auto') return r.device;
  const why = r.skipped.map((s) => `${s.device} did not open: ${s.reason}`).join('; ');
  return why ? `${r.device} (auto; ${why})` : `${r.device} (auto)`;
}
