// The LRP family (Chefer, Gur, Wolf 2021, Transformer-Explainability) as entries of the method table:
// transformer-attribution (LRP relevance of each attention map × its gradient, rolled out from the start layer),
// partial-lrp (the last layer's relevance), raw-attention and gradcam (that repository's baselines). The relevance
// pass (lrp/) runs once per explained class and is shared by the two methods that read it.
// attn-lrp (Achtibat et al. 2024, the LXT library): one modified backward pass to the pixels (lrp/attn-*.ts); its map
// is the pixel relevance summed per patch, with LXT's full-resolution heatmap alongside.
import type { LayerTensor } from '../tensor.js';
import { resolveStartLayer } from '../chefer.js';
import { clsRowToGrid } from '../rollout.js';
import type { GridMap } from '../tensor.js';
import { ExplainError } from '../errors.js';
import { attentionGradCam, partialLrp, rawAttention, transformerAttribution } from './lrp-maps.js';
import type { LrpMethod } from './lrp-run.js';
import type { AttentionMethod, GradientMethod, GradientMethodContext, MethodContext } from './method.js';
import { poolToGrid } from '../lrp/attn-engine.js';

/** Relevance of every attention map per class, computed once per explain run (keyed by the run's result object). */
const relevanceCache = new WeakMap<object, Map<number, Promise<LayerTensor[]>>>();

function relevanceOf(ctx: MethodContext, classIndex: number): Promise<LayerTensor[]> {
  let perClass = relevanceCache.get(ctx.result);
  if (!perClass) relevanceCache.set(ctx.result, (perClass = new Map()));
  let p = perClass.get(classIndex);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      await ctx.gradients.lrp.prepare(ctx.image);
      const cams = (await ctx.gradients.lrp.relevance(ctx.image, classIndex)).cams;
      ctx.result.timings.lrp = (ctx.result.timings.lrp ?? 0) + performance.now() - t0;
      return cams;
    })();
    perClass.set(classIndex, p);
  }
  return p;
}

/** A patch row (one value per patch) as a grid map. */
function rowToGrid(ctx: MethodContext, r: Float64Array): GridMap {
  const { layout } = ctx;
  const padded = new Float64Array(layout.prefixTokens + r.length);
  padded.set(r, layout.prefixTokens);
  return clsRowToGrid(padded, layout.grid, layout.prefixTokens, false);
}

function lrpMethod(name: LrpMethod, row: (ctx: GradientMethodContext, classIndex: number, g: { vision: LayerTensor[]; visionGrads: LayerTensor[] }) => Promise<Float64Array> | Float64Array): GradientMethod {
  return {
    name,
    readsCls: true,
    needs: 'gradients',
    async run(ctx) {
      const { result, targets } = ctx;
      const grid = (r: Float64Array): GridMap => rowToGrid(ctx, r);
      for (const { about, grads } of targets) {
        if (!('classIndex' in about)) throw new ExplainError(`internal: ${name} explains classes`, { kind: 'internal' });
        const startLayer = name === 'transformer-attribution' ? resolveStartLayer(ctx.options.cheferStart ?? 'all', ctx.vision.length) : undefined;
        result.lrp.push({
          method: name, classIndex: about.classIndex, label: about.label,
          map: grid(await row(ctx, about.classIndex, grads)),
          ...(startLayer !== undefined ? { startLayer } : {}),
        });
      }
    },
  };
}

export const transformerAttributionMethod = lrpMethod('transformer-attribution', async (ctx, c, g) =>
  transformerAttribution(await relevanceOf(ctx, c), g.visionGrads, resolveStartLayer(ctx.options.cheferStart ?? 'all', ctx.vision.length), ctx.layout.prefixTokens));

/** An LRP-family method that reads no attention gradients (partial-lrp: the relevance session runs its own forward;
 * raw-attention: the forward's attention), so it runs with the attention methods and skips the gradient pass
 * (a forward with residuals and a backward) that it would otherwise pay for without using. */
function lrpAttentionMethod(name: LrpMethod, row: (ctx: MethodContext, classIndex: number) => Promise<Float64Array> | Float64Array): AttentionMethod {
  return {
    name,
    readsCls: true,
    needs: 'attention',
    async run(ctx) {
      for (const { classIndex, label } of ctx.explained) {
        ctx.result.lrp.push({ method: name, classIndex, label, map: rowToGrid(ctx, await row(ctx, classIndex)) });
      }
    },
  };
}

export const partialLrpMethod = lrpAttentionMethod('partial-lrp', async (ctx, c) => partialLrp(await relevanceOf(ctx, c), ctx.layout.prefixTokens));
export const rawAttentionMethod = lrpAttentionMethod('raw-attention', (ctx) => rawAttention(ctx.vision, ctx.layout.prefixTokens));
export const gradCamMethod = lrpMethod('gradcam', (ctx, _c, g) => attentionGradCam(g.vision, g.visionGrads, ctx.layout.prefixTokens));

/** attn-lrp reads no attention gradients (its own backward goes to the pixels), so it runs with the attention methods
 * and skips the gradient pass the other LRP methods share. */
export const attnLrpMethod: AttentionMethod = {
  name: 'attn-lrp',
  readsCls: false,
  needs: 'attention',
  async run(ctx) {
    const { layout, result, image } = ctx;
    const attention = ctx.options.attnLrpAttention ?? 'cp';
    await ctx.gradients.attnLrp.prepare(image, attention);
    for (const { classIndex, label } of ctx.explained) {
      const r = await ctx.gradients.attnLrp.relevance(image, classIndex, attention);
      result.lrp.push({
        method: 'attn-lrp', classIndex, label, attention,
        map: poolToGrid(r.heatmap, layout.grid.height, layout.grid.width), pixels: r.heatmap,
      });
    }
  },
};
