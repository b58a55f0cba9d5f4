// Per-head CLS attention maps of one layer (DINO's figure).
import { ExplainError } from '../errors.js';
import { clsAttentionMaps } from '../heads.js';
import type { AttentionMethod } from './method.js';

export const heads: AttentionMethod = {
  name: 'heads',
  readsCls: true,
  needs: 'attention',
  run({ options, vision, layout, result }) {
    const L = vision.length;
    const requested = options.headsLayer ?? -1;
    const layer = requested < 0 ? L + requested : requested;
    if (!Number.isInteger(layer) || layer < 0 || layer >= L) throw new ExplainError(`heads layer ${requested} is out of range: the model has ${L} layers (use 0..${L - 1}, or -${L}..-1 from the end)`, { field: 'headsLayer' });
    result.heads = { layer, maps: clsAttentionMaps(vision[layer], layout.grid, layout.prefixTokens) };
  },
};
