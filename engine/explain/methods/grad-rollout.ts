// Gradient attention rollout (vit-explain's grad_rollout) of each explained class, per discard ratio.
import { ExplainError } from '../errors.js';
import { gradientRollout, softmaxInputGradient } from '../rollout.js';
import { asList, type GradientMethod } from './method.js';

export const gradRollout: GradientMethod = {
  name: 'grad-rollout',
  readsCls: true,
  needs: 'gradients',
  run({ options, layout, result, targets }) {
    const variant = options.gradRollout ?? 'vit-explain';
    for (const { about, grads: g } of targets) {
      if (!('classIndex' in about)) throw new ExplainError('internal: gradient rollout explains classes', { kind: 'internal' });
      const gradsForRollout = variant === 'vit-explain' ? g.vision.map((a, l) => softmaxInputGradient(a, g.visionGrads[l])) : g.visionGrads;
      for (const discard of asList(options.discard, 0.9)) {
        const map = gradientRollout(g.vision, gradsForRollout, {
          discardRatio: discard, normalization: options.rolloutNormalization ?? 'vit-explain',
          pairing: variant === 'vit-explain' ? 'vit-explain' : 'aligned', grid: layout.grid, prefixTokens: layout.prefixTokens,
        });
        result.gradRollout.push({ classIndex: about.classIndex, label: about.label, discard, variant, map });
      }
    }
  },
};
