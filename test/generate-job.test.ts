// The generate flow shared by `heed generate` and the server (engine/jobs/generate.ts) on the tiny SD pipeline:
// the order in which its hooks fire (plan, plain run, guided run with the A&E events of each step, writing), that
// --compare's two runs share one seed, that report.json's comparison is computed from the runs' own scores, that a
// failed run goes through mapError, and that the server's progress events (run labels, refinement iterations,
// losses) and report.json match `heed generate` for the same request.
import { HeedError } from '../engine/errors.js';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import type { AeEvent } from '../engine/guidance/attend-excite.js';
import { runGenerateJob, type RunLabel } from '../engine/jobs/generate.js';
import { runGenerate } from '../engine/cli/generate.js';
import { createRunner } from '../engine/server/engine-runner.js';
import { ModelCache } from '../engine/server/cache.js';
import type { ProgressUpdate } from '../engine/server/runner.js';

interface ScoreJson { lastStepScore: number | null; maxScore: number | null; daamMax: number | null }
interface ReportJson {
  seed: number | null;
  timingsMs?: unknown;
  excite: { guided?: boolean; compare?: { word: string; plain: ScoreJson; excited: ScoreJson }[]; files?: string[] };
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

describe('generate job: one flow for the CLI and the server', function () {
  let models: TinyModels;
  let tmp: string;
  let pipe: StableDiffusionPipeline;
  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-generate-job-'));
    pipe = await StableDiffusionPipeline.load(models.sd, { threads: 2, session: { logSeverity: 4 } }); // the size test fails inside ORT on purpose
  });
  after(async function () {
    if (pipe) await pipe.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('compare: plan, then the plain run, then the guided run with each step\'s A&E events; one seed for both', async function () {
    const log: string[] = [];
    const batches: { step: number; events: readonly AeEvent[] }[] = [];
    const outDir = join(tmp, 'compare');
    // No seed: the job must draw one and use it for both runs. A threshold at step 0 forces refinements there.
    const job = await runGenerateJob(pipe, {
      prompt: 'a cat and a frog', steps: 3, width: 128, height: 128, outDir, model: models.sd,
      excite: { subjects: ['cat', 'frog'], compare: true, thresholds: { 0: 0.999 }, maxRefinement: 2 },
    }, {
      onPlan: (p) => log.push(`plan ${p.subjects.map((s) => s.word).join(',')}`),
      onRunStart: (run) => log.push(`start ${run}`),
      onStep: (run, s) => void log.push(`step ${run} ${s.step}`),
      onGuidance: (c, events) => {
        log.push(`guidance ${c.step}`);
        batches.push({ step: c.step, events });
      },
      onRunEnd: (run) => log.push(`end ${run}`),
      onWriting: () => log.push(`writing ${existsSync(join(outDir, 'excite.json'))}`),
    });
    const total = job.result.timesteps.length;
    const steps = (run: RunLabel, withGuidance: boolean): string[] =>
      Array.from({ length: total }, (_, i) => [...(withGuidance ? [`guidance ${i}`] : []), `step ${run} ${i}`]).flat();
    assert.deepEqual(log, [
      'plan cat,frog',
      'start plain', ...steps('plain', false), 'end plain',
      'start guided', ...steps('guided', true), 'end guided',
      'writing false',
    ]);

    assert.ok(job.plain && job.excite?.comparison, 'compare gives the plain run and a comparison');
    assert.equal(typeof job.result.seed, 'number');
    assert.equal(job.plain.result.seed, job.result.seed, 'both runs use the drawn seed');
    assert.deepEqual(job.plain.result.initLatents, job.result.initLatents, 'both runs start from the same latents');

    // Each batch holds exactly the events A&E logged at that step, and together they are its whole log.
    for (const b of batches) assert.ok(b.events.every((e) => e.step === b.step), `events of step ${b.step} only`);
    const exciteJson = readJson<{ events: { step: number; phase: string; kind: string }[] }>(job.excite.json);
    assert.deepEqual(batches.flatMap((b) => b.events.map((e) => [e.step, e.phase, e.kind])), exciteJson.events.map((e) => [e.step, e.phase, e.kind]));
    assert.ok(batches[0]!.events.some((e) => e.phase === 'refine'), 'the step-0 threshold makes A&E refine');

    // report.json's comparison comes from each run's per-step scores.
    const report = readJson<ReportJson>(join(outDir, 'report.json'));
    const summary = (byStep: number[], daamMax: number | undefined): ScoreJson => ({ lastStepScore: byStep.at(-1)!, maxScore: Math.max(...byStep), daamMax: daamMax ?? null });
    assert.deepEqual(report.excite.compare, job.excite.scores.map((s, k) => ({
      word: s.word, tokenIndex: s.tokenIndex,
      plain: summary(job.plain!.scores[k]!.byStep, job.plain!.scores[k]!.daamMax), excited: summary(s.byStep, s.daamMax),
    })));
    assert.equal(readJson<ReportJson>(join(outDir, 'plain', 'report.json')).excite.guided, false);
    for (const f of ['compare.png', 'excite.json', 'excite_loss.png']) assert.ok(job.written.files.includes(join(outDir, f)), `${f} listed`);
    assert.deepEqual(report.excite.files, ['excite.json', 'excite_loss.png']);
  });

  it('a failed run goes through mapError with the job\'s size, and ends no run', async function () {
    const log: string[] = [];
    const hooks = {
      onRunStart: (run: unknown) => log.push(`start ${run}`),
      onRunEnd: (run: unknown) => log.push(`end ${run}`),
      mapError: (e: unknown, size: { width: number; height: number }) => new Error(`mapped ${size.width}x${size.height}: ${e instanceof Error ? e.name : typeof e}`),
    };
    // A latents file that does not exist fails inside the run.
    const failing = runGenerateJob(pipe, { prompt: 'a cat', steps: 1, seed: 1, width: 64, height: 64, latents: join(tmp, 'missing.npy'), outDir: join(tmp, 'odd'), model: models.sd }, hooks);
    await assert.rejects(failing, /^Error: mapped 64x64: /);
    assert.deepEqual(log, ['start undefined']);
    assert.ok(!existsSync(join(tmp, 'odd', 'report.json')));
    // A size the UNet cannot take is refused before any run starts (issue 16 item 10), with its field.
    log.length = 0;
    await assert.rejects(runGenerateJob(pipe, { prompt: 'a cat', steps: 1, seed: 1, width: 120, height: 128, outDir: join(tmp, 'odd2'), model: models.sd }, hooks),
      (e: unknown) => e instanceof HeedError && e.kind === 'invalid_input' && e.field === 'width' && /does not fit this UNet/.test(e.message));
    assert.deepEqual(log, []);
  });

  it('server runner with compare: progress labels the runs, streams refinements and losses; report.json equals `heed generate`\'s', async function () {
    const events: ProgressUpdate[] = [];
    const cache = new ModelCache(1 << 30);
    const outDir = join(tmp, 'server');
    const res = await createRunner().run({
      kind: 'generate', jobId: 'j1', modelDir: models.sd, outDir,
      request: { type: 'generate', id: 'r1', model: models.sd, prompt: 'a cat and a frog', steps: 3, seed: 7, width: 128, height: 128, maps: true, excite: { subjects: ['cat', 'frog'], compare: true, thresholds: { 0: 0.999 }, maxRefinement: 2 } },
    }, { signal: new AbortController().signal, progress: (u) => events.push(u), cache, log: () => undefined });
    await cache.clear();
    assert.equal(res.kind, 'generate');

    const denoising = events.filter((e) => e.phase === 'denoising');
    const total = denoising[0]!.total;
    assert.deepEqual(denoising.map((e) => [e.run, e.step]), [
      ...Array.from({ length: total }, (_, i) => ['plain', i + 1]), ...Array.from({ length: total }, (_, i) => ['guided', i + 1]),
    ]);
    assert.ok(denoising.slice(0, total).every((e) => e.loss === undefined), 'the plain run has no A&E loss');
    const guided = denoising.slice(total);
    assert.ok(guided.every((e) => typeof e.loss === 'number' && e.scores && Object.keys(e.scores).join() === 'cat,frog'));
    const refining = events.filter((e) => e.phase === 'refining');
    assert.ok(refining.length > 0, 'refinements are streamed');
    for (const r of refining) {
      assert.equal(r.run, 'guided');
      assert.ok(r.iteration! >= 1);
      // The step's denoising event reports the loss after the last refinement.
      const same = guided.find((e) => e.step === r.step)!;
      assert.deepEqual([same.loss, same.scores], [r.loss, r.scores]);
    }
    assert.equal(events.filter((e) => e.phase === 'writing').length, 1);
    assert.ok(events.findIndex((e) => e.phase === 'writing') > events.indexOf(guided.at(-1)!));

    // The CLI in-process with the same settings writes the same report.json (timings aside).
    const cliOut = join(tmp, 'cli');
    await runGenerate({
      model: models.sd, prompt: 'a cat and a frog', negative: '', steps: 3, guidance: 7.5, seed: 7, size: { width: 128, height: 128 },
      out: cliOut, maps: true, colormap: 'turbo', opacity: 0.5, threads: 2, quiet: true, summary: false,
      excite: 'cat,frog', compare: true, aeThresholds: { 0: 0.999 }, aeMaxRefinement: 2,
    });
    const strip = (r: ReportJson): ReportJson => ({ ...r, timingsMs: null });
    assert.deepEqual(strip(readJson<ReportJson>(join(outDir, 'report.json'))), strip(readJson<ReportJson>(join(cliOut, 'report.json'))));
    assert.deepEqual(strip(readJson<ReportJson>(join(outDir, 'plain', 'report.json'))), strip(readJson<ReportJson>(join(cliOut, 'plain', 'report.json'))));
    for (const f of ['image.png', 'compare.png', 'plain/image.png', 'maps.png']) {
      assert.ok(readFileSync(join(outDir, f)).equals(readFileSync(join(cliOut, f))), `${f} byte-identical`);
    }
  });
});
