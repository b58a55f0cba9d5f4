// Elementwise ops: unary ops keep their input's shape, n-ary ops broadcast. Both fold the few ops that occur in
// shape plumbing (arithmetic on dims, comparisons, Where).
import { DataType } from '../tensor.js';
import { broadcastDims, type ShapeRule, type TensorInfo } from './rule.js';
import { broadcastTo } from './values.js';

type Unary = (v: number) => number;
type Binary = (a: number, b: number) => number;

/** A unary op; `fold` computes its value when the input is a constant; `bool` for predicates (IsNaN, Not). */
function unary(fold?: Unary, bool = false): ShapeRule {
  return (ctx) => {
    const a = ctx.input(0);
    const out: TensorInfo = { elemType: bool ? DataType.BOOL : a.elemType, dims: [...a.dims] };
    return [fold ? ctx.fold(out, (v) => v(0).map(fold)) : out];
  };
}

/** A broadcasting op of any arity; `fold` (binary only) computes its value; `bool` for comparisons and logic. */
function nary(op: string, fold?: Binary, bool = false): ShapeRule {
  return (ctx) => {
    const parts = ctx.node.input.map((_, i) => ctx.input(i));
    const dims = parts.map((p) => p.dims).reduce((p, q) => broadcastDims(p, q));
    const elemType = bool ? DataType.BOOL : parts[0].elemType;
    const out: TensorInfo = { elemType, dims };
    if (!fold || parts.length !== 2) return [out];
    const isInt = !(elemType === DataType.FLOAT || elemType === DataType.DOUBLE || elemType === DataType.FLOAT16);
    return [ctx.fold(out, (v) => {
      const [p, q] = parts.map((t, i) => broadcastTo(v(i), t.dims, dims));
      return p.map((x, i) => {
        const r = fold(x, q[i]);
        return op === 'Div' && isInt ? Math.trunc(r) : r;
      });
    })];
  };
}

export const Where: ShapeRule = (ctx) => {
  const parts = ctx.node.input.map((_, i) => ctx.input(i));
  const dims = parts.map((p) => p.dims).reduce((p, q) => broadcastDims(p, q));
  return [ctx.fold({ elemType: parts[1].elemType, dims }, (v) => {
    const [c, p, q] = parts.map((t, i) => broadcastTo(v(i), t.dims, dims));
    return c.map((x, i) => (x ? p[i] : q[i]));
  })];
};

const flag = (b: boolean): number => (b ? 1 : 0);

export const unaryRules: Record<string, ShapeRule> = {
  Identity: unary((v) => v), Neg: unary((v) => -v), Abs: unary(Math.abs), Sqrt: unary(Math.sqrt),
  Floor: unary(Math.floor), Ceil: unary(Math.ceil), Exp: unary(Math.exp), Log: unary(Math.log), Sin: unary(Math.sin),
  Cos: unary(Math.cos), Reciprocal: unary((v) => 1 / v), Relu: unary((v) => Math.max(0, v)), Sign: unary(Math.sign),
  Round: unary((v) => Math.round(v)), Not: unary((v) => flag(!v), true), IsNaN: unary(undefined, true),
  ...Object.fromEntries(['Sigmoid', 'Tanh', 'Erf', 'Softmax', 'LogSoftmax', 'Softplus', 'LeakyRelu', 'Elu', 'Gelu',
    'HardSigmoid', 'Clip', 'Dropout', 'CumSum', 'Trilu', 'InstanceNormalization', 'LayerNormalization',
    'GroupNormalization', 'BatchNormalization', 'Celu', 'Selu', 'Mish', 'HardSwish', 'Tan', 'Atan'].map((op) => [op, unary()])),
};

export const naryRules: Record<string, ShapeRule> = {
  Add: nary('Add', (a, b) => a + b), Sub: nary('Sub', (a, b) => a - b), Mul: nary('Mul', (a, b) => a * b),
  Div: nary('Div', (a, b) => a / b), Pow: nary('Pow', (a, b) => a ** b), Max: nary('Max', Math.max), Min: nary('Min', Math.min),
  Mod: nary('Mod', (a, b) => a % b),
  Equal: nary('Equal', (a, b) => flag(a === b), true), Less: nary('Less', (a, b) => flag(a < b), true),
  Greater: nary('Greater', (a, b) => flag(a > b), true), LessOrEqual: nary('LessOrEqual', (a, b) => flag(a <= b), true),
  GreaterOrEqual: nary('GreaterOrEqual', (a, b) => flag(a >= b), true),
  And: nary('And', (a, b) => flag(!!(a && b)), true), Or: nary('Or', (a, b) => flag(!!(a || b)), true), Xor: nary('Xor', undefined, true),
  Sum: nary('Sum'), Mean: nary('Mean'), PRelu: nary('PRelu'), BitShift: nary('BitShift'),
};
