// CLIP: an image and texts in, logits_per_image out. The gradient methods explain each (image, text) pair as the
// Chefer notebook's `interpret` does (gradients.ts: forTexts); there are no classes, so gradient rollout does not
// apply. Chefer starts at the last layer by default, as that notebook does.
import { LRP_METHODS } from '../methods/lrp-run.js';
import { ort } from '../../onnx/session.js';
import { ClipTokenizer } from '../../text/tokenizer.js';
import { ExplainError } from '../errors.js';
import { siteItem } from '../sites.js';
import type { ExplainFamily, GradientTarget } from './family.js';

export const clip: ExplainFamily = {
  name: 'clip',
  scoreOutput: 'logits_per_image',
  missingScoreHint: 'export the full CLIPModel',
  scores: 'texts',
  textInputs: ['input_ids', 'attention_mask'],
  cheferStart: 'last',

  loadTokenizer: (dir) => ClipTokenizer.fromFolder(dir),

  checkOptions(_model, { classIndex }) {
    if (classIndex !== undefined) throw new ExplainError('classIndex applies to image classifiers; for CLIP pass texts', { field: 'classIndex' });
  },

  staticClassCount: () => undefined,

  addTextFeeds(model, feeds, texts) {
    // CLIP needs at least one text; '' is used for vision-only runs.
    const tok = texts ?? model.tokenize(['']);
    const n = tok.texts.length;
    feeds.input_ids = new ort.Tensor('int64', tok.ids, [n, tok.length]);
    feeds.attention_mask = new ort.Tensor('int64', tok.mask, [n, tok.length]);
  },

  readScores(model, out, scores, texts) {
    const count = texts?.texts.length ?? 0;
    const text = Array.from({ length: count }, (_, t) => model.textSites.map((s) => siteItem(out[s.probs], s, t)));
    return { similarities: Float32Array.from(scores.subarray(0, count)), text };
  },

  inapplicable(_model, tokenized) {
    const out: ReturnType<ExplainFamily['inapplicable']> = [];
    if (!tokenized) out.push(['chefer', 'CLIP relevance explains an image–text pair: give at least one text']);
    out.push(['grad-rollout', 'gradient rollout explains a class logit; CLIP has no classes (use chefer with texts)']);
    for (const m of LRP_METHODS) out.push([m, 'the LRP methods explain a class logit of an image classifier (ViT/DeiT); for CLIP use chefer with texts']);
    return out;
  },

  prepare: async (model) => model.ready(),

  async forward(model, gradients, image, tokenized) {
    const fwd = await model.forward(image, tokenized);
    return {
      fwd,
      gradients: async (): Promise<GradientTarget[]> => {
        if (!tokenized) throw new ExplainError('internal: CLIP gradients without texts', { kind: 'internal' });
        const grads = await gradients.forTexts(image, tokenized);
        return grads.map((g, t) => ({
          about: { textIndex: t, text: tokenized.texts[t] }, grads: g,
          text: { tokens: tokenized.tokens[t], eot: tokenized.eot[t], tokenText: (token) => model.tokenizer?.tokenText(token) ?? token },
        }));
      },
    };
  },
};
