// One error type, two faces: the CLI turns a HeedError's kind into an exit code and the server into a protocol error
// code, each with one table. These tests hold the two tables to the same classification: every kind, every named
// engine error class (including the ones the CLI and the server used to disagree about), and real faults raised by
// the engine itself (a folder that is not a model; a latents file that is not a .npy).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEED_ERROR_KINDS, HeedError, type HeedErrorKind } from '../engine/errors.js';
import { classifyError, EXIT_CODE_OF_KIND, UsageError } from '../engine/cli/errors.js';
import { classifyEngineError } from '../engine/server/engine-runner.js';
import { toErrorInfo, type ErrorInfo } from '../engine/server/errors.js';
import { AttentionMapsError, CancelledError, GenerationOptionsError, StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { ModelInputError } from '../engine/diffusion/text-encoder.js';
import { ModelFolderError } from '../engine/diffusion/folder.js';
import { ImageSizeError, LatentsError } from '../engine/diffusion/latents.js';
import { TokenizerLoadError } from '../engine/text/tokenizer.js';
import { SchedulerConfigError } from '../engine/diffusion/schedulers/config.js';
import { AttentionDiscoveryError } from '../engine/attention/discover.js';
import { OnnxLoadError } from '../engine/onnx/model.js';
import { NpyError } from '../engine/io/npy.js';
import { ImageError } from '../engine/render/image.js';
import { SubjectError } from '../engine/guidance/subjects.js';
import { AttendExciteError } from '../engine/guidance/attend-excite.js';
import { ExplainError, MethodNotApplicableError } from '../engine/explain/errors.js';
import { ensureTinyModels } from '../models/cache.js';

/** What each face says about one fault. */
function bothFaces(e: unknown): { exitCode: number; protocol: ErrorInfo } {
  return { exitCode: classifyError(e, false).exitCode, protocol: toErrorInfo(classifyEngineError(e)) };
}

/** The agreed classification of each kind (written out, not derived from either table). */
const EXPECTED: Record<HeedErrorKind, { exitCode: number; code: ErrorInfo['code'] }> = {
  invalid_input: { exitCode: 2, code: 'invalid_input' },
  model_invalid: { exitCode: 2, code: 'model_invalid' },
  cancelled: { exitCode: 130, code: 'cancelled' },
  internal: { exitCode: 1, code: 'job_failed' },
};

describe('errors: one kind, the same classification on the CLI and the server', function () {
  it('every kind maps to its exit code and its protocol code; the field travels to the protocol', function () {
    assert.deepEqual(Object.keys(EXIT_CODE_OF_KIND).sort(), [...HEED_ERROR_KINDS].sort());
    for (const kind of HEED_ERROR_KINDS) {
      const { exitCode, protocol } = bothFaces(new HeedError(kind, `a ${kind} fault`, { field: 'steps' }));
      assert.equal(exitCode, EXPECTED[kind].exitCode, `${kind}: exit code`);
      assert.equal(protocol.code, EXPECTED[kind].code, `${kind}: protocol code`);
      if (kind === 'invalid_input' || kind === 'model_invalid') assert.equal(protocol.field, 'steps', `${kind}: field`);
    }
    // Not a HeedError at all: a bug, on both faces.
    const bug = bothFaces(new TypeError('x is undefined'));
    assert.deepEqual([bug.exitCode, bug.protocol.code], [1, 'job_failed']);
  });

  // The named classes, each with the kind and default field it was given where it is thrown. The first four are
  // the ones the CLI and the server used to classify differently.
  const cases: [string, unknown, HeedErrorKind, string | undefined][] = [
    ['AttentionMapsError (was internal on the CLI)', new AttentionMapsError('m'), 'invalid_input', 'maps'],
    ['ModelInputError (was job_failed on the server)', new ModelInputError('m'), 'model_invalid', 'model'],
    ['NpyError (was job_failed on the server)', new NpyError('m'), 'invalid_input', undefined],
    ['AttentionDiscoveryError (was job_failed on the server)', new AttentionDiscoveryError('m'), 'model_invalid', 'model'],
    ['ModelFolderError', new ModelFolderError('m'), 'model_invalid', 'model'],
    ['TokenizerLoadError', new TokenizerLoadError('m'), 'model_invalid', 'model'],
    ['OnnxLoadError', new OnnxLoadError('m'), 'model_invalid', 'model'],
    ['SchedulerConfigError of the folder', new SchedulerConfigError('m'), 'model_invalid', 'model'],
    ['SchedulerConfigError of a chosen scheduler', new SchedulerConfigError('m', 'scheduler', 'invalid_input'), 'invalid_input', 'scheduler'],
    ['LatentsError', new LatentsError('m'), 'invalid_input', 'latents'],
    ['ImageSizeError', new ImageSizeError('m', 'height'), 'invalid_input', 'height'],
    ['GenerationOptionsError', new GenerationOptionsError('m', 'guidance'), 'invalid_input', 'guidance'],
    ['SubjectError', new SubjectError('m'), 'invalid_input', 'excite.subjects'],
    ['AttendExciteError', new AttendExciteError('m', 'excite.res'), 'invalid_input', 'excite.res'],
    ['ImageError', new ImageError('m'), 'invalid_input', 'image'],
    ['ExplainError', new ExplainError('m', { field: 'cheferStart' }), 'invalid_input', 'cheferStart'],
    ['ExplainError of the model folder', new ExplainError('m', { kind: 'model_invalid', field: 'model' }), 'model_invalid', 'model'],
    ['MethodNotApplicableError', new MethodNotApplicableError('chefer', 'no gradients'), 'invalid_input', 'methods'],
    ['UsageError', new UsageError('m'), 'invalid_input', undefined],
    ['CancelledError', new CancelledError(1, 3), 'cancelled', undefined],
  ];
  for (const [what, e, kind, field] of cases) {
    it(`${what}: ${kind}${field ? ` (field ${field})` : ''} on both faces`, function () {
      const { exitCode, protocol } = bothFaces(e);
      assert.equal(exitCode, EXPECTED[kind].exitCode);
      assert.equal(protocol.code, EXPECTED[kind].code);
      assert.equal(protocol.field, field);
    });
  }

  describe('real faults raised by the engine', function () {
    let dir: string;
    before(function () {
      dir = mkdtempSync(join(tmpdir(), 'heed-error-kinds-'));
    });
    after(function () {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('a folder that is not an SD model → model_invalid (field model): exit 2 / model_invalid', async function () {
      writeFileSync(join(dir, 'notes.txt'), 'not a model');
      const e = await StableDiffusionPipeline.load(dir).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof HeedError, `expected a HeedError, got ${String(e)}`);
      assert.deepEqual(bothFaces(e).exitCode, 2);
      assert.deepEqual({ code: bothFaces(e).protocol.code, field: bothFaces(e).protocol.field }, { code: 'model_invalid', field: 'model' });
    });

    it('a latents file that is not a .npy → invalid_input (field latents): exit 2 / invalid_input', async function () {
      this.timeout(120_000);
      const models = await ensureTinyModels();
      const latents = join(dir, 'latents.npy');
      writeFileSync(latents, 'this is not a numpy file');
      const pipe = await StableDiffusionPipeline.load(models.sd);
      try {
        const e = await pipe.generate({ prompt: 'a cat', steps: 1, width: 128, height: 128, latents }).then(() => undefined, (x: unknown) => x);
        assert.ok(e instanceof HeedError, `expected a HeedError, got ${String(e)}`);
        const { exitCode, protocol } = bothFaces(e);
        assert.equal(exitCode, 2);
        assert.deepEqual({ code: protocol.code, field: protocol.field }, { code: 'invalid_input', field: 'latents' });
      } finally {
        await pipe.dispose();
      }
    });
  });
});
