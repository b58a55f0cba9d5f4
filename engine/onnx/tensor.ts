// Conversions between ONNX TensorProto and typed arrays, and the element-type table shared by the toolkit.
import { create } from '@bufbuild/protobuf';
import { TensorProtoSchema, TensorProto_DataLocation, type TensorProto } from 'onnx-buf';
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';

/** ONNX element types (TensorProto.DataType) that Heed handles. */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;
export type DataTypeCode = number;

export type OrtTypeName = 'float32' | 'float64' | 'float16' | 'int32' | 'int64' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'bool' | 'uint32' | 'uint64' | 'string';

const ORT_NAMES: Record<number, OrtTypeName> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64',
};
const BYTE_SIZE: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

export function dataTypeName(code: DataTypeCode): string {
  return ORT_NAMES[code] ?? `onnx type ${code}`;
}
export function ortTypeName(code: DataTypeCode): OrtTypeName {
  const n = ORT_NAMES[code];
  if (!n) throw new Error(`ONNX element type ${code} is not supported by onnxruntime-node tensors`);
  return n;
}
export function dataTypeFromOrt(name: string): DataTypeCode {
  for (const [code, n] of Object.entries(ORT_NAMES)) if (n === name) return Number(code);
  throw new Error(`unknown element type '${name}'`);
}
export function byteSizeOf(code: DataTypeCode): number {
  const b = BYTE_SIZE[code];
  if (b === undefined) throw new Error(`no fixed byte size for ONNX element type ${dataTypeName(code)}`);
  return b;
}
export function isFloatType(code: DataTypeCode): boolean {
  return code === DataType.FLOAT || code === DataType.FLOAT16 || code === DataType.DOUBLE || code === DataType.BFLOAT16;
}

/** A host-side tensor: element type, dims, data. int64 tensors use BigInt64Array. */
export interface HostTensor {
  dataType: DataTypeCode;
  dims: number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | BigUint64Array;
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === TensorProto_DataLocation.EXTERNAL;
}

export interface ExternalRef {
  location: string;
  offset: number;
  length: number | undefined;
}

export function externalRef(t: TensorProto): ExternalRef {
  const kv = new Map(t.externalData.map((e) => [e.key, e.value]));
  const location = kv.get('location');
  if (!location) throw new Error(`initializer '${t.name}' is marked external but has no 'location'`);
  const length = kv.get('length');
  return { location, offset: Number(kv.get('offset') ?? 0), length: length === undefined ? undefined : Number(length) };
}

/** Raw little-endian bytes of a tensor, reading external data from `baseDir` when needed (without loading whole files). */
export function tensorBytes(t: TensorProto, baseDir: string | undefined): Uint8Array {
  if (isExternal(t)) {
    if (!baseDir) throw new Error(`initializer '${t.name}' uses external data but the model has no base directory`);
    const ref = externalRef(t);
    const path = join(baseDir, ref.location);
    const length = ref.length ?? numel(t.dims.map(Number)) * byteSizeOf(t.dataType);
    const out = new Uint8Array(length);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new Error(`external data file '${path}' for initializer '${t.name}' cannot be opened: ${(e as Error).message}. ` +
        'Keep the weights file beside model.onnx (as exported).');
    }
    try {
      const got = readSync(fd, out, 0, length, ref.offset);
      if (got !== length) throw new Error(`external data file '${path}' is truncated: initializer '${t.name}' needs bytes ${ref.offset}..${ref.offset + length}`);
    } finally {
      closeSync(fd);
    }
    return out;
  }
  if (t.rawData.length > 0) return t.rawData;
  const count = numel(t.dims.map(Number));
  const size = byteSizeOf(t.dataType);
  const out = new Uint8Array(count * size);
  const view = new DataView(out.buffer);
  switch (t.dataType) {
    case DataType.FLOAT: t.floatData.forEach((v, i) => view.setFloat32(i * 4, v, true)); break;
    case DataType.DOUBLE: t.doubleData.forEach((v, i) => view.setFloat64(i * 8, v, true)); break;
    case DataType.INT64: t.int64Data.forEach((v, i) => view.setBigInt64(i * 8, v, true)); break;
    case DataType.UINT64: t.uint64Data.forEach((v, i) => view.setBigUint64(i * 8, v, true)); break;
    case DataType.INT32: t.int32Data.forEach((v, i) => view.setInt32(i * 4, v, true)); break;
    case DataType.INT16: case DataType.UINT16: case DataType.FLOAT16: case DataType.BFLOAT16:
      t.int32Data.forEach((v, i) => view.setUint16(i * 2, v, true)); break;
    case DataType.INT8: case DataType.UINT8: case DataType.BOOL:
      t.int32Data.forEach((v, i) => view.setUint8(i, v)); break;
    default: throw new Error(`initializer '${t.name}': element type ${dataTypeName(t.dataType)} is not supported`);
  }
  return out;
}

