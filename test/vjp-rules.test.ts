// Every backward rule against central finite differences on small random graphs (several attribute and broadcast
// variants per op). float64 graphs where onnxruntime's CPU kernels support double (tolerance 1e-6 relative), float32
// otherwise (ORT CPU has no double Conv, InstanceNormalization, Erf, LeakyRelu, Resize: tolerance 1e-2 relative with
// ε = 1e-2 and O(1) inputs; measured errors are 1e-4 or better).
import assert from 'node:assert/strict';
import { checkVjp, makeModel, Rng, DataType, hostTensor, type ModelSpec, type NodeSpec, type Values } from './vjp-fixtures.js';
import { numel } from '../engine/onnx/tensor.js';
import { supportedOps } from '../engine/onnx/autodiff/index.js';

const D: number = DataType.DOUBLE;
const F: number = DataType.FLOAT;

interface Case {
  name: string;
  type: number;
  inputs: { name: string; dims: number[]; lo?: number; hi?: number; type?: number; data?: number[] }[];
  nodes: NodeSpec[];
  seeds?: string[];
  wrt?: string[];
  initializers?: ModelSpec['initializers'];
  opset?: number;
  tol?: number;
  eps?: number;
}

const rng = new Rng(42);
const ints = (v: number[]) => hostTensor(DataType.INT64, [v.length], v);

function run(c: Case): Promise<void> {
  return (async () => {
    const values: Values = {};
    for (const i of c.inputs) {
      const type = i.type ?? c.type;
      values[i.name] = { type, dims: i.dims, data: i.data ?? rng.uniform(numel(i.dims), i.lo ?? -1, i.hi ?? 1) };
    }
    const seeds = c.seeds ?? [c.nodes[c.nodes.length - 1].outputs[0]];
    const model = makeModel({
      inputs: c.inputs.map((i) => ({ name: i.name, type: i.type ?? c.type, dims: i.dims })),
      nodes: c.nodes, outputs: seeds, initializers: c.initializers, opset: c.opset,
    });
    const wrt = c.wrt ?? c.inputs.filter((i) => (i.type ?? c.type) === c.type).map((i) => i.name);
    const double = c.type === D;
    const res = await checkVjp(model, { seeds, wrt, values, eps: c.eps ?? (double ? 1e-6 : 1e-2), maxEntries: 48, directions: 4 });
    const tol = c.tol ?? (double ? 1e-6 : 1e-2);
    for (const [w, r] of Object.entries(res)) {
      assert.ok(r.relErr <= tol, `${c.name}: gradient wrt '${w}' differs from finite differences: rel ${r.relErr.toExponential(2)} (abs ${r.maxAbsErr.toExponential(2)}, scale ${r.scale.toExponential(2)}) > ${tol}`);
      assert.ok(r.scale > 1e-6, `${c.name}: derivative wrt '${w}' is ~0; the case tests nothing`);
    }
    worst.set(c.name, Math.max(...Object.values(res).map((r) => r.relErr)));
  })();
}

const worst = new Map<string, number>();

function binary(op: string, a: number[], b: number[], type = D, pos = false): Case {
  return {
    name: `${op} [${a}]⊙[${b}]`, type,
    inputs: [{ name: 'a', dims: a, lo: pos ? 0.5 : -1, hi: pos ? 1.5 : 1 }, { name: 'b', dims: b, lo: pos || op === 'Div' ? 0.5 : -1, hi: pos || op === 'Div' ? 1.5 : 1 }],
    nodes: [{ op, inputs: ['a', 'b'], outputs: ['y'] }],
  };
}
function unary(op: string, type = D, lo = -1, hi = 1, attrs?: NodeSpec['attrs']): Case {
  return { name: `${op}${attrs ? ' ' + JSON.stringify(attrs) : ''}`, type, inputs: [{ name: 'x', dims: [2, 3, 4], lo, hi }], nodes: [{ op, inputs: ['x'], outputs: ['y'], attrs }] };
}

