// One explain job as both faces run it: `heed explain` (engine/cli/explain.ts, which opens the model for one image)
// and the server's worker (engine/server/engine-runner.ts, which keeps opened models in its cache). Prepare the
// image, explain it, write the files; the callers differ only in how they load models and show progress.
import { join, resolve } from 'node:path';
import type { ExplainModel, GradientEngine, ExplainOptions, ExplainResult, ModelLoadOptions } from '../explain/index.js';
import { HeedError } from '../errors.js';
import type { WrittenFiles } from './explain-outputs.js';
import type { PreparedImage } from '../explain/preprocess.js';
import type { CompareHooks, CompareOptions, CompareResult } from '../explain/compare.js';
import type { CompareScale } from './compare-outputs.js';

/** An opened explain model and its gradient engine (sessions cached on them: reuse across images). */
export interface ExplainModels {
  model: ExplainModel;
  gradients: GradientEngine;
}

export interface ExplainJobSpec {
  /** Image file path or encoded bytes. */
  image: string | Uint8Array;
  options: ExplainOptions;
  outDir: string;
  traceDir?: string;
}

export interface ExplainJobHooks {
  signal?: AbortSignal;
  /** The explanation is computed; its files are written next. */
  onWriting?(): void;
}

export interface ExplainJobOutput {
  result: ExplainResult;
  written: WrittenFiles;
  /** Absolute paths of every file written (outputs, then trace files). */
  files: string[];
}

/** Opens a model folder for explanations; `release` closes its sessions. */
export async function openExplainModels(dir: string, load: ModelLoadOptions = {}): Promise<ExplainModels & { release(): Promise<void> }> {
  const { ExplainModel, GradientEngine } = await import('../explain/index.js');
  const model = await ExplainModel.load(dir, load);
  const gradients = new GradientEngine(model);
  return {
    model, gradients,
    release: async () => {
      await gradients.release();
      await model.release();
    },
  };
}

/** Prepares the job's image; a fault in preparing it that names no option is the `image` input's. */
export async function prepareJobImage(models: ExplainModels, image: string | Uint8Array, field = 'image'): Promise<PreparedImage> {
  return models.model.prepareImage(image).catch((e: unknown) => {
    throw e instanceof HeedError && e.kind === 'invalid_input' && e.field === undefined ? new HeedError('invalid_input', e.message, { field, cause: e }) : e;
  });
}

export interface CompareJobSpec {
  image: string | Uint8Array;
  options: CompareOptions;
  outDir: string;
  traceDir?: string;
  scale?: CompareScale;
}

export interface CompareJobOutput {
  result: CompareResult;
  written: WrittenFiles;
  files: string[];
}

/** `--compare`: every (or each chosen) map method on one image, timed one by one, written side by side. */
export async function runCompareJob(models: ExplainModels, spec: CompareJobSpec, hooks: ExplainJobHooks & Pick<CompareHooks, 'onRun'> = {}): Promise<CompareJobOutput> {
  const { compareMethods } = await import('../explain/compare.js');
  const { writeCompareOutputs } = await import('./compare-outputs.js');
  const prepared = await prepareJobImage(models, spec.image);
  const result = await compareMethods(models.model, models.gradients, prepared, spec.options, { ...(hooks.signal ? { signal: hooks.signal } : {}), ...(hooks.onRun ? { onRun: hooks.onRun } : {}) });
  hooks.signal?.throwIfAborted();
  hooks.onWriting?.();
  const written = await writeCompareOutputs(result, spec.outDir, spec.scale ?? 'normalized', spec.traceDir);
  const traceDir = spec.traceDir;
  const files = [...written.files.map((f) => join(written.outDir, f)), ...(traceDir !== undefined ? written.traceFiles.map((f) => join(resolve(traceDir), f)) : [])];
  return { result, written, files };
}

export async function runExplainJob(models: ExplainModels, spec: ExplainJobSpec, hooks: ExplainJobHooks = {}): Promise<ExplainJobOutput> {
  const { explainWithModel } = await import('../explain/index.js');
  const { writeExplainOutputs } = await import('./explain-outputs.js');
  const prepared = await prepareJobImage(models, spec.image);
  const result = await explainWithModel(models.model, models.gradients, prepared, spec.options);
  hooks.signal?.throwIfAborted();
  hooks.onWriting?.();
  const written = await writeExplainOutputs(result, spec.outDir, spec.traceDir);
  const traceDir = spec.traceDir;
  const files = [...written.files.map((f) => join(written.outDir, f)), ...(traceDir !== undefined ? written.traceFiles.map((f) => join(resolve(traceDir), f)) : [])];
  return { result, written, files };
}
