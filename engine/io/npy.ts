// Reading and writing NumPy .npy files (format versions 1.0–3.0, little-endian, C order).
// Writing is a header plus the raw buffer; reading supports the dtypes Heed exchanges with numpy users.
import { readFileSync, writeFileSync } from 'node:fs';
import { HeedError, type HeedErrorKind } from '../errors.js';

export type NpyDType = 'float32' | 'float64' | 'float16' | 'int32' | 'int64' | 'uint8' | 'int8' | 'bool';

export type NpyData = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

export interface NpyArray {
  dtype: NpyDType;
  shape: number[];
  data: NpyData;
}

const DESCR_TO_DTYPE: Record<string, NpyDType> = {
  '<f4': 'float32', '<f8': 'float64', '<f2': 'float16', '<i4': 'int32', '<i8': 'int64',
  '|u1': 'uint8', '<u1': 'uint8', '|i1': 'int8', '<i1': 'int8', '|b1': 'bool',
};
const DTYPE_TO_DESCR: Record<NpyDType, string> = {
  float32: '<f4', float64: '<f8', float16: '<f2', int32: '<i4', int64: '<i8', uint8: '|u1', int8: '|i1', bool: '|b1',
};
const BYTES: Record<NpyDType, number> = { float32: 4, float64: 8, float16: 2, int32: 4, int64: 8, uint8: 1, int8: 1, bool: 1 };

/** A .npy file Heed cannot read; callers that know which input it was rethrow with that field. */
export class NpyError extends HeedError {
  constructor(message: string, field?: string, kind: HeedErrorKind = 'invalid_input') {
    super(kind, message, { field });
    this.name = 'NpyError';
  }
}

function dtypeOf(data: NpyData): NpyDType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

export function parseNpy(bytes: Uint8Array, source = '<buffer>'): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) {
    throw new NpyError(`${source}: not a .npy file (missing the \\x93NUMPY magic)`);
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new NpyError(`${source}: malformed .npy header: ${header.trim()}`);
  }
  if (fortran === 'True') throw new NpyError(`${source}: Fortran-order arrays are not supported; save with np.ascontiguousarray`);
  const dtype = DESCR_TO_DTYPE[descr];
  if (!dtype) throw new NpyError(`${source}: unsupported dtype '${descr}' (supported: ${Object.keys(DESCR_TO_DTYPE).join(', ')})`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = headerStart + headerLen;
  const byteLength = count * BYTES[dtype];
  if (bytes.length < offset + byteLength) {
    throw new NpyError(`${source}: truncated: header says ${count} elements of ${dtype} but the file is ${bytes.length} bytes`);
  }
  // Copy so that the typed array is aligned regardless of the header length (Buffer#slice would only make a view).
  // (Uint8Array.prototype.slice copies; Buffer#slice would return a view into a shared pool.)
  const raw = Uint8Array.prototype.slice.call(bytes, offset, offset + byteLength).buffer;
  let data: NpyData;
  switch (dtype) {
    case 'float32': data = new Float32Array(raw); break;
    case 'float64': data = new Float64Array(raw); break;
    case 'float16': data = new Uint16Array(raw); break;
    case 'int32': data = new Int32Array(raw); break;
    case 'int64': data = new BigInt64Array(raw); break;
    case 'int8': data = new Int8Array(raw); break;
    default: data = new Uint8Array(raw); break;
  }
  return { dtype, shape, data };
}

export function readNpy(path: string): NpyArray {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new NpyError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseNpy(bytes, path);
}

/** Reads a .npy file as float32, converting from float64/float16/ints when needed. */
export function readNpyFloat32(path: string): { shape: number[]; data: Float32Array } {
  const a = readNpy(path);
  return { shape: a.shape, data: toFloat32(a) };
}

export function toFloat32(a: NpyArray): Float32Array {
  if (a.data instanceof Float32Array) return a.data;
  if (a.dtype === 'float16') return Float32Array.from(a.data as Uint16Array, halfToFloat);
  if (a.data instanceof BigInt64Array) return Float32Array.from(a.data, (v) => Number(v));
  return Float32Array.from(a.data as ArrayLike<number>);
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export function encodeNpy(data: NpyData, shape: readonly number[], dtype: NpyDType = dtypeOf(data)): Buffer {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new NpyError(`shape [${shape.join(', ')}] holds ${count} elements but the data has ${data.length}`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${DTYPE_TO_DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that the data starts on a 64-byte boundary, as numpy does.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

export function writeNpy(path: string, data: NpyData, shape: readonly number[], dtype?: NpyDType): void {
  writeFileSync(path, encodeNpy(data, shape, dtype));
}
