// diffusers AutoencoderKL decoder as the ONNX convert script exports it (`latent_sample` → `sample`): post_quant_conv,
// decoder.conv_in, mid block (resnet, single-head attention with the upcast pattern MatMul → Mul → Add → Cast →
// Softmax → Cast, resnet), UpDecoderBlock2D ×n with nearest-×2 upsamplers, GroupNorm → SiLU → conv_out.
import { DT, type GraphBuilder } from '../lib/graph-builder.js';
import { conv2d, dim, groupNorm, reshape, shapeVec, silu, transpose, unsq, upsampleNearest2x, cast } from '../lib/layers.js';
import { attention, resnetBlock } from './unet.js';

export interface VaeDecoderConfig {
  latentChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  normGroups: number;
  /** diffusers' scaling factor (written to the VAE config; the pipeline divides latents by it). */
  scalingFactor: number;
}

const EPS = 1e-6;

export function buildVaeDecoder(g: GraphBuilder, cfg: VaeDecoderConfig): void {
  const z = g.input('latent_sample', DT.FLOAT, ['batch', 'channels', 'height', 'width']);
  const c = cfg.latentChannels;
  let h = g.scope('post_quant_conv', () => conv2d(g, z, c, c, 1));
  const reversed = [...cfg.blockOutChannels].reverse();
  const top = reversed[0];
  g.scope('decoder', () => {
    h = g.scope('conv_in', () => conv2d(g, h, c, top, 3));
    g.scope('mid_block', () => {
      h = g.scope('resnets.0', () => resnetBlock(g, h, top, top, cfg.normGroups, EPS));
      h = g.scope('attentions.0', () => midAttention(g, h, top, cfg.normGroups));
      h = g.scope('resnets.1', () => resnetBlock(g, h, top, top, cfg.normGroups, EPS));
    });
    h = cast(g, h, DT.FLOAT); // `sample.to(upscale_dtype)`
    let ch = top;
    for (let i = 0; i < reversed.length; i++) {
      const out = reversed[i];
      g.scope(`up_blocks.${i}`, () => {
        for (let j = 0; j <= cfg.layersPerBlock; j++) {
          h = g.scope(`resnets.${j}`, () => resnetBlock(g, h, ch, out, cfg.normGroups, EPS));
          ch = out;
        }
        if (i < reversed.length - 1) {
          h = g.scope('upsamplers.0', () => {
            const up = upsampleNearest2x(g, h);
            return g.scope('conv', () => conv2d(g, up, out, out, 3));
          });
        }
      });
    }
    const c0 = cfg.blockOutChannels[0];
    h = g.scope('conv_norm_out', () => groupNorm(g, h, c0, cfg.normGroups, EPS));
    h = g.scope('conv_act', () => silu(g, h));
    g.scope('conv_out', () => {
      const bound = 1 / Math.sqrt(c0 * 9);
      const w = g.param('weight', [cfg.outChannels, c0, 3, 3], { kind: 'uniform', bound });
      const b = g.param('bias', [cfg.outChannels], { kind: 'uniform', bound });
      g.op1('Conv', [h, w, b], {
        dilations: { ints: [1, 1] }, group: { i: 1 }, kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [1, 1] },
      }, 'sample');
    });
  });
  g.output('sample', DT.FLOAT, ['batch', cfg.outChannels, 'height_out', 'width_out']);
}

/** The VAE mid-block Attention (one head, biased projections, group_norm inside, upcast softmax, residual). */
function midAttention(g: GraphBuilder, x: string, channels: number, groups: number): string {
  const b = dim(g, x, 0);
  const c = dim(g, x, 1);
  const hh = dim(g, x, 2);
  const ww = dim(g, x, 3);
  const flat = reshape(g, x, shapeVec(g, [unsq(g, b), unsq(g, c), unsq(g, g.op1('Mul', [hh, ww]))]));
  const batch = dim(g, transpose(g, flat, [0, 2, 1]), 0);
  const n = g.scope('group_norm', () => groupNorm(g, flat, channels, groups, EPS, 1));
  const tokens = transpose(g, n, [0, 2, 1]);
  const a = attentionNoResidual(g, tokens, channels);
  const back = reshape(g, transpose(g, a, [0, 2, 1]), shapeVec(g, [unsq(g, batch), unsq(g, c), unsq(g, hh), unsq(g, ww)]));
  return g.op1('Div', [g.op1('Add', [back, x]), g.scalarF32(1)]);
}

function attentionNoResidual(g: GraphBuilder, tokens: string, channels: number): string {
  return attention(g, tokens, tokens, channels, channels, 1, { bias: true, qkScale: 1, upcastSoftmax: true, noRescale: true });
}
