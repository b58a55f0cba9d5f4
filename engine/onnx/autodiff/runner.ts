// Runs a two-phase VJP: `forward` returns the seeds (for the caller's loss) and an opaque residual bundle;
// `backward` turns the caller's cotangents into gradients without recomputing the forward. Sessions are created once.
import { cloneModel, type OnnxModel } from '../model.js';
import { Graph } from '../graph.js';
import { openSession, runSession, ort, type Feeds, type SessionOptions } from '../session.js';
import { buildSplitVjp, buildVjp, type SplitVjp, type TensorSpec, type VjpOptions } from './build.js';
import { VjpError } from './errors.js';
import { numel, ortTypeName } from '../tensor.js';

/** Saved forward tensors; only meaningful for the runner that produced them. */
export interface Residuals {
  readonly owner: VjpRunner;
  /** Which forward() produced them: with reused buffers only the latest one is valid. */
  readonly generation: number;
  readonly tensors: Readonly<Record<string, ort.Tensor>>;
}

export interface VjpRunnerOptions extends VjpOptions {
  session?: SessionOptions;
  /**
   * 'residuals' (default): the forward session also outputs the tensors the backward rules need and the backward
   * session starts from them — no forward op runs twice. 'recompute': the forward session outputs only the seeds and
   * the backward runs the one-session VJP (pruned forward + backward) again from the inputs. onnxruntime-node copies
   * every output into JS memory, so when the residuals are large (≈1.2 GB for the tiny UNet at 64×64, dominated by
   * two 64×64 self-attention maps) 'recompute' can be the faster of the two; measure with bench/vjp.ts.
   */
  strategy?: 'residuals' | 'recompute';
  /**
   * 'residuals' mode: let onnxruntime write the residuals into buffers allocated once and reused by every forward().
   * Then only the residuals of the latest forward() are valid; backward() rejects older ones. Seeds are always copies.
   * Default off: onnxruntime-node 1.30 keeps its own reference to a pre-allocated output's memory until the session is
   * released, so with reuse the process held two copies of the residuals (SD 1.5 at 512²: +0.9 GB at the A&E peak)
   * and the A&E pass was no faster (10.4 s vs 9.4 s per pass, `bench --only memory` era measurements); without it each
   * forward's residuals are fresh buffers that the garbage collector frees.
   */
  reuseBuffers?: boolean;
}

/** What a runner computes: its forward inputs, the seeds' cotangents and the gradients, with shapes. */
export interface VjpSignature {
  inputs: TensorSpec[];
  cotangents: Record<string, string>;
  gradients: Record<string, string>;
  specs: Record<string, TensorSpec>;
  warnings: string[];
}

export class VjpRunner {
  private disposed = false;
  private generation = 0;
  private fetches: Record<string, ort.Tensor> | undefined;
  /** Whether forward() writes into buffers reused across calls (allocated on first use, dropped by releaseBuffers). */
  private reuse = false;

  private constructor(
    readonly signature: VjpSignature,
    /** The forward/backward pair in 'residuals' mode (undefined in 'recompute' mode). */
    readonly split: SplitVjp | undefined,
    private readonly forwardSession: ort.InferenceSession,
    private readonly backwardSession: ort.InferenceSession,
  ) {}

  static async create(model: OnnxModel, options: VjpRunnerOptions): Promise<VjpRunner> {
    let signature: VjpSignature;
    let split: SplitVjp | undefined;
    let forward: OnnxModel;
    let backward: OnnxModel;
    if ((options.strategy ?? 'residuals') === 'residuals') {
      split = buildSplitVjp(model, options);
      signature = split;
      forward = split.forward;
      backward = split.backward;
    } else {
      const vjp = buildVjp(model, options);
      signature = vjp;
      backward = vjp.model;
      forward = cloneModel(model);
      new Graph(forward).pruneTo(Object.keys(vjp.cotangents));
    }
    const fwd = await openSession(forward, options.session);
    let bwd: ort.InferenceSession;
    try {
      bwd = await openSession(backward, options.session);
    } catch (e) {
      await fwd.release();
      throw e;
    }
    const runner = new VjpRunner(signature, split, fwd, bwd);
    runner.reuse = !!split && (options.reuseBuffers ?? false);
    return runner;
  }

  get warnings(): string[] {
    return this.signature.warnings;
  }
  get specs(): Record<string, TensorSpec> {
    return this.signature.specs;
  }

