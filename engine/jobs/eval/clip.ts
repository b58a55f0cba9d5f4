// The CLIP side of `heed eval`: cosine similarities between an image and texts (the A&E paper's full-prompt and
// min-object similarities use CLIP's projected embeddings, not the temperature-scaled logits), and Chefer relevance
// of a text on the image (how subjects are found in images of models other than the Shapes world).
import type { InferenceSession } from 'onnxruntime-node';
import { HeedError } from '../../errors.js';
import type { ConcreteDevice } from '../../onnx/device.js';
import { openSession, runSession } from '../../onnx/session.js';
import { encodePng, type RgbImage } from '../../render/index.js';
import type { ExplainModel, GradientEngine, GridMap } from '../../explain/index.js';
import { cosine } from './metrics.js';

const EMBEDDINGS = ['image_embeds', 'text_embeds'] as const;

export class ClipScorer {
  private session?: InferenceSession;

  private constructor(private readonly model: ExplainModel, private readonly gradients: GradientEngine, private readonly dir: string) {}

  /** Loads a CLIP folder; anything that is not a full CLIPModel export is refused with field `clip`. */
  static async load(dir: string, options: { device?: ConcreteDevice; threads?: number } = {}): Promise<ClipScorer> {
    const { ExplainModel, GradientEngine } = await import('../../explain/index.js');
    let model: ExplainModel;
    try {
      model = await ExplainModel.load(dir, { device: options.device ?? 'cpu', intraOpThreads: options.threads ?? 1 });
    } catch (e) {
      const kind = e instanceof HeedError ? e.kind : 'model_invalid';
      throw new HeedError(kind === 'internal' ? 'model_invalid' : kind, `--clip ${dir} is not a CLIP model Heed can use: ${(e as Error).message}`, { field: 'clip', cause: e });
    }
    if (model.family !== 'clip') {
      await model.release();
      throw new HeedError('invalid_input', `--clip ${dir} is a ${model.family} model (config.json model_type '${model.info.modelType}'), not CLIP: ` +
        'point --clip at a CLIPModel export (image and text towers; e.g. models/shapes/clip)', { field: 'clip' });
    }
    const missing = EMBEDDINGS.filter((n) => !model.outputNames.includes(n));
    if (missing.length > 0) {
      await model.release();
      throw new HeedError('model_invalid', `--clip ${dir}: the export has no ${missing.join(' / ')} output (outputs: ${model.outputNames.join(', ')}); ` +
        'export the full CLIPModel (Optimum / torch.onnx.export of CLIPModel), which returns image_embeds and text_embeds', { field: 'clip' });
    }
    return new ClipScorer(model, new GradientEngine(model), dir);
  }

  /** Cosine similarity of the image to each text (CLIP's projected embeddings). */
  async similarities(image: RgbImage, texts: readonly string[]): Promise<number[]> {
    if (texts.length === 0) return [];
    const prepared = await this.model.prepareImage(await encodePng(image));
    const tokenized = this.model.tokenize(texts);
    this.session ??= await openSession(this.model.onnx, { intraOpThreads: this.model.options.intraOpThreads ?? 1, ...(this.model.options.device ? { device: this.model.options.device } : {}) });
    const out = await runSession(this.session, this.model.feeds(prepared, tokenized), [...EMBEDDINGS]);
    const img = out.image_embeds!.data as Float32Array;
    const txt = out.text_embeds!.data as Float32Array;
    const d = txt.length / texts.length;
    return texts.map((_, t) => cosine(img.subarray(0, d), txt.subarray(t * d, (t + 1) * d)));
  }

  /** Chefer relevance of each text on the image (patch grid, raw). */
  async relevance(image: RgbImage, texts: readonly string[]): Promise<GridMap[]> {
    const { explainWithModel } = await import('../../explain/index.js');
    const prepared = await this.model.prepareImage(await encodePng(image));
    const r = await explainWithModel(this.model, this.gradients, prepared, { methods: ['chefer'], texts });
    return texts.map((_, t) => {
      const c = r.chefer.find((x) => x.textIndex === t);
      if (!c) throw new HeedError('internal', `CLIP relevance of text ${t} is missing from the explanation of ${this.dir}`);
      return c.image;
    });
  }

  async release(): Promise<void> {
    await this.session?.release();
    await this.gradients.release();
    await this.model.release();
  }
}
