// Data-movement rules: reshapes, permutations, concatenation/splitting, slicing, broadcasting, gathering and
// nearest/linear resizing. Shapes are static here, so every inverse is a Reshape/Slice/Pad with host constants.
import type { NodeProto } from 'onnx-buf';
import { attrInt, attrInts, attrString } from '../../graph.js';
import { sliceSpec } from '../../shapes.js';
import { DataType, hostTensor, numel, toNumbers } from '../../tensor.js';
import { UnsupportedOpError } from '../errors.js';
import type { Emitter } from '../emitter.js';
import { withGradient, type Rule } from '../rule.js';

/** Reshape-like ops (Reshape, Flatten, Squeeze, Unsqueeze): the gradient is g reshaped to the input's dims. */
export const ReshapeLike: Rule = withGradient((ctx, g) => [ctx.e.reshape(g, ctx.e.dims(ctx.node.input[0]))]);

export const Transpose: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const r = e.dims(node.input[0]).length;
  const perm = attrInts(node, 'perm') ?? [...Array(r).keys()].reverse();
  const inv = new Array(r);
  perm.forEach((p, i) => (inv[p] = i));
  return [e.transpose(g, inv)];
});

export const Expand: Rule = withGradient((ctx, g) => [ctx.e.reduceToShape(g, ctx.e.dims(ctx.node.input[0]))]);

export const Concat: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const r = e.dims(g).length;
  let axis = attrInt(node, 'axis', 0);
  if (axis < 0) axis += r;
  let offset = 0;
  return node.input.map((x, i) => {
    const size = e.dims(x)[axis];
    const start = offset;
    offset += size;
    if (!ctx.needsGrad(i)) return undefined;
    return e.slice(g, [start], [start + size], [axis]);
  });
});

export const Split: Rule = (ctx) => {
  const { e, node } = ctx;
  const x = node.input[0];
  const xd = e.dims(x);
  let axis = attrInt(node, 'axis', 0);
  if (axis < 0) axis += xd.length;
  const parts = node.output.map((o, i) => ctx.gradOut(i) ?? (o ? e.zeros(e.dims(o), e.type(x)) : undefined));
  if (parts.some((p) => p === undefined)) throw new UnsupportedOpError('Split', node.name, 'an output name is empty');
  if (node.output.every((_, i) => ctx.gradOut(i) === undefined)) return [];
  return [e.concat(parts as string[], axis)];
};

function constInput(e: Emitter, node: NodeProto, i: number, what: string): number[] | undefined {
  const name = node.input[i];
  if (!name) return undefined;
  const v = e.info(name).value;
  if (!v) throw new UnsupportedOpError(node.opType, node.name, `${what} (input ${i}) is not a constant once shapes are fixed`);
  return toNumbers(v);
}

export const Slice: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const x = node.input[0];
  const xd = e.dims(x);
  const starts = attrInts(node, 'starts') ?? (constInput(e, node, 1, 'starts') as number[]);
  const ends = attrInts(node, 'ends') ?? (constInput(e, node, 2, 'ends') as number[]);
  const axes = attrInts(node, 'axes') ?? constInput(e, node, 3, 'axes') ?? starts.map((_, i) => i);
  const steps = constInput(e, node, 4, 'steps') ?? starts.map(() => 1);
  const spec = sliceSpec(xd, starts, ends, axes, steps);
  if (spec.some((s) => s.count === 0)) return [e.zeros(xd, e.type(x))];
  let cur = g;
  const before = new Array(xd.length).fill(0);
  const after = new Array(xd.length).fill(0);
  spec.forEach((s, k) => {
    let { start, step } = s;
    const { count } = s;
    if (step < 0) {
      // Reverse the gradient along k; it then lines up with a positive-step slice starting at the lowest index.
      const d = e.dims(cur);
      cur = e.op('Slice', [cur, e.ints([-1]), e.ints([-(d[k] + 1)]), e.ints([k]), e.ints([-1])], d, e.type(cur));
      step = -step;
      start = start - (count - 1) * step;
    }
    if (step > 1) {
      // Interleave zeros: [.., c, ..] → [.., c, 1, ..] → pad to [.., c, step, ..] → [.., c·step, ..] → first (c−1)·step+1.
      const d = e.dims(cur);
      const withUnit = [...d.slice(0, k + 1), 1, ...d.slice(k + 1)];
      const padAfter = withUnit.map((_, i) => (i === k + 1 ? step - 1 : 0));
      const padded = e.pad(e.reshape(cur, withUnit), withUnit.map(() => 0), padAfter);
      const merged = e.reshape(padded, [...d.slice(0, k), count * step, ...d.slice(k + 1)]);
      cur = e.slice(merged, [0], [(count - 1) * step + 1], [k]);
    }
    before[k] = start;
    after[k] = xd[k] - start - ((count - 1) * step + 1);
  });
  return [e.pad(cur, before, after)];
});