  async forward(feeds: Feeds): Promise<{ seeds: Record<string, ort.Tensor>; residuals: Residuals }> {
    this.check();
    const inputs: Feeds = {};
    const sig = this.signature;
    for (const i of sig.inputs) {
      const t = feeds[i.name];
      if (!t) throw new VjpError(`VjpRunner.forward: missing input '${i.name}' (needs ${sig.inputs.map((x) => x.name).join(', ')})`);
      inputs[i.name] = t;
    }
    const fwdInputs: Feeds = {};
    for (const name of this.forwardSession.inputNames) fwdInputs[name] = inputs[name];
    let out: Record<string, ort.Tensor>;
    if (this.reuse && !this.fetches && this.split) this.fetches = allocateOutputs(this.split);
    if (this.fetches) {
      try {
        await this.forwardSession.run(fwdInputs, this.fetches);
      } catch (e) {
        throw new VjpError(`VjpRunner.forward: inference failed: ${(e as Error).message}`);
      }
      out = this.fetches;
    } else {
      out = await runSession(this.forwardSession, fwdInputs);
    }
    const generation = ++this.generation;
    const seeds: Record<string, ort.Tensor> = {};
    for (const s of Object.keys(sig.cotangents)) {
      const t = out[s];
      seeds[s] = this.fetches ? new ort.Tensor(t.type, (t.data as Float32Array).slice(), t.dims) : t;
    }
    if (!this.split) return { seeds, residuals: { owner: this, generation, tensors: inputs } };
    const tensors: Record<string, ort.Tensor> = {};
    for (const r of this.split.residuals) tensors[r.name] = this.split.passThrough.includes(r.name) ? inputs[r.name] : out[r.name];
    return { seeds, residuals: { owner: this, generation, tensors } };
  }

  /** Gradients keyed by the wrt tensor names. `cotangents` is keyed by seed name, each with the seed's dims. */
  async backward(residuals: Residuals, cotangents: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    this.check();
    if (residuals.owner !== this) throw new VjpError('VjpRunner.backward: these residuals come from another runner');
    if (this.fetches && residuals.generation !== this.generation) {
      throw new VjpError('VjpRunner.backward: these residuals come from an earlier forward(); the runner reuses its residual buffers, ' +
        'so call backward() before the next forward(), or create the runner with { reuseBuffers: false }');
    }
    const feeds: Feeds = { ...residuals.tensors };
    for (const [seed, input] of Object.entries(this.signature.cotangents)) {
      const c = cotangents[seed];
      if (!c) throw new VjpError(`VjpRunner.backward: missing cotangent for seed '${seed}'`);
      const want = this.signature.specs[seed].dims;
      if (c.dims.length !== want.length || c.dims.some((d, i) => d !== want[i])) {
        throw new VjpError(`VjpRunner.backward: cotangent for '${seed}' has dims [${c.dims}] but the seed has dims [${want}]`);
      }
      feeds[input] = c;
    }
    const out = await runSession(this.backwardSession, feeds, Object.values(this.signature.gradients));
    const grads: Record<string, ort.Tensor> = {};
    for (const [w, name] of Object.entries(this.signature.gradients)) grads[w] = out[name];
    return grads;
  }

  /**
   * Drops the reused residual buffers (the next forward() allocates them again) and invalidates every earlier
   * forward's residuals. Callers that alternate phases — Attend-and-Excite between its refinement passes and the
   * denoising UNet call — release them so the UNet's activations do not stack on top of them.
   */
  releaseBuffers(): void {
    if (!this.fetches) return;
    this.fetches = undefined;
    this.generation++;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.fetches = undefined;
    this.disposed = true;
    await this.forwardSession.release();
    await this.backwardSession.release();
  }

  private check(): void {
    if (this.disposed) throw new VjpError('VjpRunner used after dispose()');
  }
}

/** One output tensor per forward output, allocated once (onnxruntime writes into them on every run). */
function allocateOutputs(split: SplitVjp): Record<string, ort.Tensor> {
  const specs = new Map<string, TensorSpec>();
  for (const r of split.residuals) specs.set(r.name, r);
  for (const [name, sp] of Object.entries(split.specs)) specs.set(name, sp);
  const out: Record<string, ort.Tensor> = {};
  for (const o of split.forward.proto.graph?.output ?? []) {
    const sp = specs.get(o.name);
    if (!sp) throw new VjpError(`internal: no shape for forward output '${o.name}'`);
    const type = ortTypeName(sp.elemType);
    const n = numel(sp.dims);
    const data = type === 'int64' ? new BigInt64Array(n) : type === 'bool' || type === 'uint8' ? new Uint8Array(n)
      : type === 'float64' ? new Float64Array(n) : type === 'int32' ? new Int32Array(n) : type === 'float16' ? new Uint16Array(n)
      : new Float32Array(n);
    out[o.name] = new ort.Tensor(type as 'float32', data as Float32Array, sp.dims);
  }
  return out;
}
