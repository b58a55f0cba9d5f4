// `heed explain --video FILE`: per-frame maps of any method (engine/jobs/video.ts), with progress per frame.
import { relative } from 'node:path';
import { existingFile, interruptSignal, say } from './common.js';
import { commonExplainSetup, withFlagNames, type ExplainCliOptions } from './explain.js';
import { stepProgress } from './progress.js';
import { UsageError } from './errors.js';
import type { VideoJobOutput } from '../jobs/video.js';

export async function runExplainVideo(o: ExplainCliOptions): Promise<VideoJobOutput> {
  if (o.top !== undefined) throw new UsageError('a video explains one class per frame: give --class N (default: each frame\'s top class), not --top');
  if (o.trace !== undefined) throw new UsageError('--video writes its .npy stacks into --out; leave out --trace');
  const { model, out, mode, options } = await commonExplainSetup(o);
  const video = existingFile(o.video!, '--video', 'give an animated GIF or WebP (or, with ffmpeg on PATH, any video ffmpeg reads)');
  const { videoMethods, runVideoJob } = await import('../jobs/video.js');
  const { validateExplainOptions } = await import('../explain/index.js');
  const { openExplainModels } = await import('../jobs/explain.js');
  const bar = stepProgress({ enabled: !mode.quiet && !mode.json, label: 'frames', lineIntervalMs: 0 });
  const interrupt = interruptSignal();
  const job = await (async () => {
    videoMethods(options); // before loading the model
    validateExplainOptions(options);
    const models = await openExplainModels(model, options.load);
    try {
      return await runVideoJob(models, {
        video, options, outDir: out, ...(o.maxFrames !== undefined ? { maxFrames: o.maxFrames } : {}), ...(o.fps !== undefined ? { fps: o.fps } : {}),
      }, {
        signal: interrupt.signal,
        onFrames: (v) => say(mode, `${v.count} frame(s) of ${v.width}×${v.height} (decoded by ${v.decoder}${v.totalFrames !== undefined ? `, the first ${v.count} of ${v.totalFrames}` : ''})`),
        onFrame: (done, total) => bar.update(done, total, `frame ${done}`),
      });
    } finally {
      bar.stop();
      interrupt.dispose();
      await models.release();
    }
  })().catch((e: unknown) => {
    if (e instanceof Error && e.message.includes('fps does not apply')) e.message = e.message.replace('fps does not apply', '--fps does not apply');
    return withFlagNames(e);
  });
  if (mode.json) {
    process.stdout.write(JSON.stringify({ outDir: job.outDir, files: job.files, frames: job.frames.length, decoder: job.decoder, methods: job.methods.map((m) => ({ method: m.method, stem: m.stem, panels: m.panels })) }, null, 2) + '\n');
  } else {
    say(mode, `files (${relative(process.cwd(), job.outDir) || '.'}/): ${job.files.join(', ')}`);
  }
  return job;
}