export const Gather: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  if (!ctx.needsGrad(0)) return [];
  const [data, indices] = node.input;
  const dd = e.dims(data);
  let axis = attrInt(node, 'axis', 0);
  if (axis < 0) axis += dd.length;
  const N = dd[axis];
  const P = numel(dd.slice(0, axis));
  const Q = numel(dd.slice(axis + 1));
  const K = numel(e.dims(indices));
  const t = e.type(g);
  const g3 = e.reshape(g, [P, K, Q]);
  const iv = e.info(indices).value;
  if (iv) {
    const idx = toNumbers(iv).map((i) => (i < 0 ? i + N : i));
    // A constant contiguous run (position embeddings, the CLS token) is a zero padding of g.
    if (idx.every((v, k) => v === idx[0] + k)) {
      return [e.reshape(e.pad(g3, [0, idx[0], 0], [0, N - idx[0] - K, 0]), dd)];
    }
    if (N * K <= 1 << 22) {
      const oneHotT = new Array(N * K).fill(0);
      idx.forEach((v, k) => (oneHotT[v * K + k] = 1));
      const m = e.constant(hostTensor(t, [N, K], oneHotT), 'gather_onehot');
      return [e.reshape(e.matmul(m, g3), dd)];
    }
  }
  // Runtime indices (token ids): a one-hot [N, K] from Equal(range, ids), then one MatMul accumulates repeated
  // indices correctly (ScatterND without reduction would overwrite them).
  let ids = e.cast(e.reshape(indices, [1, K]), DataType.INT64);
  const n = e.scalar(N, DataType.INT64);
  const neg = e.op('Less', [ids, e.scalar(0, DataType.INT64)], [1, K], DataType.BOOL);
  ids = e.where(neg, e.add(ids, n), ids);
  const range = e.constant(hostTensor(DataType.INT64, [N, 1], Array.from({ length: N }, (_, i) => i)), 'gather_range');
  const eq = e.op('Equal', [range, ids], [N, K], DataType.BOOL);
  const oneHotT = e.cast(eq, t);
  return [e.reshape(e.matmul(oneHotT, g3), dd)];
});

