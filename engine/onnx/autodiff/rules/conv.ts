// Conv (any spatial rank). dx is the transposed convolution of g with the same weights (ConvTranspose, output
// padding chosen so the result has x's exact size; for stride 1 and small kernels the equivalent Conv with the flipped
// kernel, which onnxruntime runs faster); dW (group = 1) is a convolution of x with g where batch and
// channel swap roles and stride/dilation swap; db sums g over batch and space.
import type { NodeProto } from 'onnx-buf';
import { attrInt, attrInts, attrString } from '../../graph.js';
import { byteSizeOf } from '../../tensor.js';
import { UnsupportedOpError } from '../errors.js';
import type { Emitter } from '../emitter.js';
import { withGradient, type Rule } from '../rule.js';

interface ConvGeometry {
  spatial: number;
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** begin pads then end pads, explicit even for auto_pad. */
  pads: number[];
  group: number;
}

export function convGeometry(e: Emitter, node: NodeProto): ConvGeometry {
  const xd = e.dims(node.input[0]);
  const wd = e.dims(node.input[1]);
  const spatial = xd.length - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? wd.slice(2);
  const strides = attrInts(node, 'strides') ?? new Array(spatial).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array(spatial).fill(1);
  const group = attrInt(node, 'group', 1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pads = attrInts(node, 'pads') ?? new Array(2 * spatial).fill(0);
  if (autoPad === 'VALID') pads = new Array(2 * spatial).fill(0);
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const yd = e.dims(node.output[0]);
    pads = new Array(2 * spatial).fill(0);
    for (let i = 0; i < spatial; i++) {
      const total = Math.max(0, (yd[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - xd[2 + i]);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + spatial] = total - pads[i];
    }
  }
  return { spatial, kernel, strides, dilations, pads, group };
}

/** Largest weight whose input gradient is computed as a Conv with a flipped copy of the weight (else ConvTranspose):
 *  the copy costs its size once per backward session. 16 MiB keeps SD 1.5's 320/640-channel 3×3 kernels. */
export const CONV_GRAD_AS_CONV_MAX_BYTES = 16 * 1024 * 1024;

export const Conv: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [x, w, b] = node.input;
  const geo = convGeometry(e, node);
  const xd = e.dims(x);
  const wd = e.dims(w);
  const yd = e.dims(g);
  const S = geo.spatial;
  let gx: string | undefined;
  let gw: string | undefined;
  let gb: string | undefined;
  if (ctx.needsGrad(0)) {
    const outputPadding: number[] = [];
    for (let i = 0; i < S; i++) {
      const natural = geo.strides[i] * (yd[2 + i] - 1) + (geo.kernel[i] - 1) * geo.dilations[i] + 1 - geo.pads[i] - geo.pads[i + S];
      outputPadding.push(xd[2 + i] - natural);
    }
    if (outputPadding.some((p, i) => p < 0 || p >= Math.max(geo.strides[i], geo.dilations[i]))) {
      throw new UnsupportedOpError('Conv', node.name, `input gradient needs output_padding [${outputPadding}] outside ConvTranspose's range`);
    }
    const unitStride = geo.strides.every((v) => v === 1) && geo.dilations.every((v) => v === 1) && geo.group === 1 && outputPadding.every((v) => v === 0);
    const fullPads = geo.pads.map((p, i) => geo.kernel[i % S] - 1 - p);
    const weightBytes = wd.reduce((a, v) => a * v, 1) * byteSizeOf(e.type(w));
    if (unitStride && fullPads.every((p) => p >= 0) && weightBytes <= CONV_GRAD_AS_CONV_MAX_BYTES) {
      // The same result as ConvTranspose, as a plain Conv: the full correlation of g with the kernel flipped in space and
      // its in/out channels swapped. onnxruntime's CPU Conv is faster than its ConvTranspose (SD 1.5 shapes: 160 vs
      // 310 ms at 320 channels × 64², 208 vs 242 at 640 × 32²), but the flipped kernel of a constant weight is folded
      // into a second copy when the session loads, hence the size bound.
      const wt = e.transpose(w, [1, 0, ...Array.from({ length: S }, (_, i) => i + 2)]);
      const axes = Array.from({ length: S }, (_, i) => i + 2);
      const flipped = e.op('Slice', [wt, e.ints(axes.map(() => -1)), e.ints(axes.map(() => -(2 ** 62))), e.ints(axes), e.ints(axes.map(() => -1))], e.dims(wt), e.type(w));
      gx = e.op('Conv', [g, flipped], xd, e.type(g), { kernel_shape: geo.kernel, pads: fullPads, strides: geo.strides, dilations: geo.dilations });
    } else {
      gx = e.op('ConvTranspose', [g, w], xd, e.type(g), {
        strides: geo.strides, dilations: geo.dilations, pads: geo.pads, group: geo.group,
        kernel_shape: geo.kernel, output_padding: outputPadding,
      });
    }
  }
  if (ctx.needsGrad(1)) {
    if (geo.group !== 1) throw new UnsupportedOpError('Conv', node.name, `weight gradient for group=${geo.group} (only group=1)`);
    const swap = [1, 0, ...Array.from({ length: S }, (_, i) => i + 2)];
    const xt = e.transpose(x, swap); // [C, N, *in]
    const gt = e.transpose(g, swap); // [M, N, *out]: used as the kernel
    const full: number[] = [];
    for (let i = 0; i < S; i++) {
      full.push(Math.floor((xd[2 + i] + geo.pads[i] + geo.pads[i + S] - (yd[2 + i] - 1) * geo.strides[i] - 1) / geo.dilations[i]) + 1);
    }
    const corr = e.op('Conv', [xt, gt], [xd[1], yd[1], ...full], e.type(x), {
      strides: geo.dilations, dilations: geo.strides, pads: geo.pads, kernel_shape: yd.slice(2),
    });
    const cut = full.some((f, i) => f !== wd[2 + i])
      ? e.slice(corr, new Array(S).fill(0), wd.slice(2), Array.from({ length: S }, (_, i) => i + 2))
      : corr;
    gw = e.transpose(cut, swap);
  }
  if (b && ctx.needsGrad(2)) {
    gb = e.reduceSum(g, [0, ...Array.from({ length: S }, (_, i) => i + 2)], false);
  }
  return [gx, gw, gb];
});
