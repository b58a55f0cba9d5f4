// Loading and saving ONNX models. External data (model.onnx_data, weights.pb) is never read while the graph is
// loaded or edited: initializers keep their file references, and only session creation or an explicit tensor read
// touches the weights.
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import { ModelProtoSchema, StringStringEntryProtoSchema, TensorProto_DataLocation, type ModelProto } from 'onnx-buf';
import { readFileSync, existsSync, statSync, writeFileSync, mkdirSync, copyFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { dirname, resolve, join, basename } from 'node:path';
import { isExternal, externalRef, tensorBytes } from './tensor.js';
import { HeedError, type HeedErrorKind } from '../errors.js';

/** An .onnx file that cannot be read or parsed: the model is at fault. */
export class OnnxLoadError extends HeedError {
  constructor(message: string, field: string | undefined = 'model', kind: HeedErrorKind = 'model_invalid') {
    super(kind, message, { field });
    this.name = 'OnnxLoadError';
  }
}

export interface OnnxModel {
  proto: ModelProto;
  /** Directory that relative external-data locations resolve against (the original model's folder). */
  baseDir: string | undefined;
  /** Where the model came from, for error messages. */
  source: string;
}

/** Decodes model bytes; `source` names the file in errors, `baseDir` is where its external data lives. */
export function decodeModel(bytes: Uint8Array, source = '<buffer>', baseDir?: string): OnnxModel {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new OnnxLoadError(`${source} is not a valid ONNX model (protobuf decode failed: ${(e as Error).message}). ` +
      'The file may be truncated or not an .onnx file: re-export or re-download it.');
  }
  if (!proto.graph || proto.graph.node.length === 0 && proto.graph.output.length === 0) {
    throw new OnnxLoadError(`${source} decodes but holds no graph (0 nodes, 0 outputs): the file is truncated or not an ONNX model.`);
  }
  return { proto, baseDir, source };
}

export function loadModel(path: string): OnnxModel {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new OnnxLoadError(`model file not found: ${abs}`);
  if (statSync(abs).isDirectory()) throw new OnnxLoadError(`${abs} is a directory; pass the .onnx file inside it`);
  const model = decodeModel(readFileSync(abs), abs, dirname(abs));
  checkExternalFiles(model);
  return model;
}

export function loadModelFromBuffer(bytes: Uint8Array, options: { baseDir?: string; source?: string } = {}): OnnxModel {
  const model = decodeModel(bytes, options.source ?? '<buffer>', options.baseDir ? resolve(options.baseDir) : undefined);
  checkExternalFiles(model);
  return model;
}

/** External data files referenced by the model, relative locations → absolute paths. */
export function externalFiles(model: OnnxModel): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of model.proto.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const { location } = externalRef(t);
    if (!out.has(location)) out.set(location, model.baseDir ? join(model.baseDir, location) : location);
  }
  return out;
}

function checkExternalFiles(model: OnnxModel): void {
  const files = externalFiles(model);
  if (files.size === 0) return;
  if (!model.baseDir) {
    throw new OnnxLoadError(`${model.source} uses external data (${[...files.keys()].join(', ')}) but was loaded from a buffer ` +
      'without baseDir: pass { baseDir: <folder holding the weights file> }.');
  }
  for (const [loc, path] of files) {
    if (!existsSync(path)) {
      throw new OnnxLoadError(`${model.source} needs its external data file '${loc}', which is missing at ${path}. ` +
        'Copy the whole exported folder (model.onnx together with its weights file).');
    }
  }
}

export function encodeModel(model: OnnxModel): Uint8Array {
  return toBinary(ModelProtoSchema, model.proto);
}

export function cloneModel(model: OnnxModel): OnnxModel {
  return { proto: fromBinary(ModelProtoSchema, encodeModel(model)), baseDir: model.baseDir, source: model.source };
}

