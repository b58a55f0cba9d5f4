// ViT model folders in the transformers.js / Optimum layout (config.json, preprocessor_config.json, onnx/model.onnx),
// graphs as torch 1.13 exports transformers' ViT at opset 14 (compare ../shared/reference/vit-tiny):
// attention is MatMul(Q, Kᵀ) → Div(√d) → Softmax → MatMul(·, V) on 4-D [b, heads, seq, d] tensors, nodes named
// `/vit/encoder/layer.{i}/attention/attention/Softmax`. Variant `dino`: ViTModel without head (last_hidden_state).
import { mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { DT, GraphBuilder, type Init } from './lib/graph-builder.js';
import { conv2d, dim, geluErf, layerNorm, linear, reshape, shapeVec, torchExpand, transpose, unsq, ZEROS } from './lib/layers.js';
import { componentSeed, writeJson, writeModel } from './sd.js';

export interface VitConfig {
  seed: number;
  variant: 'classifier' | 'dino';
  imageSize: number;
  patchSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  numLabels: number;
  layerNormEps: number;
  /**
   * Std of the truncated-normal init. transformers' default is 0.02; the reference tiny ViT used 0.15 because at 0.02
   * a random 64-wide ViT attends almost uniformly, and rollout / attention-distance maps carry no structure.
   */
  initializerRange: number;
  /** `optimum`: onnx/model.onnx (transformers.js); `root`: model.onnx at the folder root (the reference); `both`. */
  layout: 'optimum' | 'root' | 'both';
}

export function vitTinyConfig(seed = 0): VitConfig {
  return {
    seed, variant: 'classifier', imageSize: 224, patchSize: 16, hidden: 64, layers: 4, heads: 4, intermediate: 256,
    numLabels: 10, layerNormEps: 1e-12, initializerRange: 0.15, layout: 'optimum',
  };
}

/** ViT-B/16 sizes (86 M parameters) for benchmarks. */
export function vitB16Config(seed = 0): VitConfig {
  return {
    seed, variant: 'classifier', imageSize: 224, patchSize: 16, hidden: 768, layers: 12, heads: 12, intermediate: 3072,
    numLabels: 1000, layerNormEps: 1e-12, initializerRange: 0.02, layout: 'optimum',
  };
}

export function buildVitGraph(g: GraphBuilder, cfg: VitConfig): void {
  const tn = (std: number): Init => ({ kind: 'truncNormal', std });
  const W = tn(cfg.initializerRange);
  const nPatches = (cfg.imageSize / cfg.patchSize) ** 2;
  if (!Number.isInteger(nPatches)) throw new Error(`ViT: image size ${cfg.imageSize} is not a multiple of patch size ${cfg.patchSize}`);
  const d = cfg.hidden / cfg.heads;
  if (!Number.isInteger(d)) throw new Error(`ViT: hidden ${cfg.hidden} is not divisible by ${cfg.heads} heads`);
  const pixels = g.input('pixel_values', DT.FLOAT, ['batch', 3, cfg.imageSize, cfg.imageSize]);

  const body = (): string => {
    const emb = g.scope('embeddings', () => {
      const b = dim(g, pixels, 0);
      const patches = g.scope('patch_embeddings', () => {
        const p = g.scope('projection', () => conv2d(g, pixels, 3, cfg.hidden, cfg.patchSize,
          { stride: cfg.patchSize, pad: 0, weightInit: W, biasInit: ZEROS }));
        const lead = g.op1('Slice', [g.op1('Shape', [p]), g.constI64([0]), g.constI64([2]), g.constI64([0])]);
        const flat = reshape(g, p, g.op1('Concat', [lead, g.constI64([-1])], { axis: { i: 0 } }));
        return transpose(g, flat, [0, 2, 1]);
      });
      const cls = torchExpand(g, g.param('cls_token', [1, 1, cfg.hidden], W), shapeVec(g, [unsq(g, b), -1, -1]));
      const tokens = g.op1('Concat', [cls, patches], { axis: { i: 1 } });
      return g.op1('Add', [tokens, g.param('position_embeddings', [1, nPatches + 1, cfg.hidden], W)]);
    });
    let h = emb;
    g.scope('encoder', () => {
      for (let l = 0; l < cfg.layers; l++) {
        h = g.scope(`layer.${l}`, () => vitLayer(g, h, cfg, W));
      }
    });
    return g.scope('layernorm', () => layerNorm(g, h, cfg.hidden, cfg.layerNormEps, cfg.variant === 'dino' ? 'last_hidden_state' : undefined));
  };

  if (cfg.variant === 'dino') {
    body();
    g.output('last_hidden_state', DT.FLOAT, ['batch', nPatches + 1, cfg.hidden]);
    return;
  }
  const last = g.scope('vit', body);
  const clsTok = g.op1('Gather', [last, g.scalarI64(0)], { axis: { i: 1 } });
  g.scope('classifier', () => {
    const w = g.param('weight', [cfg.numLabels, cfg.hidden], W);
    const b = g.param('bias', [cfg.numLabels], ZEROS);
    g.op1('Gemm', [clsTok, w, b], { alpha: { f: 1 }, beta: { f: 1 }, transB: { i: 1 } }, 'logits');
  });
  g.output('logits', DT.FLOAT, ['batch', cfg.numLabels]);
}

/** ViTLayer: layernorm_before → ViTSelfAttention → output.dense → residual; layernorm_after → MLP (gelu) → residual. */
function vitLayer(g: GraphBuilder, x: string, cfg: VitConfig, W: Init): string {
  const d = cfg.hidden / cfg.heads;
  const n1 = g.scope('layernorm_before', () => layerNorm(g, x, cfg.hidden, cfg.layerNormEps));
  const attnOut = g.scope('attention', () => {
    const ctx = g.scope('attention', () => {
      const proj = (name: string): string => g.scope(name, () => linear(g, n1, cfg.hidden, cfg.hidden, { weightInit: W, biasInit: ZEROS }));
      const split = (t: string): string => {
        const b = dim(g, t, 0);
        const s = dim(g, t, 1);
        return reshape(g, t, shapeVec(g, [unsq(g, b), unsq(g, s), cfg.heads, d]));
      };
      const q = proj('query');
      const k = proj('key');
      const kT = split(k);
      const v = proj('value');
      const v4 = transpose(g, split(v), [0, 2, 1, 3]);
      const q4 = transpose(g, split(q), [0, 2, 1, 3]);
      // torch fuses permute(0,2,1,3) and transpose(-1,-2) of the keys into one Transpose(0,2,3,1).
      const scores = g.op1('MatMul', [q4, transpose(g, kT, [0, 2, 3, 1])]);
      const probs = g.op1('Softmax', [g.op1('Div', [scores, g.scalarF32(Math.sqrt(d))])], { axis: { i: -1 } });
      const c = transpose(g, g.op1('MatMul', [probs, v4]), [0, 2, 1, 3]);
      const b = dim(g, c, 0);
      const s = dim(g, c, 1);
      return reshape(g, c, shapeVec(g, [unsq(g, b), unsq(g, s), cfg.hidden]));
    });
    return g.scope('output', () => g.scope('dense', () => linear(g, ctx, cfg.hidden, cfg.hidden, { weightInit: W, biasInit: ZEROS })));
  });
  const h1 = g.op1('Add', [attnOut, x]);
  const n2 = g.scope('layernorm_after', () => layerNorm(g, h1, cfg.hidden, cfg.layerNormEps));
  const inter = g.scope('intermediate', () => {
    const y = g.scope('dense', () => linear(g, n2, cfg.hidden, cfg.intermediate, { weightInit: W, biasInit: ZEROS }));
    return g.scope('intermediate_act_fn', () => geluErf(g, y));
  });
  return g.scope('output', () => {
    const y = g.scope('dense', () => linear(g, inter, cfg.intermediate, cfg.hidden, { weightInit: W, biasInit: ZEROS }));
    return g.op1('Add', [y, h1]);
  });
}

/** Writes config.json, preprocessor_config.json and the ONNX model(s) into `outDir`. Returns the parameter count. */
export function buildVitFolder(outDir: string, cfg: VitConfig): { dir: string; parameterCount: number } {
  mkdirSync(outDir, { recursive: true });
  const g = new GraphBuilder({ seed: componentSeed(cfg.seed, cfg.variant === 'dino' ? 'dino' : 'vit') });
  buildVitGraph(g, cfg);
  const count = g.parameterCount;
  const model = g.finish();
  const primary = cfg.layout === 'root' ? join(outDir, 'model.onnx') : join(outDir, 'onnx', 'model.onnx');
  writeModel(primary, model);
  if (cfg.layout === 'both') copyFileSync(primary, join(outDir, 'model.onnx'));
  const labels = Array.from({ length: cfg.numLabels }, (_, i) => `class_${i}`);
  writeJson(join(outDir, 'config.json'), {
    architectures: [cfg.variant === 'dino' ? 'ViTModel' : 'ViTForImageClassification'],
    attention_probs_dropout_prob: 0.0, encoder_stride: cfg.patchSize, hidden_act: 'gelu', hidden_dropout_prob: 0.0,
    hidden_size: cfg.hidden,
    ...(cfg.variant === 'classifier' ? {
      id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
      label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
    } : {}),
    image_size: cfg.imageSize, initializer_range: cfg.initializerRange, intermediate_size: cfg.intermediate,
    layer_norm_eps: cfg.layerNormEps, model_type: 'vit', num_attention_heads: cfg.heads, num_channels: 3,
    num_hidden_layers: cfg.layers, patch_size: cfg.patchSize, qkv_bias: true, torch_dtype: 'float32', transformers_version: '4.33.0.dev0',
  });
  writeJson(join(outDir, 'preprocessor_config.json'), {
    do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_processor_type: 'ViTImageProcessor',
    image_std: [0.5, 0.5, 0.5], resample: 2, rescale_factor: 1 / 255, size: { height: cfg.imageSize, width: cfg.imageSize },
  });
  return { dir: outDir, parameterCount: count };
}
