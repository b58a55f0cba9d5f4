// Files of an explanation: PNG overlays on the image the model saw, a head grid, the distance-vs-depth plot,
// explain.json (scores and every map as nested arrays of the patch grid) and, with a trace folder, the raw .npy
// arrays named as the CLI documents them:
//   attentions_layer<k>.npy [heads, tokens, tokens]   (CLIP text: attentions_text_layer<k>.npy [texts, heads, seq, seq])
//   rollout_<fusion>_<discard>.npy [grid]             grad_rollout_<class>.npy [grid] (…_<discard> when several)
//   chefer_<class>.npy [grid] (ViT)                   chefer_image_<t>.npy [grid], chefer_text_<t>.npy [seq, seq] (CLIP)
// PNGs: input.png, heads_layer<k>.png, rollout_<fusion>_<discard>.png, grad_rollout_<class>.png, chefer_<class>.png or
// chefer_image_<t>.png + chefer_text_<t>.png (token strip), distance.png.
//   distance.npy [layers, heads]
// LRP family (methods/lrp-run.ts): transformer_attribution_<class>, partial_lrp_<class>, raw_attention_<class>,
// gradcam_<class>, attn_lrp_<class> (.png overlay, .npy [grid] in the trace folder); attn-lrp also writes
// attn_lrp_<class>_pixels.npy [H, W] (LXT's heatmap) and draws its PNG on a scale symmetric about 0.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeNpy } from '../io/npy.js';
import { overlayHeatmap, renderGrid, renderLineChart, encodePng, type RgbImage, type Normalization } from '../render/index.js';
import type { ExplainResult } from '../explain/api.js';
import { gridToNested, type GridMap } from '../explain/tensor.js';
import { renderTokenRelevance } from '../explain/text-plot.js';
import { lrpFileStem } from '../explain/methods/lrp-run.js';

/** Python's str(float) for the ratios in file names: 0 → "0.0", 0.9 → "0.9". */
export function formatRatio(r: number): string {
  return Number.isInteger(r) ? r.toFixed(1) : String(r);
}

function toMap(g: GridMap): { width: number; height: number; data: Float32Array } {
  return { width: g.width, height: g.height, data: g.data };
}

async function overlayPng(base: RgbImage, g: GridMap, normalize: Normalization): Promise<Buffer> {
  // turbo is the perceptual cousin of the JET colormap vit-explain and the Chefer notebooks draw with.
  return encodePng(overlayHeatmap(base, toMap(g), { colormap: 'turbo', normalize, resample: 'bilinear', opacity: 0.5 }));
}

export interface WrittenFiles {
  outDir: string;
  files: string[];
  traceFiles: string[];
}

/** The JSON view of a result: plain numbers and nested arrays only. */
export function explainJson(result: ExplainResult): Record<string, unknown> {
  return {
    model: result.model,
    image: { height: result.image.height, width: result.image.width, originalSize: result.image.originalSize },
    classes: result.classes,
    similarities: result.similarities,
    methods: {
      heads: result.heads && { layer: result.heads.layer, maps: result.heads.maps.map(gridToNested) },
      rollout: result.rollout.map((r) => ({ fusion: r.fusion, discard: r.discard, normalization: r.normalization, map: gridToNested(r.map) })),
      gradRollout: result.gradRollout.map((r) => ({ classIndex: r.classIndex, label: r.label, discard: r.discard, variant: r.variant, map: gridToNested(r.map) })),
      chefer: result.chefer.map((c) => ({
        start: c.start, classIndex: c.classIndex, label: c.label, textIndex: c.textIndex, text: c.text,
        image: gridToNested(c.image), tokens: c.tokens,
      })),
      lrp: result.lrp.map((r) => ({ method: r.method, classIndex: r.classIndex, label: r.label, startLayer: r.startLayer, attention: r.attention, map: gridToNested(r.map) })),
      distance: result.distance && { unit: 'pixels', patch: result.distance.patch, values: result.distance.values },
    },
    skipped: result.skipped,
    notes: result.notes,
    timingsMs: result.timings,
  };
}

/** Creates an explain job's output folder, with a writer that lists what it writes, and writes the input image first
 *  (input.png, the image as the model saw it). */
export async function startOutputFolder(outDirIn: string, image: { width: number; height: number; rgb: Uint8Array }): Promise<{
  outDir: string; files: string[]; base: RgbImage; put: (name: string, data: Buffer | string) => void;
}> {
  const outDir = resolve(outDirIn);
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const put = (name: string, data: Buffer | string): void => {
    writeFileSync(join(outDir, name), data);
    files.push(name);
  };
  const base: RgbImage = { width: image.width, height: image.height, data: image.rgb };
  put('input.png', await encodePng(base));
  return { outDir, files, base, put };
}

