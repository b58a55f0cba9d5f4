// The files of a generation in a job folder, in the CLI's documented layout (`heed generate --out`): image.png,
// maps/<index>-<word>.png (+ .npy), maps.png (grid), report.json, and trace/ when asked.
//
// INTERIM: the CLI helper owns the writer of these files (engine/cli). Until it exports a reusable
// `writeGenerateOutputs()`, this module writes the same layout with the same engine pieces (render/, trace.ts,
// AttentionStore.wordMap) so the server's results are usable; once it lands, this function should delegate to it so the
// server and the CLI cannot drift.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { GenerateResult as PipelineResult } from '../diffusion/pipeline.js';
import { distinctWords, wordFileStem, writeTrace } from '../diffusion/trace.js';
import { encodeNpy } from '../io/npy.js';
import { encodePng, floatHwcToRgb, overlayHeatmap, renderGrid } from '../render/index.js';

export interface WrittenMap {
  word: string;
  tokenIndices: number[];
  /** Max of the word's DAAM map (before display normalisation). */
  maxAttention?: number;
  png?: string;
  npy?: string;
}

export interface WrittenGenerate {
  image: string;
  maps: WrittenMap[];
  mapsGrid?: string;
  /** Absolute paths of every file written. */
  files: string[];
  /** What report.json holds. */
  report: Record<string, unknown>;
}

export async function writeGenerateFiles(result: PipelineResult, outDirIn: string, options: { trace?: boolean } = {}): Promise<WrittenGenerate> {
  const outDir = resolve(outDirIn);
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const put = (name: string, data: Buffer | Uint8Array | string): string => {
    const p = join(outDir, name);
    writeFileSync(p, data);
    files.push(p);
    return p;
  };
  const { width, height, data } = result.image;
  const rgb = floatHwcToRgb(data, height, width, 3);
  const image = put('image.png', await encodePng(rgb));

  const maps: WrittenMap[] = [];
  let mapsGrid: string | undefined;
  if (result.attention && result.attention.options.daam) {
    mkdirSync(join(outDir, 'maps'), { recursive: true });
    const global = result.attention.daamGlobal();
    const tiles = [];
    for (const w of distinctWords(result.prompt)) {
      const m = result.attention.wordMap(w.tokenIndices, global);
      let max = -Infinity;
      for (const v of m) if (v > max) max = v;
      const stem = `${w.tokenIndices[0]}-${wordFileStem(w.word)}`;
      const map = { width: global.width, height: global.height, data: m };
      const overlay = overlayHeatmap(rgb, map, { colormap: 'turbo', normalize: 'minmax', resample: 'bicubic', opacity: 0.5 });
      const png = put(`maps/${stem}.png`, await encodePng(overlay));
      const npy = put(`maps/${stem}.npy`, encodeNpy(m, [global.height, global.width], 'float32'));
      maps.push({ word: w.word, tokenIndices: w.tokenIndices, maxAttention: max, png, npy });
      tiles.push({ image: overlay, label: w.word });
    }
    if (tiles.length) mapsGrid = put('maps.png', (await renderGrid(tiles, { title: result.promptText })).png);
  }

  let traceFiles: string[] = [];
  if (options.trace) {
    const manifest = writeTrace(join(outDir, 'trace'), result);
    traceFiles = [...manifest.files.map((f) => join(outDir, 'trace', f.file)), join(outDir, 'trace', 'manifest.json')];
  }

  const report: Record<string, unknown> = {
    prompt: result.promptText,
    negativePrompt: result.negativePromptText,
    seed: result.seed,
    settings: result.settings,
    tokens: result.prompt.ids.slice(0, result.prompt.length).map((id, index) => ({ index, id, token: result.prompt.tokens[index] })),
    truncated: result.prompt.truncated,
    droppedWords: result.prompt.droppedWords,
    words: result.prompt.words.map((w) => ({ word: w.word, start: w.start, end: w.end, tokenIndices: w.tokenIndices })),
    maps: maps.map((m) => ({ word: m.word, tokenIndices: m.tokenIndices, maxAttention: m.maxAttention, png: m.png && m.png.slice(outDir.length + 1) })),
    timingsMs: { encode: result.timings.encodeMs, denoise: result.timings.denoiseMs, decode: result.timings.decodeMs, total: result.timings.totalMs, steps: result.timings.stepMs },
    warnings: result.warnings,
  };
  put('report.json', JSON.stringify(report, null, 2) + '\n');
  return { image, maps, ...(mapsGrid ? { mapsGrid } : {}), files: [...files, ...traceFiles], report };
}
