// Host computations of folded values (small constant tensors of shape plumbing) and the slice/broadcast index
// arithmetic the rules and the VJP builder share.
import { DataType, numel, type DataTypeCode } from '../tensor.js';
import { ShapeInferenceError, normAxis } from './rule.js';

export function castValues(v: number[], to: DataTypeCode): number[] {
  if (to === DataType.FLOAT || to === DataType.DOUBLE || to === DataType.FLOAT16) return v;
  if (to === DataType.BOOL) return v.map((x) => (x ? 1 : 0));
  return v.map((x) => Math.trunc(x));
}

export function strides(dims: readonly number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

export function transposeValues(v: number[], dims: number[], perm: number[]): number[] {
  const outDims = perm.map((p) => dims[p]);
  const inStr = strides(dims);
  const out = new Array(v.length);
  const idx = new Array(dims.length).fill(0);
  for (let o = 0; o < v.length; o++) {
    let src = 0;
    for (let k = 0; k < perm.length; k++) src += idx[k] * inStr[perm[k]];
    out[o] = v[src];
    for (let k = outDims.length - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function concatValues(parts: readonly { dims: readonly number[]; values: number[] }[], axis: number): number[] {
  const outer = numel(parts[0].dims.slice(0, axis));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const inner = numel(p.dims.slice(axis));
      for (let i = 0; i < inner; i++) out.push(p.values[o * inner + i]);
    }
  }
  return out;
}

export function gatherValues(v: number[], dims: number[], idx: number[], axis: number): number[] {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const n = dims[axis];
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const raw of idx) {
      const i = raw < 0 ? raw + n : raw;
      if (i < 0 || i >= n) throw new ShapeInferenceError(`Gather index ${raw} out of range for axis of size ${n}`);
      for (let k = 0; k < inner; k++) out.push(v[(o * n + i) * inner + k]);
    }
  }
  return out;
}

export interface SliceAxisSpec { start: number; step: number; count: number }

export function sliceSpec(dims: readonly number[], starts: number[], ends: number[], axes: number[], steps: number[]): SliceAxisSpec[] {
  const spec = dims.map((d) => ({ start: 0, step: 1, count: d }));
  axes.forEach((axRaw, k) => {
    const ax = normAxis(axRaw, dims.length);
    const d = dims[ax];
    const step = steps[k] ?? 1;
    let s = starts[k];
    let e = ends[k];
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    const count = Math.max(0, Math.ceil((e - s) / step));
    spec[ax] = { start: s, step, count };
  });
  return spec;
}

export function sliceValues(v: number[], dims: number[], spec: SliceAxisSpec[]): number[] {
  const str = strides(dims);
  const outDims = spec.map((s) => s.count);
  const total = numel(outDims);
  const out: number[] = new Array(total);
  const idx = new Array(dims.length).fill(0);
  for (let o = 0; o < total; o++) {
    let src = 0;
    for (let k = 0; k < dims.length; k++) src += (spec[k].start + idx[k] * spec[k].step) * str[k];
    out[o] = v[src];
    for (let k = outDims.length - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function broadcastTo(v: number[], dims: readonly number[], outDims: readonly number[]): number[] {
  const r = outDims.length;
  const padded = [...new Array(r - dims.length).fill(1), ...dims];
  const inStr = strides(padded);
  const total = numel(outDims);
  const out: number[] = new Array(total);
  const idx = new Array(r).fill(0);
  for (let o = 0; o < total; o++) {
    let src = 0;
    for (let k = 0; k < r; k++) if (padded[k] !== 1) src += idx[k] * inStr[k];
    out[o] = v[src];
    for (let k = r - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

export function argmaxValues(v: number[], dims: number[], axis: number, last: boolean): number[] {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const n = dims[axis];
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < inner; k++) {
      let best = 0;
      for (let i = 1; i < n; i++) {
        const a = v[(o * n + i) * inner + k];
        const b = v[(o * n + best) * inner + k];
        if (a > b || (last && a === b)) best = i;
      }
      out.push(best);
    }
  }
  return out;
}