const cases: Case[] = [
  // Elementwise, with broadcasting both ways.
  ...['Add', 'Sub', 'Mul', 'Div'].flatMap((op) => [
    binary(op, [2, 3], [2, 3]), binary(op, [2, 3], [3]), binary(op, [2, 1, 4], [3, 1]), binary(op, [1], [2, 3]), binary(op, [], [2, 3]),
  ]),
  binary('Pow', [2, 3], [2, 3], D, true),
  binary('Pow', [2, 3], [3], D, true),
  ...[2, 3, 0.5, -1.5].map((p): Case => ({
    name: `Pow x^${p} (constant exponent)`, type: D, inputs: [{ name: 'x', dims: [2, 3], lo: 0.5, hi: 1.5 }],
    nodes: [{ op: 'Pow', inputs: ['x', 'p'], outputs: ['y'] }], initializers: { p: hostTensor(D, [], [p]) },
  })),
  { name: 'Pow float32 exponent on float32 (LayerNorm x²)', type: F, inputs: [{ name: 'x', dims: [2, 5] }],
    nodes: [{ op: 'Pow', inputs: ['x', 'p'], outputs: ['y'] }], initializers: { p: hostTensor(F, [], [2]) } },
  unary('Sqrt', D, 0.5, 2), unary('Exp'), unary('Log', D, 0.5, 2), unary('Reciprocal', D, 0.5, 2), unary('Sigmoid'),
  unary('Tanh'), unary('Erf', F), unary('Sin'), unary('Cos'), unary('Neg'), unary('Relu'), unary('Abs'),
  unary('LeakyRelu', F, -1, 1, { alpha: 0.1 }), unary('Identity'),
  { name: 'Cast double→float→double', type: D, inputs: [{ name: 'x', dims: [3, 2] }], tol: 1e-3, eps: 1e-2,
    nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['h'], attrs: { to: F } }, { op: 'Cast', inputs: ['h'], outputs: ['y'], attrs: { to: D } }] },
  { name: 'Where with broadcast condition and operands', type: D,
    inputs: [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [3] }, { name: 'c', dims: [1, 3], type: DataType.BOOL, data: [1, 0, 1] }],
    nodes: [{ op: 'Where', inputs: ['c', 'a', 'b'], outputs: ['y'] }] },
  { name: 'Sum of three', type: D, inputs: [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [3] }, { name: 'c', dims: [2, 1] }],
    nodes: [{ op: 'Sum', inputs: ['a', 'b', 'c'], outputs: ['y'] }] },
  { name: 'x·x (one tensor used twice)', type: D, inputs: [{ name: 'x', dims: [4] }], nodes: [{ op: 'Mul', inputs: ['x', 'x'], outputs: ['y'] }] },

  // MatMul: plain, batched, linear layer, 1-D operands, broadcast batch.
  ...([[[3, 4], [4, 5]], [[2, 3, 4], [4, 5]], [[2, 3, 4], [2, 4, 5]], [[4], [4, 5]], [[3, 4], [4]], [[2, 1, 3, 4], [5, 4, 2]], [[3, 4], [2, 4, 5]]] as number[][][])
    .map(([a, b]): Case => ({ name: `MatMul [${a}]×[${b}]`, type: D, inputs: [{ name: 'a', dims: a }, { name: 'b', dims: b }], nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }] })),
  // Gemm: all transpose combinations, alpha/beta, C broadcast.
  ...[[0, 0, [5]], [1, 0, [1, 5]], [0, 1, [3, 5]], [1, 1, []]].map(([tA, tB, c]): Case => ({
    name: `Gemm transA=${tA} transB=${tB} C[${c}]`, type: D,
    inputs: [{ name: 'a', dims: tA ? [4, 3] : [3, 4] }, { name: 'b', dims: tB ? [5, 4] : [4, 5] }, { name: 'c', dims: c as number[] }],
    nodes: [{ op: 'Gemm', inputs: ['a', 'b', 'c'], outputs: ['y'], attrs: { transA: tA as number, transB: tB as number, alpha: 0.7, beta: 1.3 } }],
  })),

  // Conv (float32 only in ORT CPU).
  ...([
    ['k3 s1 p1 +bias', [1, 2, 5, 5], [3, 2, 3, 3], { pads: [1, 1, 1, 1] }, true],
    ['k3 s2 p1 (SD downsample, even input)', [1, 2, 6, 6], [3, 2, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }, true],
    ['k1 (1×1 projection)', [2, 3, 3, 4], [2, 3, 1, 1], {}, false],
    ['k3 dilation 2', [1, 2, 7, 7], [2, 2, 3, 3], { dilations: [2, 2], pads: [2, 2, 2, 2] }, false],
    ['k3 SAME_UPPER s2 odd input', [1, 1, 7, 5], [2, 1, 3, 3], { auto_pad: 'SAME_UPPER', strides: [2, 2] }, false],
    ['k3 asymmetric pads', [1, 2, 5, 6], [2, 2, 3, 2], { pads: [0, 1, 2, 0] }, true],
    ['1-D k3 s2', [2, 2, 9], [3, 2, 3], { strides: [2], pads: [1, 1] }, true],
    ['ViT patch embedding k4 s4', [1, 3, 8, 8], [4, 3, 4, 4], { strides: [4, 4] }, true],
  ] as [string, number[], number[], Record<string, number[] | string>, boolean][]).map(([name, x, w, attrs, bias]): Case => ({
    name: `Conv ${name}`, type: F,
    inputs: [{ name: 'x', dims: x }, { name: 'w', dims: w }, ...(bias ? [{ name: 'bias', dims: [w[0]] }] : [])],
    nodes: [{ op: 'Conv', inputs: bias ? ['x', 'w', 'bias'] : ['x', 'w'], outputs: ['y'], attrs }],
  })),
  { name: 'Conv group=2 (input gradient)', type: F, wrt: ['x'],
    inputs: [{ name: 'x', dims: [1, 4, 5, 5] }, { name: 'w', dims: [4, 2, 3, 3] }],
    nodes: [{ op: 'Conv', inputs: ['x', 'w'], outputs: ['y'], attrs: { group: 2, pads: [1, 1, 1, 1] } }] },

  // Normalisation.
  { name: 'InstanceNormalization with scale/bias', type: F,
    inputs: [{ name: 'x', dims: [2, 3, 4, 5], lo: -2, hi: 2 }, { name: 's', dims: [3] }, { name: 'b', dims: [3] }],
    nodes: [{ op: 'InstanceNormalization', inputs: ['x', 's', 'b'], outputs: ['y'], attrs: { epsilon: 1e-5 } }] },
  { name: 'GroupNorm as exported (Reshape→InstanceNorm(1,0)→Reshape→Mul→Add)', type: F, wrt: ['x', 'gamma', 'beta'],
    inputs: [{ name: 'x', dims: [1, 4, 3, 3], lo: -2, hi: 2 }, { name: 'gamma', dims: [4, 1, 1] }, { name: 'beta', dims: [4, 1, 1] }],
    initializers: { shp: ints([1, 2, -1]), back: ints([1, 4, 3, 3]), ones: hostTensor(F, [2], [1, 1]), zeros: hostTensor(F, [2], [0, 0]) },
    nodes: [
      { op: 'Reshape', inputs: ['x', 'shp'], outputs: ['r'] },
      { op: 'InstanceNormalization', inputs: ['r', 'ones', 'zeros'], outputs: ['n'], attrs: { epsilon: 1e-6 } },
      { op: 'Reshape', inputs: ['n', 'back'], outputs: ['n4'] },
      { op: 'Mul', inputs: ['n4', 'gamma'], outputs: ['m'] },
      { op: 'Add', inputs: ['m', 'beta'], outputs: ['y'] },
    ] },
  ...[-1, 1].map((axis): Case => ({
    name: `LayerNormalization axis=${axis} (opset 17)`, type: D, opset: 17,
    inputs: [{ name: 'x', dims: [2, 3, 4], lo: -2, hi: 2 }, { name: 's', dims: axis === -1 ? [4] : [3, 4] }, { name: 'b', dims: axis === -1 ? [4] : [3, 4] }],
    nodes: [{ op: 'LayerNormalization', inputs: ['x', 's', 'b'], outputs: ['y'], attrs: { axis, epsilon: 1e-5 } }],
  })),
  { name: 'LayerNorm decomposed as torch exports it (ReduceMean/Sub/Pow/Sqrt/Div)', type: D, wrt: ['x'],
    inputs: [{ name: 'x', dims: [2, 5], lo: -2, hi: 2 }],
    initializers: { two: hostTensor(D, [], [2]), eps: hostTensor(D, [], [1e-5]) },
    nodes: [
      { op: 'ReduceMean', inputs: ['x'], outputs: ['mu'], attrs: { axes: [-1] } },
      { op: 'Sub', inputs: ['x', 'mu'], outputs: ['xc'] },
      { op: 'Pow', inputs: ['xc', 'two'], outputs: ['sq'] },
      { op: 'ReduceMean', inputs: ['sq'], outputs: ['var'], attrs: { axes: [-1] } },
      { op: 'Add', inputs: ['var', 'eps'], outputs: ['ve'] },
      { op: 'Sqrt', inputs: ['ve'], outputs: ['sd'] },
      { op: 'Div', inputs: ['xc', 'sd'], outputs: ['y'] },
    ] },

  // Softmax family.
  ...[-1, 1].map((axis): Case => ({ name: `Softmax axis=${axis}`, type: D, inputs: [{ name: 'x', dims: [2, 3, 4], lo: -2, hi: 2 }], nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis } }] })),
  { name: 'Softmax opset 11 (2-D coercion from axis 1)', type: D, opset: 11, inputs: [{ name: 'x', dims: [2, 3, 4] }], nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: 1 } }] },
  { name: 'LogSoftmax axis=-1', type: D, inputs: [{ name: 'x', dims: [3, 5] }], nodes: [{ op: 'LogSoftmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } }] },

  // Reductions.
  { name: 'ReduceMean axes=[-1] keepdims', type: D, inputs: [{ name: 'x', dims: [2, 3, 4] }], nodes: [{ op: 'ReduceMean', inputs: ['x'], outputs: ['y'], attrs: { axes: [-1] } }] },
  { name: 'ReduceMean axes=[0,2] keepdims=0', type: D, inputs: [{ name: 'x', dims: [2, 3, 4] }], nodes: [{ op: 'ReduceMean', inputs: ['x'], outputs: ['y'], attrs: { axes: [0, 2], keepdims: 0 } }] },
  { name: 'ReduceSum axes input, keepdims=0', type: D, inputs: [{ name: 'x', dims: [2, 3, 4] }], initializers: { ax: ints([1]) },
    nodes: [{ op: 'ReduceSum', inputs: ['x', 'ax'], outputs: ['y'], attrs: { keepdims: 0 } }] },
  { name: 'ReduceL2 axes=[-1] (CLIP embedding norm)', type: D, inputs: [{ name: 'x', dims: [2, 5] }], nodes: [{ op: 'ReduceL2', inputs: ['x'], outputs: ['y'], attrs: { axes: [-1], keepdims: 1 } }] },

  // Data movement.
  { name: 'Reshape', type: D, inputs: [{ name: 'x', dims: [2, 6] }], initializers: { s: ints([3, -1, 2]) }, nodes: [{ op: 'Reshape', inputs: ['x', 's'], outputs: ['y'] }] },
  { name: 'Flatten axis=2', type: D, inputs: [{ name: 'x', dims: [2, 3, 2, 2] }], nodes: [{ op: 'Flatten', inputs: ['x'], outputs: ['y'], attrs: { axis: 2 } }] },
  { name: 'Unsqueeze→Squeeze (axes inputs)', type: D, inputs: [{ name: 'x', dims: [3, 4] }], initializers: { a: ints([0, 2]), b: ints([0]) },
    nodes: [{ op: 'Unsqueeze', inputs: ['x', 'a'], outputs: ['u'] }, { op: 'Squeeze', inputs: ['u', 'b'], outputs: ['y'] }] },
  { name: 'Transpose perm [0,2,3,1]', type: D, inputs: [{ name: 'x', dims: [2, 3, 2, 4] }], nodes: [{ op: 'Transpose', inputs: ['x'], outputs: ['y'], attrs: { perm: [0, 2, 3, 1] } }] },
  { name: 'Expand [3,1]→[2,3,4]', type: D, inputs: [{ name: 'x', dims: [3, 1] }], initializers: { s: ints([2, 3, 4]) }, nodes: [{ op: 'Expand', inputs: ['x', 's'], outputs: ['y'] }] },
  { name: 'Concat axis=1 with a constant part', type: D, inputs: [{ name: 'a', dims: [2, 1, 3] }, { name: 'b', dims: [2, 4, 3] }], initializers: { k: hostTensor(D, [2, 2, 3], new Array(12).fill(0.5)) },
    nodes: [{ op: 'Concat', inputs: ['a', 'k', 'b'], outputs: ['y'], attrs: { axis: 1 } }] },
  { name: 'Split sizes input, one output unused', type: D, inputs: [{ name: 'x', dims: [2, 5] }], initializers: { sp: ints([2, 3]) }, seeds: ['y1'],
    nodes: [{ op: 'Split', inputs: ['x', 'sp'], outputs: ['y0', 'y1'], attrs: { axis: 1 } }] },
  { name: 'Split equal, both outputs as seeds (GEGLU style)', type: D, inputs: [{ name: 'x', dims: [3, 4] }], seeds: ['y0', 'y1'],
    nodes: [{ op: 'Split', inputs: ['x'], outputs: ['y0', 'y1'], attrs: { axis: -1 } }] },
  ...([
    ['contiguous', [0, 1], [2, 3], [0, 1], [1, 1]],
    ['step 2 and negative start', [1, -3], [5, 100], [0, 1], [2, 1]],
    ['negative step', [4, 3], [0, -100], [0, 1], [-2, -1]],
  ] as [string, number[], number[], number[], number[]][]).map(([name, s, en, ax, st]): Case => ({
    name: `Slice ${name}`, type: D, inputs: [{ name: 'x', dims: [6, 5] }],
    initializers: { s: ints(s), e: ints(en), a: ints(ax), st: ints(st) },
    nodes: [{ op: 'Slice', inputs: ['x', 's', 'e', 'a', 'st'], outputs: ['y'] }],
  })),
  { name: 'Gather axis 0, constant indices with repeats (embedding)', type: D, wrt: ['x'], inputs: [{ name: 'x', dims: [5, 3] }],
    initializers: { i: hostTensor(DataType.INT64, [2, 2], [1, 3, 1, -1]) }, nodes: [{ op: 'Gather', inputs: ['x', 'i'], outputs: ['y'] }] },
  { name: 'Gather axis 1, scalar index (ViT CLS token)', type: D, wrt: ['x'], inputs: [{ name: 'x', dims: [2, 4, 3] }],
    initializers: { i: hostTensor(DataType.INT64, [], [0]) }, nodes: [{ op: 'Gather', inputs: ['x', 'i'], outputs: ['y'], attrs: { axis: 1 } }] },
  { name: 'Gather runtime int64 ids (token embedding)', type: D, wrt: ['x'],
    inputs: [{ name: 'x', dims: [6, 3] }, { name: 'ids', dims: [1, 4], type: DataType.INT64, data: [5, 0, 5, 2] }],
    nodes: [{ op: 'Gather', inputs: ['x', 'ids'], outputs: ['y'] }] },
  { name: 'Resize nearest ×2 asymmetric/floor (SD upsampler)', type: F, inputs: [{ name: 'x', dims: [1, 2, 3, 3] }],
    initializers: { roi: hostTensor(F, [0], []), sc: hostTensor(F, [4], [1, 1, 2, 2]) },
    nodes: [{ op: 'Resize', inputs: ['x', 'roi', 'sc'], outputs: ['y'], attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' } }] },
  { name: 'Resize nearest to sizes 5×7 half_pixel (non-block)', type: F, inputs: [{ name: 'x', dims: [1, 1, 3, 4] }],
    initializers: { roi: hostTensor(F, [0], []), sc: hostTensor(F, [0], []), sz: ints([1, 1, 5, 7]) },
    nodes: [{ op: 'Resize', inputs: ['x', 'roi', 'sc', 'sz'], outputs: ['y'], attrs: { mode: 'nearest' } }] },
  { name: 'Resize linear ×2 align_corners', type: F, inputs: [{ name: 'x', dims: [1, 1, 3, 3] }],
    initializers: { roi: hostTensor(F, [0], []), sc: hostTensor(F, [4], [1, 1, 2, 2]) },
    nodes: [{ op: 'Resize', inputs: ['x', 'roi', 'sc'], outputs: ['y'], attrs: { mode: 'linear', coordinate_transformation_mode: 'align_corners' } }] },
  // A small attention block end to end (the pattern of the UNet/ViT: scale after MatMul, Softmax, MatMul with V).
  { name: 'attention block: MatMul(q,kᵀ)·s → Softmax → MatMul(v)', type: D, seeds: ['o', 'p'],
    inputs: [{ name: 'q', dims: [2, 3, 4] }, { name: 'k', dims: [2, 5, 4] }, { name: 'v', dims: [2, 5, 4] }],
    initializers: { s: hostTensor(D, [], [0.5]) },
    nodes: [
      { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [0, 2, 1] } },
      { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['qk'] },
      { op: 'Mul', inputs: ['qk', 's'], outputs: ['sc'] },
      { op: 'Softmax', inputs: ['sc'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] },
    ] },
  { name: 'attention, UNet export pattern: Softmax → no-op Cast → MatMul(v), P broadcast over V batch', type: D, seeds: ['o'],
    inputs: [{ name: 'x', dims: [1, 3, 4], lo: -2, hi: 2 }, { name: 'v', dims: [2, 4, 5] }],
    nodes: [
      { op: 'Softmax', inputs: ['x'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'Cast', inputs: ['p'], outputs: ['pc'], attrs: { to: D } },
      { op: 'MatMul', inputs: ['pc', 'v'], outputs: ['o'] },
    ] },
  { name: 'attention probabilities used twice (MatMul and an elementwise consumer)', type: D, seeds: ['o', 'q'],
    inputs: [{ name: 'x', dims: [2, 3, 4], lo: -2, hi: 2 }, { name: 'v', dims: [2, 4, 2] }],
    nodes: [
      { op: 'Softmax', inputs: ['x'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] },
      { op: 'Sqrt', inputs: ['p'], outputs: ['q'] },
    ] },
];

describe('VJP rules vs finite differences', function () {
  for (const c of cases) {
    it(c.name, async () => {
      await run(c);
    });
  }
  it('covers every registered rule', () => {
    const tested = new Set(cases.flatMap((c) => c.nodes.map((n) => n.op)));
    const missing = supportedOps().filter((op) => !tested.has(op) && op !== 'Dropout');
    assert.deepEqual(missing, [], `rules without a finite-difference test: ${missing.join(', ')}`);
  });
  after(() => {
    const rows = [...worst].map(([k, v]) => `${v.toExponential(1)}  ${k}`);
    console.log(`    worst relative error per case:\n      ${rows.join('\n      ')}`);
  });
});
