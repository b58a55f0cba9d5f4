// Chefer et al.'s relevance of each explained score: the image relevance of the CLS row, and for CLIP also the text
// relevance of the EOT row over the text tokens (as the notebook's show_heatmap_on_text).
import type { CheferResult } from '../api.js';
import { cheferRelevanceMatrix, cheferRelevanceRow, resolveStartLayer } from '../chefer.js';
import { clsRowToGrid } from '../rollout.js';
import type { GradientMethod } from './method.js';

export const chefer: GradientMethod = {
  name: 'chefer',
  readsCls: true,
  needs: 'gradients',
  run({ model, options, vision, layout, result, targets }) {
    const start = options.cheferStart ?? model.familyRules.cheferStart;
    resolveStartLayer(start, vision.length);
    for (const { about, grads: g, text } of targets) {
      const row = cheferRelevanceRow(g.vision, g.visionGrads, start, 0);
      const out: CheferResult = { start, ...about, image: clsRowToGrid(row, layout.grid, layout.prefixTokens, false) };
      if (text && g.text && g.textGrads && g.text.length > 0) {
        const n = g.text[0].queries;
        const r = cheferRelevanceMatrix(g.text, g.textGrads, start);
        const raw: number[] = [];
        for (let i = 1; i < text.eot; i++) raw.push(r[text.eot * n + i]);
        const sum = raw.reduce((a, b) => a + b, 0);
        out.tokens = text.tokens.slice(1, text.eot).map((token, i) => ({
          token: text.tokenText(token), score: raw[i], normalized: sum !== 0 ? raw[i] / sum : 0,
        }));
        out.textRelevance = { size: n, data: Float32Array.from(r) };
      }
      result.chefer.push(out);
    }
  },
};
