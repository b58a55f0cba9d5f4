// Hand-made model folders for the explain tests, built with the project's torch-style graph builder:
//  - a ViT-like classifier whose attention is FORCED onto one patch: a constant +50 is added to the scores of one
//    key column before the Softmax, so every query's probability mass sits on that token whatever the image;
//    image 32×48 with 16×16 patches gives a non-square 2×3 grid;
//  - the same without a CLS token (attention maps exist, CLS-row methods do not apply);
//  - an image classifier without any attention (Conv → mean → linear).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { DT, GraphBuilder } from '../models/lib/graph-builder.js';
import { writeModel } from '../models/sd.js';

export interface ForcedVitOptions {
  /** Token index (0 = CLS) the attention is forced onto. */
  target: number;
  cls?: boolean;
  layers?: number;
  classes?: number;
  /** Register tokens after the CLS token (DINOv2-with-registers layout: [CLS, registers…, patches]). */
  registers?: number;
  /** Declare the batch dim symbolic (as real exports do) or fixed to 1. Default fixed. */
  dynamicBatch?: boolean;
}

const HIDDEN = 8;
export const FORCED_GRID = { height: 2, width: 3 };
export const FORCED_IMAGE = { height: 32, width: 48 };

function writeFolderFiles(dir: string, classes: number, modelType = 'vit'): void {
  const labels = Array.from({ length: classes }, (_, i) => `label ${i}`);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    architectures: ['ViTForImageClassification'], model_type: modelType, patch_size: 16, image_size: [FORCED_IMAGE.height, FORCED_IMAGE.width],
    hidden_size: HIDDEN, num_hidden_layers: 2, num_attention_heads: 1,
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
  }, null, 1));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({
    do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
    image_processor_type: 'ViTImageProcessor', resample: 2, rescale_factor: 1 / 255, size: FORCED_IMAGE,
  }, null, 1));
}

export function buildForcedVit(dir: string, o: ForcedVitOptions): string {
  const cls = o.cls ?? true;
  const layers = o.layers ?? 2;
  const classes = o.classes ?? 3;
  const registers = o.registers ?? 0;
  const prefix = cls ? 1 + registers : 0;
  const tokens = FORCED_GRID.height * FORCED_GRID.width + prefix;
  const batch = o.dynamicBatch ? 'batch' : 1;
  const g = new GraphBuilder({ seed: 7 });
  const pixels = g.input('pixel_values', DT.FLOAT, [batch, 3, FORCED_IMAGE.height, FORCED_IMAGE.width]);
  let x = g.scope('vit', () => g.scope('embeddings', () => {
    const w = g.param('proj.weight', [HIDDEN, 3, 16, 16], { kind: 'normal', std: 0.05 });
    const conv = g.op1('Conv', [pixels, w], { kernel_shape: { ints: [16, 16] }, strides: { ints: [16, 16] } });
    // Reshape's 0 copies the batch dim, so the graph works for any batch.
    const flat = g.op1('Reshape', [conv, g.constI64([0, HIDDEN, FORCED_GRID.height * FORCED_GRID.width])]);
    const seq = g.op1('Transpose', [flat], { perm: { ints: [0, 2, 1] } });
    if (!cls) return seq;
    // CLS = a zero token padded in front plus a learned embedding row (broadcast over the batch).
    const padded = g.op1('Pad', [seq, g.constI64([0, prefix, 0, 0, 0, 0])]);
    return g.op1('Add', [padded, g.param('cls_and_position', [1, tokens, HIDDEN], { kind: 'normal', std: 0.5 })]);
  }));
  const bias = new Float32Array(tokens * tokens);
  for (let i = 0; i < tokens; i++) bias[i * tokens + o.target] = 50;
  for (let l = 0; l < layers; l++) {
    x = g.scope('vit', () => g.scope('encoder', () => g.scope(`layer.${l}`, () => g.scope('attention', () => {
      const q = g.op1('MatMul', [x, g.param('query', [HIDDEN, HIDDEN], { kind: 'normal', std: 0.3 })]);
      const k = g.op1('MatMul', [x, g.param('key', [HIDDEN, HIDDEN], { kind: 'normal', std: 0.3 })]);
      const v = g.op1('MatMul', [x, g.param('value', [HIDDEN, HIDDEN], { kind: 'normal', std: 0.3 })]);
      const kt = g.op1('Transpose', [k], { perm: { ints: [0, 2, 1] } });
      const scores = g.op1('MatMul', [q, kt]);
      const forced = g.op1('Add', [scores, g.constF32(bias, [tokens, tokens])]);
      const probs = g.op1('Softmax', [forced], { axis: { i: -1 } });
      const ctx = g.op1('MatMul', [probs, v]);
      return g.op1('Add', [x, ctx]);
    }))));
  }
  const pooled = g.op1('ReduceMean', [x], { axes: { ints: [1] }, keepdims: { i: 0 } });
  const logits = g.op1('MatMul', [pooled, g.param('classifier.weight', [HIDDEN, classes], { kind: 'normal', std: 0.5 })], {}, 'logits');
  g.output(logits, DT.FLOAT, [batch, classes]);
  mkdirSync(dir, { recursive: true });
  writeModel(join(dir, 'onnx', 'model.onnx'), g.finish());
  writeFolderFiles(dir, classes);
  return dir;
}

export function buildNoAttentionModel(dir: string): string {
  const g = new GraphBuilder({ seed: 3 });
  const pixels = g.input('pixel_values', DT.FLOAT, [1, 3, FORCED_IMAGE.height, FORCED_IMAGE.width]);
  const w = g.param('conv.weight', [4, 3, 3, 3], { kind: 'normal', std: 0.1 });
  const conv = g.op1('Conv', [pixels, w], { kernel_shape: { ints: [3, 3] } });
  const pooled = g.op1('ReduceMean', [conv], { axes: { ints: [2, 3] }, keepdims: { i: 0 } });
  const logits = g.op1('MatMul', [pooled, g.param('fc.weight', [4, 2], { kind: 'normal', std: 0.5 })], {}, 'logits');
  g.output(logits, DT.FLOAT, [1, 2]);
  mkdirSync(dir, { recursive: true });
  writeModel(join(dir, 'model.onnx'), g.finish());
  writeFolderFiles(dir, 2, 'convnet');
  return dir;
}

/** A small noisy RGB test image (PNG) of any size. */
export async function writeTestImage(path: string, width = 64, height = 40): Promise<string> {
  const data = Buffer.alloc(width * height * 3);
  let s = 12345;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = (s >>> 16) & 255;
  }
  await sharp(data, { raw: { width, height, channels: 3 } }).png().toFile(path);
  return path;
}
