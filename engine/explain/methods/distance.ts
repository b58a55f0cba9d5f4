// Mean attention distance per layer and head (the ViT paper's figure 7); reads every token pair, no CLS needed.
import { meanAttentionDistances } from '../distance.js';
import type { AttentionMethod } from './method.js';

export const distance: AttentionMethod = {
  name: 'distance',
  readsCls: false,
  needs: 'attention',
  run({ model, vision, layout, result }) {
    result.distance = { values: meanAttentionDistances(vision, layout.grid, model.info.patch, layout.prefixTokens), patch: model.info.patch };
  },
};
