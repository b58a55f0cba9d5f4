// `heed explain --compare`: the map methods side by side on one image (engine/explain/compare.ts does the runs,
// engine/jobs/compare-outputs.ts the files); this prints the per-method wall times or the JSON summary.
import { relative } from 'node:path';
import { existingFile, ms, say, warn } from './common.js';
import { commonExplainSetup, withFlagNames, type ExplainCliOptions } from './explain.js';
import { stepProgress } from './progress.js';
import { UsageError } from './errors.js';
import type { CompareResult } from '../explain/compare.js';
import type { WrittenFiles } from '../jobs/explain-outputs.js';

export async function runExplainCompare(o: ExplainCliOptions): Promise<{ result: CompareResult; written: WrittenFiles }> {
  if (o.top !== undefined) throw new UsageError('--compare explains one class: give --class N (default: the top class), not --top');
  if ((o.text?.length ?? 0) > 1) throw new UsageError(`--compare explains one image–text pair: give one --text, not ${o.text!.length}`);
  const { model, out, trace, mode, options } = await commonExplainSetup(o);
  const image = existingFile(o.image!, '--image', 'give a PNG, JPEG or WebP file');
  const { validateCompareOptions } = await import('../explain/compare.js');
  const { validateExplainOptions } = await import('../explain/index.js');
  const { openExplainModels, runCompareJob } = await import('../jobs/explain.js');
  const { methods, ...rest } = options;
  const compareOptions = { ...rest, ...(methods ? { methods } : {}), ...(o.compareRepeat !== undefined ? { repeat: o.compareRepeat } : {}) };
  say(mode, `comparing methods on ${image} with ${model}`);
  const bar = stepProgress({ enabled: !mode.quiet && !mode.json, label: 'compare', lineIntervalMs: 0 });
  const job = await (async () => {
    // Before loading the model: a mistake fails in milliseconds.
    validateCompareOptions(compareOptions);
    validateExplainOptions(rest);
    const models = await openExplainModels(model, options.load);
    try {
      return await runCompareJob(models, { image, options: compareOptions, outDir: out, scale: o.compareScale ?? 'normalized', ...(trace !== undefined ? { traceDir: trace } : {}) }, {
        // Warm-up runs count against all candidates, timed runs against those that apply: show them as two phases.
        onRun: (phase, method, i, total) => bar.update(i, total, `${phase} ${method}`),
      });
    } finally {
      bar.stop();
      await models.release();
    }
  })().catch(withFlagNames);
  const { result, written } = job;
  if (mode.json) {
    process.stdout.write(JSON.stringify({
      outDir: written.outDir, files: written.files, traceFiles: written.traceFiles, classIndex: result.classIndex ?? null, label: result.label ?? null, text: result.text ?? null,
      methods: result.methods.map((m) => ({ method: m.method, about: m.about, wallMs: m.wallMs, runsMs: m.runsMs, timingsMs: m.timings })), skipped: result.skipped, notes: result.notes,
    }, null, 2) + '\n');
  } else {
    warn(mode, [...result.skipped.map((s) => `${s.method} skipped: ${s.reason}`), ...result.notes]);
    if (result.classIndex !== undefined) say(mode, `class ${result.classIndex} (${result.label ?? ''})`);
    if (result.text !== undefined) say(mode, `text ${JSON.stringify(result.text)}`);
    for (const m of result.methods) say(mode, `  ${m.method.padEnd(24)} ${ms(m.wallMs).padStart(8)}  (forward ${ms(m.timings.forward ?? 0)})`);
    say(mode, `files (${relative(process.cwd(), written.outDir) || '.'}/): ${written.files.join(', ')}`);
  }
  return { result, written };
}
