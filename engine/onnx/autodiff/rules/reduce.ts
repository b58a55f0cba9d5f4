// Reductions. The gradient of a sum/mean is the output gradient broadcast back over the reduced axes; ReduceL2's
// is g·x/y. Axes come from the attribute (before opset 13/18) or the constant axes input.
import type { NodeProto } from 'onnx-buf';
import { attrInt, attrInts } from '../../graph.js';
import { toNumbers, numel } from '../../tensor.js';
import { UnsupportedOpError } from '../errors.js';
import type { Emitter } from '../emitter.js';
import { withGradient, type Rule } from '../rule.js';

function reducedAxes(e: Emitter, node: NodeProto): number[] {
  const r = e.dims(node.input[0]).length;
  let axes = attrInts(node, 'axes');
  if (!axes && node.input[1]) {
    const v = e.info(node.input[1]).value;
    if (!v) throw new UnsupportedOpError(node.opType, node.name, 'axes input is not a constant');
    axes = toNumbers(v);
  }
  if (!axes || axes.length === 0) {
    if (attrInt(node, 'noop_with_empty_axes', 0) === 1) return [];
    return [...Array(r).keys()];
  }
  return axes.map((a) => (a < 0 ? a + r : a));
}

/** The output gradient reshaped to keepdims form (size 1 on reduced axes), ready to broadcast against the input. */
function keptGrad(e: Emitter, node: NodeProto, g: string, axes: number[]): string {
  const xd = e.dims(node.input[0]);
  return e.reshape(g, xd.map((d, i) => (axes.includes(i) ? 1 : d)));
}

export const ReduceSum: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const axes = reducedAxes(e, node);
  return [e.expand(keptGrad(e, node, g, axes), e.dims(node.input[0]))];
});

export const ReduceMean: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const axes = reducedAxes(e, node);
  const xd = e.dims(node.input[0]);
  const count = numel(axes.map((a) => xd[a]));
  // Scale the small reduced tensor before broadcasting it.
  return [e.expand(e.scale(keptGrad(e, node, g, axes), 1 / count), xd)];
});

export const ReduceL2: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const axes = reducedAxes(e, node);
  const x = node.input[0];
  const yk = keptGrad(e, node, node.output[0], axes);
  // d‖x‖/dx = x/‖x‖ (0/0 at x = 0, as in torch's norm backward).
  return [e.mul(e.div(x, yk), keptGrad(e, node, g, axes))];
});
