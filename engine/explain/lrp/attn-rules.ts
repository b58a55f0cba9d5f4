// The AttnLRP rule registry (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
// Transformers", ICML 2024), keyed by ONNX op type, in the Gradient×Input form of the LXT library's `lxt.efficient`
// (rachtibat/LRP-eXplains-Transformers, lxt/efficient/rules.py and patches.py). There a rule is a modified gradient:
// relevance of any tensor t is t ⊙ ĝ_t, where ĝ is the backward pass with these changes. Each rule here is therefore
// a VJP rule (engine/onnx/autodiff/rule.ts), and every op not listed keeps its derivative rule:
//   - linear layers (MatMul / Gemm / Conv with a constant weight), bias and skip-connection Adds, shape ops: the plain
//     gradient, i.e. ε-LRP with ε → 0 (LRP-0) — the bias absorbs its share, a sum splits x·R/z;
//   - GELU, identity rule (their `identity_rule_implicit`, eq. 9): ĝ_x = ĝ_y · gelu(x)/x. The erf form
//     x·½(1 + erf(x/√2)) gets it by holding the gate constant: Erf passes no gradient (only inside a GELU chain);
//   - LayerNorm, identity rule on the normalisation (their `layer_norm_forward`): the standard deviation is detached,
//     the mean is not — the exported chain's division by Sqrt passes nothing to the denominator; the
//     LayerNormalization op gets ĝ_x = (γĝ − mean(γĝ))/σ;
//   - attention, variant `attnlrp`: the uniform rule (eq. 7) at each product of two computed tensors (Q·Kᵀ, A·V) —
//     both operands get half (LXT: query and key ÷ 4, value ÷ 2); softmax keeps its gradient, which under
//     Gradient×Input is AttnLRP's softmax rule R_in = x ⊙ (R_out − s·ΣR_out) (eq. 11);
//   - attention, variant `cp` (CP-LRP, Ali et al. 2022; LXT's map for torchvision's ViT, `cp_multi_head_attention_forward`):
//     query and key are detached, so no relevance crosses the softmax; A·V keeps its plain gradient (A acts as a
//     constant weight on V).
// An op this registry cannot explain (a division by a computed tensor other than the LayerNorm std, an Erf outside
// GELU) fails the build with its type and node name.
import type { NodeProto } from 'onnx-buf';
import { rules as gradientRules } from '../../onnx/autodiff/rules/index.js';
import { Div as gradientDiv } from '../../onnx/autodiff/rules/elementwise.js';
import { MatMul as gradientMatMul } from '../../onnx/autodiff/rules/matmul.js';
import { withGradient, type Rule, type RuleContext } from '../../onnx/autodiff/rule.js';
import { attrInt, Graph } from '../../onnx/graph.js';
import type { OnnxModel } from '../../onnx/model.js';
import { DataType } from '../../onnx/tensor.js';
import { LrpUnsupportedOpError } from './errors.js';
import { findGelus } from './fuse.js';

/** How relevance crosses the attention: AttnLRP's own rules, or CP-LRP (LXT's choice for ViTs). */
export type AttnLrpAttention = 'attnlrp' | 'cp';
export const ATTN_LRP_ATTENTIONS: readonly AttnLrpAttention[] = ['cp', 'attnlrp'];

function nodeName(node: NodeProto): string {
  return node.name || node.output[0];
}

function zerosLike(ctx: RuleContext, t: string): string {
  return ctx.e.zeros(ctx.e.dims(t), ctx.e.type(t));
}

/** Output names of the Erf nodes that sit inside an erf-GELU chain of a model. Read from the forward graph before any
 * backward node exists (those add consumers to the chain's tensors, which the pattern requires to have one). */
export function geluErfOutputs(model: OnnxModel): Set<string> {
  const graph = new Graph(model);
  const dynamic = new Set<string>(graph.realInputs().map((v) => v.name));
  for (const n of graph.topologicalOrder()) if (n.input.some((i) => i && dynamic.has(i))) for (const o of n.output) if (o) dynamic.add(o);
  const set = new Set<string>();
  for (const f of findGelus(graph, (t) => !dynamic.has(t)).values()) {
    for (const n of f.nodes) if (n.opType === 'Erf') set.add(n.output[0]);
  }
  return set;
}

