// Runs a two-phase VJP: `forward` returns the seeds (for the caller's loss) and an opaque residual bundle;
// `backward` turns the caller's cotangents into gradients without recomputing the forward. Sessions are created once.
import type { OnnxModel } from '../model.js';
import { openSession, runSession, ort, type Feeds, type SessionOptions } from '../session.js';
import { buildSplitVjp, type SplitVjp, type VjpOptions } from './build.js';
import { VjpError } from './errors.js';

/** Saved forward tensors; only meaningful for the runner that produced them. */
export interface Residuals {
  readonly owner: VjpRunner;
  readonly tensors: Readonly<Record<string, ort.Tensor>>;
}

export interface VjpRunnerOptions extends VjpOptions {
  session?: SessionOptions;
}

export class VjpRunner {
  private disposed = false;

  private constructor(
    readonly split: SplitVjp,
    private readonly forwardSession: ort.InferenceSession,
    private readonly backwardSession: ort.InferenceSession,
  ) {}

  static async create(model: OnnxModel, options: VjpRunnerOptions): Promise<VjpRunner> {
    const split = buildSplitVjp(model, options);
    const fwd = await openSession(split.forward, options.session);
    let bwd: ort.InferenceSession;
    try {
      bwd = await openSession(split.backward, options.session);
    } catch (e) {
      await fwd.release();
      throw e;
    }
    return new VjpRunner(split, fwd, bwd);
  }

  get warnings(): string[] {
    return this.split.warnings;
  }

  async forward(feeds: Feeds): Promise<{ seeds: Record<string, ort.Tensor>; residuals: Residuals }> {
    this.check();
    const inputs: Feeds = {};
    for (const i of this.split.inputs) {
      const t = feeds[i.name];
      if (!t) throw new VjpError(`VjpRunner.forward: missing input '${i.name}' (needs ${this.split.inputs.map((x) => x.name).join(', ')})`);
      inputs[i.name] = t;
    }
    const out = await runSession(this.forwardSession, inputs);
    const seeds: Record<string, ort.Tensor> = {};
    for (const s of Object.keys(this.split.cotangents)) seeds[s] = out[s];
    const tensors: Record<string, ort.Tensor> = {};
    for (const r of this.split.residuals) tensors[r.name] = this.split.passThrough.includes(r.name) ? inputs[r.name] : out[r.name];
    return { seeds, residuals: { owner: this, tensors } };
  }

  /** Gradients keyed by the wrt tensor names. `cotangents` is keyed by seed name, each with the seed's dims. */
  async backward(residuals: Residuals, cotangents: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    this.check();
    if (residuals.owner !== this) throw new VjpError('VjpRunner.backward: these residuals come from another runner');
    const feeds: Feeds = { ...residuals.tensors };
    for (const [seed, input] of Object.entries(this.split.cotangents)) {
      const c = cotangents[seed];
      if (!c) throw new VjpError(`VjpRunner.backward: missing cotangent for seed '${seed}'`);
      const want = this.split.specs[seed].dims;
      if (c.dims.length !== want.length || c.dims.some((d, i) => d !== want[i])) {
        throw new VjpError(`VjpRunner.backward: cotangent for '${seed}' has dims [${c.dims}] but the seed has dims [${want}]`);
      }
      feeds[input] = c;
    }
    const out = await runSession(this.backwardSession, feeds);
    const grads: Record<string, ort.Tensor> = {};
    for (const [w, name] of Object.entries(this.split.gradients)) grads[w] = out[name];
    return grads;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.forwardSession.release();
    await this.backwardSession.release();
  }

  private check(): void {
    if (this.disposed) throw new VjpError('VjpRunner used after dispose()');
  }
}
