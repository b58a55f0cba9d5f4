// Session factory over onnxruntime-node. An unedited model on disk is opened by path (ORT reads its external data
// itself); an edited model is staged with hard links to its weight files and opened by path too (staging.ts), or, when
// no staging folder shares the weights' filesystem, serialised with its weight files handed to ORT as buffers.
import * as ort from 'onnxruntime-node';
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { join } from 'node:path';
import { encodeModel, externalFiles, type OnnxModel } from './model.js';
import { stageModel } from './staging.js';
import { executionProviders, deviceOpenError, type ConcreteDevice } from './device.js';

export interface SessionOptions {
  /** Threads for one op (default: 1 for tiny graphs is fastest on this class of machine; callers pass more for big ones). */
  intraOpThreads?: number;
  interOpThreads?: number;
  /** ORT's CPU arena keeps freed activations for reuse; off by default for big graphs to bound RSS. */
  memArena?: boolean;
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  logSeverity?: 0 | 1 | 2 | 3 | 4;
  /** Edited models with external weights: stage them next to hard links of the weight files (default true; false
   *  hands the weights to ORT as buffers, a full copy per session). */
  staging?: boolean;
  /**
   * Keep the weights in onnxruntime's memory map of the weight file, shared by every session that opens it (default
   * true). ORT maps external data, but by default MLAS *prepacking* copies each MatMul/Conv weight into a private
   * buffer per session, and at level 'all' the NCHWc transformer reorders Conv weights per session: an SD 1.5 UNet then
   * costs 3.3 GB of anonymous memory per session. With both off, three sessions of it hold ~90 MB of anonymous memory
   * and share one page-cache copy, and a CFG step was no slower (bench: `--only shared-weights`).
   */
  shareWeights?: boolean;
  /** Execution provider (default 'cpu'); resolve `auto` first with device.ts resolveDevice(). */
  device?: ConcreteDevice;
}

/** ORT session config entries that keep initializers in the shared file mapping (see SessionOptions.shareWeights). */
const SHARED_WEIGHTS_CONFIG = {
  session: { disable_prepacking: '1' },
  optimization: { disable_specified_optimizers: 'NchwcTransformer' },
} as const;

export class SessionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionError';
  }
}

function ortOptions(o: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: o.intraOpThreads ?? 1,
    interOpNumThreads: o.interOpThreads ?? 1,
    enableCpuMemArena: o.memArena ?? false,
    graphOptimizationLevel: o.graphOptimization ?? 'all',
    executionProviders: executionProviders(o.device ?? 'cpu'),
    logSeverityLevel: o.logSeverity ?? 3,
    // The typings list `extra` for the web build only; onnxruntime-node passes it through as session config entries.
    ...(o.shareWeights ?? true ? { extra: SHARED_WEIGHTS_CONFIG } : {}),
    // HEED_ORT_PROFILE=<folder>: onnxruntime's own per-node profile of every session, one JSON file per session
    // (chrome://tracing format), written when the session is released. For finding where a pass spends its time.
    ...(process.env.HEED_ORT_PROFILE ? { enableProfiling: true, profileFilePrefix: join(process.env.HEED_ORT_PROFILE, 'heed-ort') } : {}),
  };
}

/** Opens an unedited model file directly. */
export async function openSessionFromPath(path: string, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, ortOptions(options));
  } catch (e) {
    throw openError(path, options, e);
  }
}

/**
 * Opens an in-memory (possibly edited) model. With external weights it is staged next to hard links of the weight files
 * and opened by path (no copy of the weights in this process; see staging.ts); where that is impossible (weights on
 * another filesystem than every staging folder) the weights are handed to ORT as buffers.
 */
export async function openSession(model: OnnxModel, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = encodeModel(model);
  const files = externalFiles(model);
  if (files.size > 0 && options.staging !== false) {
    const staged = stageModel(bytes, files);
    if (staged) {
      try {
        return await ort.InferenceSession.create(staged.path, ortOptions(options));
      } catch {
        // Whatever ORT disliked about the staged folder, the buffer path below either works or reports the model's
        // own problem.
      } finally {
        staged.dispose();
      }
    }
  }
  const externalData = [...files].map(([path, abs]) => ({ path, data: readLargeFile(abs) }));
  try {
    return await ort.InferenceSession.create(bytes, { ...ortOptions(options), externalData });
  } catch (e) {
    throw openError(`${model.source}${externalData.length ? ' (edited copy)' : ''}`, options, e);
  }
}

/** A device that cannot run the model is the device's problem (named with its fix), not the model's. */
function openError(what: string, options: SessionOptions, e: unknown): Error {
  const device = options.device ?? 'cpu';
  const message = (e as Error).message;
  if (device !== 'cpu' && /backend not found|adapter|Failed to load (shared )?library|provider/i.test(message)) return deviceOpenError(device, e);
  return new SessionError(`onnxruntime could not load ${what}${device !== 'cpu' ? ` on ${device}` : ''}: ${message}`);
}

/**
 * Reads a whole weights file into one Buffer. fs.readFileSync stops at 2 GiB, and SD 1.5's UNet weights are 3.4 GB,
 * so read in chunks into a buffer of the file's size (Node's limit for one Buffer is 4 GiB).
 */
export function readLargeFile(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > bufferConstants.MAX_LENGTH) {
      throw new SessionError(`${path} is ${(size / 2 ** 30).toFixed(1)} GiB, more than one Node buffer holds ` +
        `(${(bufferConstants.MAX_LENGTH / 2 ** 30).toFixed(0)} GiB); re-save the model with its external data split into several files`);
    }
    const buf = Buffer.allocUnsafe(size);
    const chunk = 1 << 30;
    for (let offset = 0; offset < size;) {
      const n = readSync(fd, buf, offset, Math.min(chunk, size - offset), offset);
      if (n <= 0) throw new SessionError(`${path}: unexpected end of file at byte ${offset} of ${size}`);
      offset += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

export type Feeds = Record<string, ort.Tensor>;

/** Runs a session and checks that every input is fed with the dims the model declares (clear error instead of ORT's). */
export async function runSession(session: ort.InferenceSession, feeds: Feeds, outputs?: string[]): Promise<Record<string, ort.Tensor>> {
  for (const name of session.inputNames) {
    if (!(name in feeds)) {
      throw new SessionError(`missing input '${name}' (model inputs: ${session.inputNames.join(', ')})`);
    }
  }
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) continue;
    const t = feeds[meta.name];
    if (t.type !== meta.type) {
      throw new SessionError(`input '${meta.name}' must be ${meta.type}, got ${t.type}`);
    }
    if (meta.shape.length !== t.dims.length || meta.shape.some((d, i) => typeof d === 'number' && d >= 0 && d !== t.dims[i])) {
      throw new SessionError(`input '${meta.name}' has dims [${t.dims.join(', ')}] but the model expects [${meta.shape.join(', ')}]`);
    }
  }
  try {
    return outputs ? await session.run(feeds, outputs) : await session.run(feeds);
  } catch (e) {
    throw new SessionError(`inference failed: ${(e as Error).message}`);
  }
}

export { ort };