/** GELU's identity rule: the gate Φ(x) = ½(1 + erf(x/√2)) is held constant, so ĝ_x = Φ(x)·ĝ_y = gelu(x)/x · ĝ_y. */
function erfRule(geluErfs: ReadonlySet<string>): Rule {
  return (ctx) => {
    if (!geluErfs.has(ctx.node.output[0])) {
      throw new LrpUnsupportedOpError('Erf', nodeName(ctx.node), 'AttnLRP has a rule for Erf only inside GELU, x·½(1 + erf(x/√2))');
    }
    return [zerosLike(ctx, ctx.node.input[0])];
  };
}

/** x / constant keeps its gradient; LayerNorm's (x − μ)/σ detaches σ (the identity rule on the normalisation). */
const Div: Rule = (ctx) => {
  const [a, b] = ctx.node.input;
  if (!ctx.needsGrad(1)) return gradientDiv(ctx);
  if (ctx.e.graph.producer(b)?.opType !== 'Sqrt') {
    throw new LrpUnsupportedOpError('Div', nodeName(ctx.node), 'AttnLRP divides only by constants and by the LayerNorm standard deviation (Sqrt)');
  }
  const g = ctx.gradOut(0);
  if (!g) return [];
  return [ctx.needsGrad(0) ? ctx.e.reduceToShape(ctx.e.div(g, b), ctx.e.dims(a)) : undefined, zerosLike(ctx, b)];
};

/** The LayerNormalization op with σ detached: ĝ_x = (γĝ − mean(γĝ))·(1/σ); γ and β are constants. */
const LayerNormalization: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const [x, scale] = node.input;
  const xd = e.dims(x);
  let axis = attrInt(node, 'axis', -1);
  if (axis < 0) axis += xd.length;
  const axes = [...Array(xd.length - axis).keys()].map((i) => i + axis);
  const t = e.type(x);
  const statDims = xd.map((d, i) => (i >= axis ? 1 : d));
  const stash = attrInt(node, 'stash_type', 1) === 1 ? DataType.FLOAT : t;
  // The op's optional outputs are positional (mean, then 1/σ): ask for the mean first so 1/σ lands in slot 2.
  if (!node.output[1]) ctx.addForwardOutput(statDims, stash, 'ln_mean');
  const inv = node.output[2] || ctx.addForwardOutput(statDims, stash, 'ln_invstd');
  const gs = e.mul(g, scale);
  const centred = e.sub(gs, e.reduce('ReduceMean', gs, axes, true));
  return [ctx.needsGrad(0) ? e.mul(centred, e.cast(inv, t)) : undefined];
});

/** Softmax's own gradient, y ⊙ (ĝ − Σ ĝ⊙y), without the derivative rule's attention shortcut (which reads the A·V
 * gradient before the uniform rule halves it). Under Gradient×Input this is AttnLRP's softmax rule. */
const SoftmaxRule: Rule = withGradient((ctx, g) => {
  const { e, node } = ctx;
  const y = node.output[0];
  const r = e.dims(y).length;
  const legacy = e.opset < 13;
  let axis = attrInt(node, 'axis', legacy ? 1 : -1);
  if (axis < 0) axis += r;
  const axes = legacy ? [...Array(r - axis).keys()].map((i) => i + axis) : [axis];
  const gy = e.mul(g, y);
  return [e.sub(gy, e.mul(y, e.reduceSum(gy, axes, true)))];
});

/** CP-LRP: no relevance crosses the softmax (query and key detached). */
const SoftmaxBlocked: Rule = (ctx) => [zerosLike(ctx, ctx.node.input[0])];

/** AttnLRP's uniform rule: a product of two computed tensors gives each operand half. Linear layers keep LRP-0. */
const MatMulUniform: Rule = (ctx) => {
  const res = gradientMatMul(ctx);
  if (!(ctx.needsGrad(0) && ctx.needsGrad(1))) return res;
  return res.map((g) => (g ? ctx.e.scale(g, 0.5) : g));
};

/** The registry for one model and attention variant: the derivative rules with AttnLRP's replacements (the model
 * tells which Erf nodes are GELU gates). */
export function attnLrpRules(model: OnnxModel, attention: AttnLrpAttention): ReadonlyMap<string, Rule> {
  const overrides: [string, Rule][] = [
    ['Erf', erfRule(geluErfOutputs(model))], ['Div', Div], ['LayerNormalization', LayerNormalization],
    ['Softmax', attention === 'cp' ? SoftmaxBlocked : SoftmaxRule],
    ['MatMul', attention === 'cp' ? gradientMatMul : MatMulUniform],
  ];
  return new Map<string, Rule>([...gradientRules, ...overrides]);
}