/** Source coordinate weights per output index along one axis, as ONNX Resize defines them. */
function axisWeights(node: NodeProto, inSize: number, outSize: number, scale: number): { idx: number[]; w: number[] }[] {
  const mode = attrString(node, 'mode', 'nearest');
  const ctm = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearestMode = attrString(node, 'nearest_mode', 'round_prefer_floor');
  const out: { idx: number[]; w: number[] }[] = [];
  for (let o = 0; o < outSize; o++) {
    let x: number;
    switch (ctm) {
      case 'half_pixel': x = (o + 0.5) / scale - 0.5; break;
      case 'pytorch_half_pixel': x = outSize > 1 ? (o + 0.5) / scale - 0.5 : 0; break;
      case 'align_corners': x = outSize === 1 ? 0 : (o * (inSize - 1)) / (outSize - 1); break;
      case 'asymmetric': x = o / scale; break;
      case 'tf_half_pixel_for_nn': x = (o + 0.5) / scale; break;
      default: throw new UnsupportedOpError('Resize', node.name, `coordinate_transformation_mode '${ctm}'`);
    }
    if (mode === 'nearest') {
      let i: number;
      switch (nearestMode) {
        case 'round_prefer_floor': i = x === Math.floor(x) + 0.5 ? Math.floor(x) : Math.round(x); break;
        case 'round_prefer_ceil': i = Math.round(x); break;
        case 'floor': i = Math.floor(x); break;
        case 'ceil': i = Math.ceil(x); break;
        default: throw new UnsupportedOpError('Resize', node.name, `nearest_mode '${nearestMode}'`);
      }
      out.push({ idx: [Math.min(Math.max(i, 0), inSize - 1)], w: [1] });
    } else if (mode === 'linear') {
      const xc = Math.min(Math.max(x, 0), inSize - 1);
      const i0 = Math.floor(xc);
      const i1 = Math.min(i0 + 1, inSize - 1);
      const f = xc - i0;
      out.push({ idx: [i0, i1], w: [1 - f, f] });
    } else {
      throw new UnsupportedOpError('Resize', node.name, `mode '${mode}' (nearest and linear are supported)`);
    }
  }
  return out;
}

export const Resize: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const x = node.input[0];
  const xd = e.dims(x);
  const yd = e.dims(node.output[0]);
  const legacy = e.opset < 11;
  const scalesIn = legacy ? constInput(e, node, 1, 'scales') : node.input[2] ? constInput(e, node, 2, 'scales') : undefined;
  const sizesGiven = !legacy && !!node.input[3];
  if (attrString(node, 'coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize') {
    throw new UnsupportedOpError('Resize', node.name, 'coordinate_transformation_mode tf_crop_and_resize');
  }
  const maps = xd.map((d, i) => {
    if (d === yd[i]) return undefined;
    const scale = sizesGiven || !scalesIn || scalesIn.length === 0 ? yd[i] / d : scalesIn[i];
    return axisWeights(node, d, yd[i], scale);
  });
  // Fast path (SD's nearest ×2 upsampling): every resized axis maps output o to input ⌊o/f⌋, so the gradient is a
  // block sum: reshape [.., in, f, ..] and ReduceSum over the f axes.
  const blocks = maps.map((m, i) => {
    if (!m) return 1;
    const f = yd[i] / xd[i];
    if (!Number.isInteger(f)) return 0;
    return m.every((c, o) => c.w.length === 1 && c.idx[0] === Math.floor(o / f)) ? f : 0;
  });
  if (blocks.every((f) => f > 0)) {
    const split: number[] = [];
    const sumAxes: number[] = [];
    xd.forEach((d, i) => {
      split.push(d);
      if (blocks[i] > 1) {
        split.push(blocks[i]);
        sumAxes.push(split.length - 1);
      }
    });
    return [e.reduceSum(e.reshape(g, split), sumAxes, false)];
  }
  // General path: per resized axis, contract with the [out, in] interpolation matrix.
  let cur = g;
  const r = xd.length;
  maps.forEach((m, k) => {
    if (!m) return;
    const outSize = yd[k];
    const inSize = xd[k];
    const mat = new Array(outSize * inSize).fill(0);
    m.forEach((c, o) => c.idx.forEach((i, j) => (mat[o * inSize + i] += c.w[j])));
    const W = e.constant(hostTensor(e.type(g), [outSize, inSize], mat), 'resize_matrix');
    const perm = [...Array(r).keys()].filter((a) => a !== k).concat([k]);
    const inv = new Array(r);
    perm.forEach((p, i) => (inv[p] = i));
    cur = e.transpose(e.matmul(e.transpose(cur, perm), W), inv);
  });
  return [cur];
});