export interface SaveOptions {
  /**
   * Where external data goes when the target folder differs from the original one:
   * 'reference' (default) only allowed when saving into the original folder; 'copy' copies the weight files;
   * 'inline' embeds the weights in the .onnx (only for models under 2 GB).
   */
  externalData?: 'reference' | 'copy' | 'inline';
}

/**
 * Saves a model. Saved into its original folder, external references stay as they are (no weights are read or
 * written), so an edited graph costs only its own bytes.
 */
export function saveModel(model: OnnxModel, path: string, options: SaveOptions = {}): OnnxModel {
  const abs = resolve(path);
  const dir = dirname(abs);
  mkdirSync(dir, { recursive: true });
  const files = externalFiles(model);
  const mode = options.externalData ?? 'reference';
  let proto = model.proto;
  if (files.size > 0 && resolve(model.baseDir ?? '') !== dir) {
    if (mode === 'reference') {
      throw new OnnxLoadError(`cannot save ${basename(abs)} into ${dir}: the model's weights live in ${model.baseDir} as external data. ` +
        "Save it into that folder, or pass { externalData: 'copy' } or { externalData: 'inline' }.");
    }
    if (mode === 'copy') {
      for (const [loc, src] of files) {
        const dst = join(dir, loc);
        mkdirSync(dirname(dst), { recursive: true });
        if (resolve(src) !== resolve(dst)) copyFileSync(src, dst);
      }
    } else {
      proto = inlineExternalData(model).proto;
    }
  }
  writeFileSync(abs, toBinary(ModelProtoSchema, proto));
  return { proto, baseDir: dir, source: abs };
}

/** A copy of the model with every external initializer embedded as raw data. */
export function inlineExternalData(model: OnnxModel): OnnxModel {
  const copy = cloneModel(model);
  for (const t of copy.proto.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    t.rawData = new Uint8Array(tensorBytes(t, model.baseDir));
    t.externalData = [];
    t.dataLocation = TensorProto_DataLocation.DEFAULT;
  }
  return copy;
}

/**
 * Moves initializers of at least `minBytes` into one external file `location` in `dir` and saves the model as
 * `dir/fileName` (the layout diffusers' exporter writes for the UNet). Streams tensor by tensor.
 */
export function saveWithExternalData(model: OnnxModel, dir: string, fileName: string, location: string, minBytes = 1024): OnnxModel {
  mkdirSync(dir, { recursive: true });
  const copy = cloneModel(model);
  const fd = openSync(join(dir, location), 'w');
  let offset = 0;
  try {
    for (const t of copy.proto.graph?.initializer ?? []) {
      const bytes = tensorBytes(t, model.baseDir);
      if (bytes.byteLength < minBytes) {
        if (isExternal(t)) {
          t.rawData = new Uint8Array(bytes);
          t.externalData = [];
          t.dataLocation = TensorProto_DataLocation.DEFAULT;
        }
        continue;
      }
      writeSync(fd, bytes, 0, bytes.byteLength, offset);
      t.rawData = new Uint8Array(0);
      t.dataLocation = TensorProto_DataLocation.EXTERNAL;
      t.externalData = [
        create(StringStringEntryProtoSchema, { key: 'location', value: location }),
        create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
        create(StringStringEntryProtoSchema, { key: 'length', value: String(bytes.byteLength) }),
      ];
      offset += bytes.byteLength;
    }
  } finally {
    closeSync(fd);
  }
  const out = join(dir, fileName);
  writeFileSync(out, toBinary(ModelProtoSchema, copy.proto));
  return { proto: copy.proto, baseDir: dir, source: out };
}

export function opsetVersion(model: OnnxModel, domain = ''): number {
  const entry = model.proto.opsetImport.find((o) => (o.domain === '' || o.domain === 'ai.onnx') === (domain === '' || domain === 'ai.onnx') && (domain === '' || o.domain === domain));
  return entry ? Number(entry.version) : 0;
}
