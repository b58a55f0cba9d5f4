// Attention rollout (Abnar & Zuidema, as vit-explain implements it), for every head fusion × discard ratio asked.
import { attentionRollout, type HeadFusion } from '../rollout.js';
import { asList, type AttentionMethod } from './method.js';

export const rollout: AttentionMethod = {
  name: 'rollout',
  readsCls: true,
  needs: 'attention',
  async run({ model, options, vision, layout, fwd, result }) {
    const normalization = options.rolloutNormalization ?? 'vit-explain';
    fwd.fused ??= await model.fuseHeads(vision);
    for (const fusion of asList<HeadFusion>(options.headFusion, 'max')) {
      for (const discard of asList(options.discard, 0.9)) {
        const map = attentionRollout(vision, {
          headFusion: fusion, discardRatio: discard, normalization, grid: layout.grid, prefixTokens: layout.prefixTokens, fused: fwd.fused?.[fusion],
        });
        result.rollout.push({ fusion, discard, normalization, map });
      }
    }
  },
};
