// The explain panel's Options (head fusion, discard ratio, top-k, heads layer, Chefer start) as request fields. Pure:
// the webview sends what its inputs hold (strings from number fields included); anything unset or blank keeps the
// engine's default, and the engine validates the rest and names the field if a value is out of range.
import type { ExplainRequest } from '../../../engine/protocol/index.js';

export interface PanelExplainOptions {
  top?: number | string;
  headFusion?: string;
  discard?: number | string;
  headsLayer?: number | string;
  /** 'default' | 'all' | 'last' | a block index. */
  cheferStart?: number | string;
}

type OptionFields = Pick<ExplainRequest, 'top' | 'headFusion' | 'discard' | 'headsLayer' | 'cheferStart'>;

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
  return out;
}
