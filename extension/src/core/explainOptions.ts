// The explain panel's Options (head fusion, discard ratio, top-k, heads layer, Chefer start) as request fields. Pure:
// the webview sends what its inputs hold (strings from number fields included); anything unset or blank keeps the
// engine's default, and the engine validates the rest and names the field if a value is out of range.
import type { ExplainMethod, ExplainRequest } from '../../../engine/protocol/index.js';

/** The LRP family (Chefer et al. 2021 and its baselines; AttnLRP), run for ViT classifiers when ticked in Options. */
export const LRP_PANEL_METHODS = ['transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'attn-lrp'] as const satisfies readonly ExplainMethod[];

export interface PanelExplainOptions {
  /** ViT: LRP methods ticked in Options (run in addition to the default ones). */
  lrp?: readonly string[];
  /** Compare view: the class to explain (blank: the top class). */
  compareClass?: number | string;
  top?: number | string;
  headFusion?: string;
  discard?: number | string;
  headsLayer?: number | string;
  /** 'default' | 'all' | 'last' | a block index. */
  cheferStart?: number | string;
  /** attn-lrp's attention rule: '' (default, cp) | 'cp' | 'attnlrp'. */
  attnLrpAttention?: string;
}

type OptionFields = Pick<ExplainRequest, 'top' | 'headFusion' | 'discard' | 'headsLayer' | 'cheferStart' | 'attnLrpAttention'>;

function num(v: number | string | undefined): number | undefined {
  if (v === undefined || (typeof v === 'string' && v.trim() === '')) return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function explainOptionFields(kind: 'vit' | 'clip', o: PanelExplainOptions = {}): OptionFields {
  const out: OptionFields = {};
  const top = num(o.top);
  // CLIP scores the texts it is given; only classifiers have a top-k.
  if (kind === 'vit') out.top = top !== undefined ? Math.max(1, Math.round(top)) : 5;
  if (o.headFusion === 'mean' || o.headFusion === 'max' || o.headFusion === 'min') out.headFusion = o.headFusion;
  const discard = num(o.discard);
  if (discard !== undefined) out.discard = discard;
  const layer = num(o.headsLayer);
  if (layer !== undefined) out.headsLayer = Math.trunc(layer);
  if (o.cheferStart === 'all' || o.cheferStart === 'last') out.cheferStart = o.cheferStart;
  else {
    const start = num(o.cheferStart);
    if (start !== undefined) out.cheferStart = Math.trunc(start);
  }
  if (kind === 'vit' && (o.attnLrpAttention === 'cp' || o.attnLrpAttention === 'attnlrp')) out.attnLrpAttention = o.attnLrpAttention;
  return out;
}

/** The methods an Explain run asks for: CLIP's four; ViT's five plus the ticked LRP methods (unknown names dropped). */
export function explainMethods(kind: 'vit' | 'clip', o: PanelExplainOptions = {}): ExplainMethod[] {
  if (kind === 'clip') return ['chefer', 'rollout', 'heads', 'distance'];
  const lrp = LRP_PANEL_METHODS.filter((m) => (o.lrp ?? []).includes(m));
  return ['rollout', 'grad-rollout', 'chefer', 'heads', 'distance', ...lrp];
}

type CompareFields = Pick<ExplainRequest, 'compare' | 'classIndex' | 'headFusion' | 'discard' | 'cheferStart' | 'attnLrpAttention'>;

/** A *Compare methods* run: every map method that applies (the engine picks them), one class (or the top one). */
export function compareRequestFields(kind: 'vit' | 'clip', o: PanelExplainOptions = {}): CompareFields {
  const { top: _top, headsLayer: _layer, ...shared } = explainOptionFields(kind, o);
  const out: CompareFields = { compare: true, ...shared };
  const c = num(o.compareClass);
  if (kind === 'vit' && c !== undefined && c >= 0) out.classIndex = Math.trunc(c);
  return out;
}
