// CLIP model folders like ../shared/reference/clip-tiny: one `model.onnx` (transformers' CLIPModel exported by torch
// 1.13 at opset 14) with inputs input_ids (int64), pixel_values, attention_mask (int64) and outputs logits_per_image,
// logits_per_text, text_embeds, image_embeds; config.json, preprocessor_config.json (CLIPImageProcessor) and the
// tokenizer files at the folder root. Text tower: q scaled before MatMul, causal + padding masks added before the
// Softmax, first-eos pooling. Vision tower: class token, pre_layrnorm, Softmax right after MatMul(q, kᵀ).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DT, GraphBuilder, type Init } from './lib/graph-builder.js';
import { cast, conv2d, dim, layerNorm, reshape, shapeVec, torchExpand, transpose, unsq } from './lib/layers.js';
import { clipEncoder, clipTextTransformer, positionIds } from './lib/clip-text.js';
import { componentSeed, writeJson, writeModel } from './sd.js';
import { tinyTokenizer, writeTokenizerFiles, type BpeTokenizer } from './tokenizer.js';

export interface ClipConfig {
  seed: number;
  text: { hidden: number; intermediate: number; layers: number; heads: number; maxPositions: number };
  vision: { hidden: number; intermediate: number; layers: number; heads: number; imageSize: number; patchSize: number };
  projectionDim: number;
  /** transformers' `initializer_factor`; the reference used 2.0 so that random towers give non-degenerate maps. */
  initializerFactor: number;
  logitScaleInit: number;
  layerNormEps: number;
  /** `root`: model.onnx at the folder root (the reference); `optimum`: onnx/model.onnx; `both`. */
  layout: 'root' | 'optimum' | 'both';
}

export function clipTinyConfig(seed = 0): ClipConfig {
  return {
    seed,
    text: { hidden: 32, intermediate: 64, layers: 2, heads: 4, maxPositions: 77 },
    vision: { hidden: 64, intermediate: 256, layers: 3, heads: 4, imageSize: 224, patchSize: 32 },
    projectionDim: 32, initializerFactor: 2.0, logitScaleInit: 2.6592, layerNormEps: 1e-5, layout: 'root',
  };
}

export function buildClipGraph(g: GraphBuilder, cfg: ClipConfig, tok: BpeTokenizer): void {
  const f = cfg.initializerFactor;
  const normal = (std: number): Init => ({ kind: 'normal', std });
  const v = cfg.vision;
  const grid = v.imageSize / v.patchSize;
  if (!Number.isInteger(grid)) throw new Error(`CLIP: image size ${v.imageSize} is not a multiple of patch size ${v.patchSize}`);
  const nPos = grid * grid + 1;
  const ids = g.input('input_ids', DT.INT64, ['text_batch', 'sequence']);
  const pixels = g.input('pixel_values', DT.FLOAT, ['image_batch', 3, v.imageSize, v.imageSize]);
  const mask = g.input('attention_mask', DT.INT64, ['text_batch', 'sequence']);

  const imagePooled = g.scope('vision_model', () => {
    const emb = g.scope('embeddings', () => {
      const b = dim(g, pixels, 0);
      const p = g.scope('patch_embedding', () => conv2d(g, cast(g, pixels, DT.FLOAT), 3, v.hidden, v.patchSize,
        { stride: v.patchSize, pad: 0, bias: false, weightInit: normal(0.02 * f) }));
      const lead = g.op1('Slice', [g.op1('Shape', [p]), g.constI64([0]), g.constI64([2]), g.constI64([0])]);
      const patches = transpose(g, reshape(g, p, g.op1('Concat', [lead, g.constI64([-1])], { axis: { i: 0 } })), [0, 2, 1]);
      const cls = torchExpand(g, g.param('class_embedding', [v.hidden], normal(Math.pow(v.hidden, -0.5) * f)), shapeVec(g, [unsq(g, b), 1, -1]));
      const tokens = g.op1('Concat', [cls, patches], { axis: { i: 1 } });
      const pos = g.scope('position_embedding', () =>
        g.op1('Gather', [g.param('weight', [nPos, v.hidden], normal(0.02 * f)), g.constant(positionIds(nPos))]));
      return g.op1('Add', [tokens, pos]);
    });
    const pre = g.scope('pre_layrnorm', () => layerNorm(g, emb, v.hidden, cfg.layerNormEps));
    const last = clipEncoder(g, pre, { ...v, layerNormEps: cfg.layerNormEps, initializerFactor: f }, []);
    const clsTok = g.op1('Gather', [last, g.scalarI64(0)], { axis: { i: 1 } });
    return g.scope('post_layernorm', () => layerNorm(g, clsTok, v.hidden, cfg.layerNormEps));
  });

  const text = clipTextTransformer(g, {
    ...cfg.text, vocabSize: tok.vocab.size, eosTokenId: tok.eosId, layerNormEps: cfg.layerNormEps, initializerFactor: f,
  }, ids, { attentionMask: mask });

  const project = (scope: string, x: string, inF: number): string => g.scope(scope, () =>
    g.op1('MatMul', [x, g.param('weight', [inF, cfg.projectionDim], normal(Math.pow(inF, -0.5) * f), { anonymous: 'MatMul' })]));
  const img = project('visual_projection', imagePooled, v.hidden);
  const txt = project('text_projection', text.pooled, cfg.text.hidden);
  const l2 = (x: string, name: string): string =>
    g.op1('Div', [x, g.op1('ReduceL2', [x], { axes: { ints: [-1] }, keepdims: { i: 1 } })], {}, name);
  const imageEmbeds = l2(img, 'image_embeds');
  const textEmbeds = l2(txt, 'text_embeds');
  const scale = g.op1('Exp', [g.param('logit_scale', [], { kind: 'fill', value: cfg.logitScaleInit })]);
  const lpt = g.op1('Mul', [g.op1('MatMul', [textEmbeds, transpose(g, imageEmbeds, [1, 0])]), scale], {}, 'logits_per_text');
  g.op1('Transpose', [lpt], { perm: { ints: [1, 0] } }, 'logits_per_image');
  g.output('logits_per_image', DT.FLOAT, ['image_batch', 'text_batch']);
  g.output('logits_per_text', DT.FLOAT, ['text_batch', 'image_batch']);
  g.output('text_embeds', DT.FLOAT, ['text_batch', cfg.projectionDim]);
  g.output('image_embeds', DT.FLOAT, ['image_batch', cfg.projectionDim]);
}