export async function writeExplainOutputs(result: ExplainResult, outDirIn: string, traceDirIn?: string): Promise<WrittenFiles> {
  const { outDir, files, base, put } = await startOutputFolder(outDirIn, result.image);

  if (result.heads) {
    const tiles = [];
    for (let h = 0; h < result.heads.maps.length; h++) {
      tiles.push({ image: overlayHeatmap(base, toMap(result.heads.maps[h]), { colormap: 'turbo', normalize: 'minmax', resample: 'nearest', opacity: 0.6 }), label: `head ${h}` });
    }
    const { png } = await renderGrid(tiles, { title: `CLS attention, layer ${result.heads.layer}` });
    put(`heads_layer${result.heads.layer}.png`, png);
  }
  for (const r of result.rollout) put(`rollout_${r.fusion}_${formatRatio(r.discard)}.png`, await overlayPng(base, r.map, 'max'));
  const gradDiscards = new Set(result.gradRollout.map((g) => g.discard));
  const gradName = (c: number, d: number): string => (gradDiscards.size > 1 ? `grad_rollout_${c}_${formatRatio(d)}` : `grad_rollout_${c}`);
  for (const g of result.gradRollout) put(`${gradName(g.classIndex, g.discard)}.png`, await overlayPng(base, g.map, 'max'));
  for (const c of result.chefer) {
    const name = c.textIndex !== undefined ? `chefer_image_${c.textIndex}` : `chefer_${c.classIndex}`;
    put(`${name}.png`, await overlayPng(base, c.image, 'minmax'));
    if (c.textIndex !== undefined && c.tokens && c.tokens.length > 0) {
      put(`chefer_text_${c.textIndex}.png`, await renderTokenRelevance(c.text ?? '', c.tokens, `text relevance: "${c.text ?? ''}" (start layer ${c.start})`));
    }
  }
  for (const r of result.lrp) {
    // attn-lrp is signed: a scale symmetric about 0 (LXT's heatmap / max|heatmap|) keeps zero relevance mid-scale. It
    // draws the per-patch map: with LRP-0 at the patch convolution the pixel heatmap is dominated by a few pixels.
    const m = r.method === 'attn-lrp' ? r.map.data.reduce((a, v) => Math.max(a, Math.abs(v)), 0) || 1 : 0;
    put(`${lrpFileStem(r)}.png`, await overlayPng(base, r.map, r.method === 'attn-lrp' ? { min: -m, max: m } : 'minmax'));
  }
  if (result.distance) {
    const heads = result.distance.values[0]?.length ?? 0;
    const series = Array.from({ length: heads }, (_, h) => ({
      name: `head ${h}`, points: result.distance!.values.map((row, l) => [l, row[h]] as const), markers: true,
    }));
    put('distance.png', await renderLineChart({
      series, title: 'Mean attention distance', xLabel: 'layer (depth)', yLabel: 'distance (pixels)', integerX: true,
    }));
  }
  put('explain.json', JSON.stringify(explainJson(result), null, 1));

  const traceFiles: string[] = [];
  if (traceDirIn !== undefined) {
    const traceDir = resolve(traceDirIn);
    mkdirSync(traceDir, { recursive: true });
    const npy = (name: string, data: Float32Array, shape: number[]): void => {
      writeNpy(join(traceDir, name), data, shape);
      traceFiles.push(name);
    };
    result.attentions.forEach((a, k) => npy(`attentions_layer${k}.npy`, a.data, [a.heads, a.queries, a.keys]));
    const textAtt = result.textAttentions;
    if (textAtt && textAtt.length > 0) {
      for (let k = 0; k < textAtt[0].length; k++) {
        const first = textAtt[0][k];
        const size = first.data.length;
        const all = new Float32Array(textAtt.length * size);
        textAtt.forEach((perText, t) => all.set(perText[k].data, t * size));
        npy(`attentions_text_layer${k}.npy`, all, [textAtt.length, first.heads, first.queries, first.keys]);
      }
    }
    for (const r of result.rollout) npy(`rollout_${r.fusion}_${formatRatio(r.discard)}.npy`, r.map.data, [r.map.height, r.map.width]);
    for (const g of result.gradRollout) npy(`${gradName(g.classIndex, g.discard)}.npy`, g.map.data, [g.map.height, g.map.width]);
    for (const c of result.chefer) {
      if (c.textIndex !== undefined) {
        npy(`chefer_image_${c.textIndex}.npy`, c.image.data, [c.image.height, c.image.width]);
        if (c.textRelevance) npy(`chefer_text_${c.textIndex}.npy`, c.textRelevance.data, [c.textRelevance.size, c.textRelevance.size]);
      } else {
        npy(`chefer_${c.classIndex}.npy`, c.image.data, [c.image.height, c.image.width]);
      }
    }
    for (const r of result.lrp) {
      npy(`${lrpFileStem(r)}.npy`, r.map.data, [r.map.height, r.map.width]);
      if (r.pixels) npy(`${lrpFileStem(r)}_pixels.npy`, r.pixels.data, [r.pixels.height, r.pixels.width]);
    }
    if (result.distance) {
      const v = result.distance.values;
      npy('distance.npy', Float32Array.from(v.flat()), [v.length, v[0]?.length ?? 0]);
    }
  }
  return { outDir, files, traceFiles };
}
