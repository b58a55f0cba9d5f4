// Files of `heed eval explain`: eval-explain.json (the whole report, per-image hits included), eval-explain.md (the
// table: AUCs and segmentation scores per method) and perturbation.png (accuracy vs removed fraction, positive and
// negative side by side, one line per method).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decodeImage, renderLineChart, renderSideBySide, type ChartSeries } from '../render/index.js';
import type { EvalExplainReport } from './eval-explain.js';

export const EVAL_EXPLAIN_FILES = { json: 'eval-explain.json', markdown: 'eval-explain.md', chart: 'perturbation.png' } as const;

function f3(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3);
}

/** The Markdown summary: protocol in a few lines, then one row per method. */
export function evalExplainMarkdown(r: EvalExplainReport): string {
  const hasSeg = r.methods.some((m) => m.segmentation);
  const lines: string[] = [];
  lines.push(`# Explanation evaluation`);
  lines.push('');
  lines.push(`Model \`${r.model.dir}\` (${r.model.classes} classes, ${r.model.grid.height}×${r.model.grid.width} patches of ${r.model.patch.height}×${r.model.patch.width} px), ` +
    `${r.images.count} images from \`${r.images.dir}\` (${r.images.withMasks} with masks, ${r.images.withLabels} with labels).` +
    (r.modelAccuracy !== undefined ? ` Unperturbed top-1 accuracy against the labels: ${f3(r.modelAccuracy)}.` : ''));
  lines.push('');
  lines.push(`Perturbation: target class = ${r.protocol.target === 'label' ? 'the label' : "the model's prediction"}; ${r.protocol.granularity}s ranked by the map ` +
    `(${r.protocol.granularity === 'pixel' ? 'upsampled bilinearly' : 'patch grid'}), removed ${r.protocol.steps.map((s) => `${Math.round(s * 100)}`).join('/')} %, ` +
    `filled with ${r.protocol.fill === 'black' ? 'black (0 in the [0, 1] image, as the paper\'s code)' : r.protocol.fill === 'zero' ? '0 in the normalised input' : `the colour ${r.protocol.fill}`}. ` +
    `AUC: ${r.protocol.auc}. Positive: lower is better; negative: higher is better.`);
  if (hasSeg) lines.push('', `Segmentation: ${r.protocol.segmentation}.`);
  lines.push('');
  const head = ['method', 'positive AUC ↓', 'negative AUC ↑', ...(hasSeg ? ['pixel acc ↑', 'mIoU ↑', 'mAP ↑'] : []), 'ms / image'];
  lines.push(`| ${head.join(' | ')} |`);
  lines.push(`|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const m of r.methods) {
    const cells = [m.method, f3(m.positive.auc), f3(m.negative.auc)];
    if (hasSeg) cells.push(f3(m.segmentation?.pixelAccuracy), f3(m.segmentation?.mIoU), f3(m.segmentation?.mAP));
    cells.push(m.method === 'random' ? '–' : m.meanMs.toFixed(1));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('Accuracy after each step (positive / negative):');
  lines.push('');
  const steps = r.protocol.steps.map((s) => `${Math.round(s * 100)} %`);
  lines.push(`| method | direction | ${steps.join(' | ')} |`);
  lines.push(`|---|---|${steps.map(() => '---:').join('|')}|`);
  for (const m of r.methods) {
    for (const d of ['positive', 'negative'] as const) lines.push(`| ${m.method} | ${d} | ${m[d].accuracy.map((a) => a.toFixed(2)).join(' | ')} |`);
  }
  if (r.meanGradientMs !== undefined) lines.push('', `The gradient run shared by the gradient methods took ${r.meanGradientMs.toFixed(1)} ms per image (not in the per-method times).`);
  return lines.join('\n') + '\n';
}

async function chartPng(r: EvalExplainReport): Promise<Buffer> {
  const panel = async (d: 'positive' | 'negative'): Promise<Awaited<ReturnType<typeof decodeImage>>> => {
    const series: ChartSeries[] = r.methods.map((m) => ({
      name: `${m.method} (${m[d].auc.toFixed(3)})`,
      points: r.protocol.steps.map((s, i) => [s * 100, m[d].accuracy[i]!] as const),
      ...(m.method === 'random' ? { dashed: true, color: '#888888' } : {}),
    }));
    const png = await renderLineChart({
      series, xLabel: `removed (%), ${d === 'positive' ? 'most' : 'least'} relevant first`, yLabel: 'accuracy (AUC in the legend)',
      xDomain: [0, 90], yDomain: [0, 1], width: 820, height: 420,
    });
    return decodeImage(png, `${d} chart`);
  };
  const { png } = await renderSideBySide([
    { image: await panel('positive'), title: 'positive perturbation: lower AUC is better' },
    { image: await panel('negative'), title: 'negative perturbation: higher AUC is better' },
  ]);
  return png;
}

/** Indented JSON with arrays of numbers on one line (per-image hit rows would otherwise take a line per 0 or 1). */
export function compactJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]/g, (_, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`);
}

/** Writes the three files into `outDir` (created) and returns their absolute paths. */
export async function writeEvalExplainOutputs(r: EvalExplainReport, outDir: string): Promise<string[]> {
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, EVAL_EXPLAIN_FILES.json), join(dir, EVAL_EXPLAIN_FILES.markdown), join(dir, EVAL_EXPLAIN_FILES.chart)];
  writeFileSync(files[0]!, compactJson(r) + '\n');
  writeFileSync(files[1]!, evalExplainMarkdown(r));
  writeFileSync(files[2]!, await chartPng(r));
  return files;
}
