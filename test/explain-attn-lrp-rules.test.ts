// The AttnLRP registry (engine/explain/lrp/attn-rules.ts) works in LXT's Gradient×Input form (relevance = x ⊙ ĝ). Here
// each rule is checked against AttnLRP's explicit relevance formulas (Achtibat et al., ICML 2024), computed by hand in
// float64 on two small random graphs: an attention block (linear ε-LRP with ε → 0, the uniform rule at Q·Kᵀ and A·V,
// the softmax rule R_in = x ⊙ (R_out − s·ΣR_out), or CP-LRP's blocked softmax) and a LayerNorm → linear → GELU chain
// (the identity rules). Independent of LXT and of the fixtures.
import assert from 'node:assert/strict';
import { makeModel, Rng, DataType, hostTensor, feedsOf, numbers, type Values } from './vjp-fixtures.js';
import { attnLrpRules, type AttnLrpAttention } from '../engine/explain/lrp/index.js';
import { buildVjp } from '../engine/onnx/autodiff/index.js';
import { openSession, runSession } from '../engine/onnx/session.js';
import type { OnnxModel } from '../engine/onnx/model.js';

type M = number[][];
const rng = new Rng(7);
const mat = (r: number, c: number): M => Array.from({ length: r }, () => rng.uniform(c));
const flat = (m: M): number[] => m.flat();
const mm = (a: M, b: M): M => a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
const tr = (a: M): M => a[0].map((_, j) => a.map((row) => row[j]));
const zeros = (r: number, c: number): M => Array.from({ length: r }, () => new Array<number>(c).fill(0));

/** Explicit ε-LRP (ε → 0) of z = x·W (no bias): R_x[i][a] = Σ_f x[i][a]·W[a][f]·R_z[i][f] / z[i][f]. */
function linearLrp(x: M, w: M, z: M, rz: M): M {
  return x.map((row, i) => row.map((xa, a) => w[a].reduce((s, wf, f) => s + xa * wf * rz[i][f] / z[i][f], 0)));
}

function relErr(got: number[], want: number[]): number {
  let d = 0;
  let m = 0;
  want.forEach((w, i) => {
    d = Math.max(d, Math.abs(got[i] - w));
    m = Math.max(m, Math.abs(w));
  });
  return d / m;
}

/** x ⊙ ĝ_x from the AttnLRP pass (buildVjp with the registry), seeded with ĝ on the output. */
async function gradientTimesInput(model: OnnxModel, attention: AttnLrpAttention, seed: string, values: Values, cot: number[], type: number): Promise<number[]> {
  const vjp = buildVjp(model, { seeds: [seed], wrt: ['x'], rules: attnLrpRules(model, attention) });
  const session = await openSession(vjp.model);
  try {
    const out = await runSession(session, feedsOf({ ...values, [vjp.cotangents[seed]]: { type, dims: vjp.specs[seed].dims, data: cot } }));
    const g = numbers(out[vjp.gradients.x]);
    return values.x.data.map((v, i) => v * g[i]);
  } finally {
    await session.release();
  }
}

