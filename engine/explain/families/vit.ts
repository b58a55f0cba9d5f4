// ViT-like image classifiers and backbones (ViT, DeiT, DINO, DINOv2 with registers): the image is the only input,
// the score is the class logits (absent on a backbone), and the gradient methods explain one class per run. A
// classifier asked for gradients runs its forward through the two-phase VJP: the same pass gives logits and
// attention maps and keeps the residuals, so each class then costs one backward run.
import { LRP_METHODS, type LrpMethod } from '../methods/lrp-run.js';
import { valueInfoType } from '../../onnx/graph.js';
import { ExplainError } from '../errors.js';
import type { ExplainFamily, GradientTarget } from './family.js';
import type { AttentionGradients } from '../gradients.js';
import type { ForwardResult } from '../model.js';

function labelOf(labels: readonly string[] | undefined, c: number): string {
  return labels?.[c] ?? `class_${c}`;
}

export const vit: ExplainFamily = {
  name: 'vit',
  scoreOutput: 'logits',
  missingScoreHint: 'it is a backbone without a classification head (DINO-style), so there is no class to explain',
  scores: 'classes',
  textInputs: [],
  cheferStart: 'all',

  loadTokenizer: async () => undefined,

  checkOptions(model, { texts }) {
    if (texts.length > 0) throw new ExplainError(`texts are only used with CLIP models; ${model.info.dir} is a ${model.info.modelType} image model`, { field: 'texts' });
  },

  staticClassCount(model) {
    if (!model.hasScores) return undefined;
    const out = model.onnx.proto.graph?.output.find((o) => o.name === 'logits');
    const dims = out ? valueInfoType(out)?.dims : undefined;
    const last = dims?.[dims.length - 1];
    return typeof last === 'number' ? last : model.info.labels?.length;
  },

  addTextFeeds: () => undefined,

  readScores: (_model, _out, scores) => ({ logits: Float32Array.from(scores) }),

  inapplicable(model) {
    if (model.hasScores) return [];
    const reason = `${model.info.onnxPath} has no 'logits' output (a backbone without classification head, e.g. DINO), so there is no class score to differentiate`;
    return [['grad-rollout', reason], ['chefer', reason], ...LRP_METHODS.map((m): [LrpMethod, string] => [m, reason])];
  },

  async prepare(model, gradients, image, wantGradients) {
    if (model.hasScores && wantGradients) await gradients.prepareClassForward(image);
    else await model.ready();
  },

  async forward(model, gradients, image, tokenized, wantGradients) {
    const targets = (classes: readonly number[], grads: AttentionGradients[]): GradientTarget[] =>
      grads.map((g, i) => ({ about: { classIndex: classes[i], label: labelOf(model.info.labels, classes[i]) }, grads: g }));
    const noLogits = (fwd: ForwardResult): void => {
      if (!fwd.logits) throw new ExplainError('internal: no logits', { kind: 'internal' });
    };
    if (model.hasScores && wantGradients) {
      const classForward = await gradients.classForward(image);
      const fwd: ForwardResult = { logits: classForward.logits, vision: classForward.vision };
      return {
        fwd,
        gradients: async (classes) => {
          noLogits(fwd);
          const grads: AttentionGradients[] = [];
          for (const c of classes) grads.push(await classForward.gradients(c));
          return targets(classes, grads);
        },
      };
    }
    const fwd = await model.forward(image, tokenized);
    return {
      fwd,
      gradients: async (classes) => {
        noLogits(fwd);
        return targets(classes, await gradients.forClasses(image, classes));
      },
    };
  },
};
