// The VAE decoder: latents → image. Postprocessing is diffusers' for output_type "np"/"pil":
// x = decoder(latents / scaling_factor); image = clamp(x / 2 + 0.5, 0, 1) in HWC; PNG bytes = round(image * 255).
import type * as ortTypes from 'onnxruntime-node';
import sharp from 'sharp';
import { openSessionFromPath, runSession, type SessionOptions } from '../onnx/session.js';
import { describeSpecs, fromModelTensor, sessionValues, toModelTensor, type FeedType, type ValueSpec } from './boundary.js';
import { ModelInputError } from './text-encoder.js';

/** An RGB image as float32 HWC in [0, 1]. */
export interface FloatImage {
  width: number;
  height: number;
  /** [height, width, 3] row-major. */
  data: Float32Array;
}

export class VaeDecoder {
  private constructor(private session: ortTypes.InferenceSession | null, readonly path: string,
    private readonly input: ValueSpec & { type: FeedType }, private readonly output: string) {}

  static async open(path: string, options: SessionOptions = {}): Promise<VaeDecoder> {
    const session = await openSessionFromPath(path, options);
    try {
      const inputs = sessionValues(session, 'input');
      const input = inputs.find((s) => s.name === 'latent_sample') ?? (inputs.length === 1 ? inputs[0] : undefined);
      if (!input || inputs.length !== 1) {
        throw new ModelInputError(`${path}: expected one input 'latent_sample' [batch, 4, h, w] (VAE decoder), found ${describeSpecs(inputs)}.`);
      }
      if (input.type !== 'float32' && input.type !== 'float16') {
        throw new ModelInputError(`${path}: input '${input.name}' has element type ${input.type}; expected float32 or float16.`);
      }
      const outputs = sessionValues(session, 'output');
      const output = outputs.find((o) => o.name === 'sample') ?? outputs[0];
      if (!output) throw new ModelInputError(`${path}: the VAE decoder declares no outputs`);
      return new VaeDecoder(session, path, input as ValueSpec & { type: FeedType }, output.name);
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  /** The element type of the decoder's input (float16 exports decode in half precision). */
  get inputType(): FeedType {
    return this.input.type;
  }

  /** Decodes one latent [1, C, h, w] (already in the UNet's latent space) into a float image. */
  async decode(latents: Float32Array, dims: readonly [number, number, number, number], scalingFactor: number): Promise<FloatImage> {
    if (!this.session) throw new Error(`VAE decoder ${this.path} was disposed`);
    const [b, c, h, w] = dims;
    if (b !== 1) throw new RangeError(`decode: one latent at a time (got batch ${b})`);
    if (latents.length !== c * h * w) throw new RangeError(`decode: latents hold ${latents.length} values, dims say ${dims.join('x')}`);
    const scaled = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / scalingFactor;
    const out = await runSession(this.session, { [this.input.name]: toModelTensor(this.input.type, scaled, [...dims]) }, [this.output]);
    const t = out[this.output];
    if (t.dims.length !== 4 || t.dims[0] !== 1 || t.dims[1] !== 3) {
      throw new ModelInputError(`${this.path}: output '${this.output}' has dims [${t.dims.join(', ')}], expected [1, 3, H, W]`);
    }
    const [, , H, W] = t.dims;
    const chw = fromModelTensor(t, `${this.path} ${this.output}`);
    const data = new Float32Array(H * W * 3);
    const plane = H * W;
    for (let ch = 0; ch < 3; ch++) {
      for (let p = 0; p < plane; p++) {
        // Math.fround keeps the float32 arithmetic of the reference (x / 2 + 0.5 in float32).
        const v = Math.fround(Math.fround(chw[ch * plane + p] / 2) + 0.5);
        data[p * 3 + ch] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
    t.dispose();
    return { width: W, height: H, data };
  }

  async dispose(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.release();
  }
}

/** uint8 RGB bytes as diffusers' numpy_to_pil makes them: round(image * 255). */
export function imageToRgb8(image: FloatImage): Uint8Array {
  const out = new Uint8Array(image.data.length);
  // Math.round rounds .5 up while numpy rounds half to even; x*255 lands exactly on .5 only for x = k/510, and the
  // reference's float32 products make that vanishingly rare. Use round-half-even anyway to match numpy.
  for (let i = 0; i < out.length; i++) out[i] = roundHalfEven(Math.fround(image.data[i] * 255));
  return out;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** PNG bytes of an image (via sharp). */
export async function imageToPng(image: FloatImage): Promise<Buffer> {
  return sharp(Buffer.from(imageToRgb8(image)), { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}