describe('explain attn-lrp rules vs the explicit AttnLRP formulas', () => {
  const D = DataType.DOUBLE;
  const n = 5;
  const d = 4;
  const x = mat(n, d);
  const [wq, wk, wv] = [mat(d, d), mat(d, d), mat(d, d)];
  const scale = 2;
  const model = makeModel({
    inputs: [{ name: 'x', type: D, dims: [n, d] }],
    initializers: {
      wq: hostTensor(D, [d, d], flat(wq)), wk: hostTensor(D, [d, d], flat(wk)), wv: hostTensor(D, [d, d], flat(wv)),
      c: hostTensor(D, [], [scale]),
    },
    nodes: [
      { op: 'MatMul', inputs: ['x', 'wq'], outputs: ['q'] },
      { op: 'MatMul', inputs: ['x', 'wk'], outputs: ['k'] },
      { op: 'MatMul', inputs: ['x', 'wv'], outputs: ['v'] },
      { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [1, 0] } },
      { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s'] },
      { op: 'Div', inputs: ['s', 'c'], outputs: ['ss'] },
      { op: 'Softmax', inputs: ['ss'], outputs: ['a'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['a', 'v'], outputs: ['o'] },
    ],
    outputs: ['o'],
  });
  // The forward by hand.
  const q = mm(x, wq);
  const k = mm(x, wk);
  const v = mm(x, wv);
  const s = mm(q, tr(k));
  const ss = s.map((r) => r.map((e) => e / scale));
  const a = ss.map((r) => {
    const m = Math.max(...r);
    const ex = r.map((e) => Math.exp(e - m));
    const z = ex.reduce((p, e) => p + e, 0);
    return ex.map((e) => e / z);
  });
  const o = mm(a, v);
  const g = mat(n, d);
  const ro = o.map((r, i) => r.map((e, j) => e * g[i][j]));

  for (const attention of ['attnlrp', 'cp'] as const) {
    it(`${attention}: x ⊙ ĝ equals the explicit relevance of an attention block`, async () => {
      const half = attention === 'attnlrp' ? 0.5 : 1;
      // o = A·V: z_ijd = A_ij·v_jd; the uniform rule gives each operand half of R_z (CP-LRP: all to V, none to A).
      const ra = zeros(n, n);
      const rv = zeros(n, d);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let e = 0; e < d; e++) {
        const rz = a[i][j] * v[j][e] * ro[i][e] / o[i][e];
        ra[i][j] += 0.5 * rz;
        rv[j][e] += half * rz;
      }
      let rx = linearLrp(x, wv, v, rv);
      if (attention === 'attnlrp') {
        // Softmax rule: R_ss = ss ⊙ (R_A − A·ΣR_A); the division by a constant passes R; q·kᵀ splits uniformly.
        const rss = ss.map((r, i) => r.map((e, j) => e * (ra[i][j] - a[i][j] * ra[i].reduce((p, t) => p + t, 0))));
        const rq = zeros(n, d);
        const rk = zeros(n, d);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let e = 0; e < d; e++) {
          const rz = q[i][e] * k[j][e] * rss[i][j] / s[i][j];
          rq[i][e] += 0.5 * rz;
          rk[j][e] += 0.5 * rz;
        }
        const fromQ = linearLrp(x, wq, q, rq);
        const fromK = linearLrp(x, wk, k, rk);
        rx = rx.map((r, i) => r.map((e, j) => e + fromQ[i][j] + fromK[i][j]));
      }
      const got = await gradientTimesInput(model, attention, 'o', { x: { type: D, dims: [n, d], data: flat(x) } }, flat(g), D);
      const err = relErr(got, flat(rx));
      console.log(`      max rel diff = ${err.toExponential(2)}`);
      assert.ok(err < 1e-9, `${attention}: ${err}`);
    });
  }

  it('LayerNorm → linear → GELU (erf): the identity rules (σ held constant, the mean not; GELU passes R)', async () => {
    const F = DataType.FLOAT;
    const rows = 3;
    const width = 6;
    const hidden = 8;
    const xs = mat(rows, width).map((r) => r.map((e) => 2 * e));
    const gamma = rng.uniform(width, 0.5, 1.5);
    const beta = rng.uniform(width, -0.3, 0.3);
    const w = mat(width, hidden);
    const eps = 1e-5;
    const ln = makeModel({
      inputs: [{ name: 'x', type: F, dims: [rows, width] }],
      initializers: {
        two: hostTensor(F, [], [2]), eps: hostTensor(F, [], [eps]), gamma: hostTensor(F, [width], gamma), beta: hostTensor(F, [width], beta),
        w: hostTensor(F, [width, hidden], flat(w)), sqrt2: hostTensor(F, [], [Math.SQRT2]), one: hostTensor(F, [], [1]), half: hostTensor(F, [], [0.5]),
      },
      nodes: [
        { op: 'ReduceMean', inputs: ['x'], outputs: ['mu'], attrs: { axes: [-1] } },
        { op: 'Sub', inputs: ['x', 'mu'], outputs: ['xc'] },
        { op: 'Pow', inputs: ['xc', 'two'], outputs: ['p'] },
        { op: 'ReduceMean', inputs: ['p'], outputs: ['var'], attrs: { axes: [-1] } },
        { op: 'Add', inputs: ['var', 'eps'], outputs: ['ve'] },
        { op: 'Sqrt', inputs: ['ve'], outputs: ['sd'] },
        { op: 'Div', inputs: ['xc', 'sd'], outputs: ['xn'] },
        { op: 'Mul', inputs: ['xn', 'gamma'], outputs: ['xg'] },
        { op: 'Add', inputs: ['xg', 'beta'], outputs: ['y'] },
        { op: 'MatMul', inputs: ['y', 'w'], outputs: ['h'] },
        { op: 'Div', inputs: ['h', 'sqrt2'], outputs: ['hd'] },
        { op: 'Erf', inputs: ['hd'], outputs: ['er'] },
        { op: 'Add', inputs: ['er', 'one'], outputs: ['ea'] },
        { op: 'Mul', inputs: ['h', 'ea'], outputs: ['m'] },
        { op: 'Mul', inputs: ['m', 'half'], outputs: ['gelu'] },
      ],
      outputs: ['gelu'],
    });
    // Forward by hand (float64) and the explicit rules.
    const y = xs.map((r) => {
      const mu = r.reduce((p, e) => p + e, 0) / width;
      const sd = Math.sqrt(r.reduce((p, e) => p + (e - mu) ** 2, 0) / width + eps);
      return r.map((e, j) => ((e - mu) / sd) * gamma[j] + beta[j]);
    });
    const h = mm(y, w);
    const erf = (t: number): number => {
      // Abramowitz–Stegun 7.1.26 is too coarse for 1e-5; integrate the series instead (|t| ≲ 4 here).
      let sum = 0;
      let term = t;
      for (let k = 0; k < 80; k++) {
        sum += term / (2 * k + 1);
        term *= (-t * t) / (k + 1);
      }
      return (2 / Math.sqrt(Math.PI)) * sum;
    };
    const gelu = h.map((r) => r.map((e) => 0.5 * e * (1 + erf(e / Math.SQRT2))));
    const g = mat(rows, hidden);
    const rh = gelu.map((r, i) => r.map((e, j) => e * g[i][j])); // identity rule: R_h = R_gelu
    const ry = linearLrp(y, w, h, rh);
    // LayerNorm with σ constant: y_j = Σ_i M_ji x_i + β_j, M_ji = γ_j(δ_ij − 1/n)/σ (ε-LRP, ε → 0, β absorbs its share).
    const rx = xs.map((r, row) => {
      const mu = r.reduce((p, e) => p + e, 0) / width;
      const sd = Math.sqrt(r.reduce((p, e) => p + (e - mu) ** 2, 0) / width + eps);
      return r.map((xi, i) => {
        let sum = 0;
        for (let j = 0; j < width; j++) sum += xi * (gamma[j] * ((i === j ? 1 : 0) - 1 / width) / sd) * ry[row][j] / y[row][j];
        return sum;
      });
    });
    for (const attention of ['attnlrp', 'cp'] as const) {
      const got = await gradientTimesInput(ln, attention, 'gelu', { x: { type: F, dims: [rows, width], data: flat(xs) } }, flat(g), F);
      const err = relErr(got, flat(rx));
      console.log(`      ${attention}: max rel diff = ${err.toExponential(2)} (float32 graph)`);
      assert.ok(err < 1e-4, `${attention}: ${err}`);
    }
  });
});