export function typedArrayFromBytes(dataType: DataTypeCode, bytes: Uint8Array): HostTensor['data'] {
  // Copy first: rawData views can sit at unaligned offsets inside the decoded protobuf buffer.
  const buf = Uint8Array.prototype.slice.call(bytes).buffer as ArrayBuffer;
  switch (dataType) {
    case DataType.FLOAT: return new Float32Array(buf);
    case DataType.DOUBLE: return new Float64Array(buf);
    case DataType.INT32: return new Int32Array(buf);
    case DataType.INT64: return new BigInt64Array(buf);
    case DataType.UINT64: return new BigUint64Array(buf);
    case DataType.UINT32: return new Uint32Array(buf);
    case DataType.INT16: return new Int16Array(buf);
    case DataType.UINT16: case DataType.FLOAT16: case DataType.BFLOAT16: return new Uint16Array(buf);
    case DataType.INT8: return new Int8Array(buf);
    case DataType.UINT8: case DataType.BOOL: return new Uint8Array(buf);
    default: throw new Error(`element type ${dataTypeName(dataType)} is not supported`);
  }
}

export function tensorFromProto(t: TensorProto, baseDir?: string): HostTensor {
  return { dataType: t.dataType, dims: t.dims.map(Number), data: typedArrayFromBytes(t.dataType, tensorBytes(t, baseDir)) };
}

export function tensorToProto(name: string, t: HostTensor): TensorProto {
  const d = t.data;
  const raw = new Uint8Array(d.byteLength);
  raw.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  return create(TensorProtoSchema, {
    name,
    dataType: t.dataType,
    dims: t.dims.map((x) => BigInt(x)),
    rawData: raw,
  });
}

// Scratch views for the bit-level float32 <-> float16 conversion.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE binary16 bits of a number, rounded to nearest with ties to even (as numpy's astype(float16) and torch's
 * .half() do), with overflow to ±Infinity, gradual underflow to subnormals and NaN kept quiet.
 */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  // Unbiased exponent; half's normal range is 2^-14 .. 2^15.
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped ones to nearest even.
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // a carry into the exponent is correct rounding
    return sign | h;
  }
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  // Subnormal half: value = m * 2^-24 with m < 1024. Shift the full 24-bit significand accordingly.
  const full = mant | 0x800000;
  const shift = -e - 14 + 13; // 14..24 for e in -15..-25
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1) === 1)) h += 1;
  return sign | h;
}

/** Number value of IEEE binary16 bits (exact). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const bf16View = new DataView(new ArrayBuffer(4));
function bfloat16ToFloat(h: number): number {
  bf16View.setUint32(0, h << 16);
  return bf16View.getFloat32(0);
}

/**
 * Number values of an integer or float tensor (int64 converted with Number). 16-bit floats are stored as their bits
 * (Uint16Array) and are decoded here, so that an fp16 export's constants fold to their values, not their bit patterns.
 */
export function toNumbers(t: HostTensor): number[] {
  const out: number[] = new Array(t.data.length);
  const decode = t.dataType === DataType.FLOAT16 ? halfToFloat : t.dataType === DataType.BFLOAT16 ? bfloat16ToFloat : null;
  for (let i = 0; i < t.data.length; i++) out[i] = decode ? decode(Number(t.data[i])) : Number(t.data[i]);
  return out;
}

export function hostTensor(dataType: DataTypeCode, dims: number[], values: ArrayLike<number>): HostTensor {
  const n = numel(dims);
  if (values.length !== n) throw new Error(`hostTensor: dims [${dims}] need ${n} values, got ${values.length}`);
  switch (dataType) {
    case DataType.FLOAT: return { dataType, dims, data: Float32Array.from(values) };
    case DataType.DOUBLE: return { dataType, dims, data: Float64Array.from(values) };
    case DataType.INT32: return { dataType, dims, data: Int32Array.from(values) };
    case DataType.INT64: return { dataType, dims, data: BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v)))) };
    case DataType.UINT8: case DataType.BOOL: return { dataType, dims, data: Uint8Array.from(values) };
    case DataType.INT8: return { dataType, dims, data: Int8Array.from(values) };
    case DataType.FLOAT16: return { dataType, dims, data: Uint16Array.from(values, floatToHalf) };
    default: throw new Error(`hostTensor: element type ${dataTypeName(dataType)} not supported`);
  }
}
