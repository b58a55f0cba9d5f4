// Reads the little-endian float32/float64 `.npy` files the engine writes for maps, so the map panel can colour raw
// values itself (click-to-overlay, opacity) instead of only showing pre-rendered PNGs. Pure; no Node or 'vscode'.

export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

/** Parses a version 1/2/3 `.npy` of dtype <f4 or <f8 (C order) into float32. Throws with the reason otherwise. */
export function parseNpyFloat(bytes: Uint8Array): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error('not a .npy file (magic bytes missing)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new Error(`.npy header is malformed: ${header.trim()}`);
  if (fortran) throw new Error('.npy in Fortran order is not supported');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const out = new Float32Array(count);
  if (descr === '<f4') {
    if (offset + 4 * count > bytes.length) throw new Error('.npy data is shorter than its shape says');
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, true);
  } else if (descr === '<f8') {
    if (offset + 8 * count > bytes.length) throw new Error('.npy data is shorter than its shape says');
    for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, true);
  } else {
    throw new Error(`.npy dtype ${descr} is not supported here (float32 or float64 little-endian only)`);
  }
  return { shape, data: out };
}

/**
 * A float32 little-endian `.npy` (format 1.0) of a C-order array: what the map panel's "Save .npy" writes for the map
 * on screen. The header is padded so the data starts at a multiple of 64 bytes, as numpy writes it.
 */
export function encodeNpyFloat32(shape: readonly number[], data: ArrayLike<number>): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`shape [${shape.join(', ')}] holds ${count} values, got ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + 4 * count);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const offset = 10 + header.length;
  for (let i = 0; i < count; i++) view.setFloat32(offset + 4 * i, data[i]!, true);
  return out;
}
