// `heed explain --images DIR --method distance`: mean attention distance averaged over a folder (engine/jobs/distance-set.ts).
import { relative } from 'node:path';
import { existingDir, interruptSignal, say } from './common.js';
import { commonExplainSetup, withFlagNames, type ExplainCliOptions } from './explain.js';
import { stepProgress } from './progress.js';
import { UsageError } from './errors.js';
import type { DistanceSetOutput } from '../jobs/distance-set.js';

export async function runExplainSet(o: ExplainCliOptions): Promise<DistanceSetOutput> {
  if (o.trace !== undefined) throw new UsageError('--images writes distance_set.npy into --out; leave out --trace');
  const { model, out, mode, options } = await commonExplainSetup(o);
  const dir = existingDir(o.images!, '--images', 'give the folder holding the images');
  const { checkSetMethods, listImages, runDistanceSetJob } = await import('../jobs/distance-set.js');
  const { validateExplainOptions } = await import('../explain/index.js');
  const { openExplainModels } = await import('../jobs/explain.js');
  const bar = stepProgress({ enabled: !mode.quiet && !mode.json, label: 'images', lineIntervalMs: 0 });
  const interrupt = interruptSignal();
  const job = await (async () => {
    checkSetMethods(options); // before loading the model
    validateExplainOptions(options);
    listImages(dir);
    const models = await openExplainModels(model, options.load);
    try {
      return await runDistanceSetJob(models, { dir, options, outDir: out }, { signal: interrupt.signal, onImage: (done, total) => bar.update(done, total) });
    } finally {
      bar.stop();
      interrupt.dispose();
      await models.release();
    }
  })().catch(withFlagNames);
  if (mode.json) {
    process.stdout.write(JSON.stringify({ outDir: job.outDir, files: job.files, images: job.summary.images, patch: job.patch, mean: job.summary.mean, std: job.summary.std }, null, 2) + '\n');
  } else {
    say(mode, `mean attention distance over ${job.summary.images} image(s), ${job.summary.mean.length} blocks × ${job.summary.mean[0]!.length} heads`);
    say(mode, `files (${relative(process.cwd(), job.outDir) || '.'}/): ${job.files.join(', ')}`);
  }
  return job;
}