/** Writes model.onnx, config.json, preprocessor_config.json and tokenizer files into `outDir`. */
export function buildClipFolder(outDir: string, cfg: ClipConfig, tok: BpeTokenizer = tinyTokenizer()): { dir: string; parameterCount: number } {
  mkdirSync(outDir, { recursive: true });
  const g = new GraphBuilder({ seed: componentSeed(cfg.seed, 'clip') });
  buildClipGraph(g, cfg, tok);
  const count = g.parameterCount;
  const model = g.finish();
  if (cfg.layout !== 'optimum') writeModel(join(outDir, 'model.onnx'), model);
  if (cfg.layout !== 'root') writeModel(join(outDir, 'onnx', 'model.onnx'), model);
  writeTokenizerFiles(outDir, tok, cfg.text.maxPositions);
  writeJson(join(outDir, 'config.json'), {
    architectures: ['CLIPModel'], initializer_factor: cfg.initializerFactor, logit_scale_init_value: cfg.logitScaleInit,
    model_type: 'clip', projection_dim: cfg.projectionDim,
    text_config: {
      hidden_size: cfg.text.hidden, intermediate_size: cfg.text.intermediate, model_type: 'clip_text_model',
      num_attention_heads: cfg.text.heads, num_hidden_layers: cfg.text.layers, max_position_embeddings: cfg.text.maxPositions,
      vocab_size: tok.vocab.size, bos_token_id: tok.bosId, eos_token_id: tok.eosId, pad_token_id: 1, hidden_act: 'quick_gelu',
      layer_norm_eps: cfg.layerNormEps,
    },
    vision_config: {
      hidden_size: cfg.vision.hidden, intermediate_size: cfg.vision.intermediate, model_type: 'clip_vision_model',
      num_attention_heads: cfg.vision.heads, num_hidden_layers: cfg.vision.layers, image_size: cfg.vision.imageSize, patch_size: cfg.vision.patchSize,
      hidden_act: 'quick_gelu', layer_norm_eps: cfg.layerNormEps,
    },
    torch_dtype: 'float32', transformers_version: '4.33.0.dev0',
  });
  writeJson(join(outDir, 'preprocessor_config.json'), {
    crop_size: { height: cfg.vision.imageSize, width: cfg.vision.imageSize }, do_center_crop: true, do_convert_rgb: true,
    do_normalize: true, do_rescale: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor',
    image_mean: [0.48145466, 0.4578275, 0.40821073], image_processor_type: 'CLIPImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, rescale_factor: 1 / 255,
    size: { shortest_edge: cfg.vision.imageSize },
  });
  return { dir: outDir, parameterCount: count };
}
