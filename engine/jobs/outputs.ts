// The files of one generation, in the layout `heed generate --out DIR` documents; the generate job writes them for
// both faces, so a server job folder holds the same thing:
//   image.png                  the generated image
//   maps/<index>-<word>.png    the word's DAAM heat map over the image (<index> = the word's first token position)
//   maps/<index>-<word>.npy    the same map, float32 [latent h, latent w], unnormalised, for numpy users
//   maps/steps/<h>x<w>/<index>-<word>.npy   with perStep: the word's map at every UNet call, float32 [calls, h, w]
//   maps/layers/<h>x<w>/<index>-<word>.npy  with perLayer: one map per layer of that grid, float32 [layers, h, w]
//                                          (layer names and call timesteps in report.json stepMaps / layerMaps)
//   maps.png                   grid: the image, then every word's overlay, each labelled
//   report.json                prompt, tokens, word alignment, settings, timings, per-token/word max attention,
//                              binding margins of the prompt's modifiers (leakage indicator), warnings
//   <trace dir>/…              with a trace dir: writeTrace's .npy files and manifest.json
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { GenerateResult } from '../diffusion/pipeline.js';
import { distinctWords, wordFileStem, writeTrace } from './trace.js';
import { encodeNpy } from '../io/npy.js';
import { encodePng, floatHwcToRgb, mapStats, overlayHeatmap, renderGrid, resizeRgb, type ColormapName, type GridTile } from '../render/index.js';
import { bindingMargins, type BindingMargin } from '../attention/binding.js';

export interface WrittenMap {
  word: string;
  tokenIndices: number[];
  /** Max of the word's DAAM map (before display normalisation). */
  maxAttention?: number;
  /** Absolute paths. */
  png?: string;
  npy?: string;
  /** Per-call maps, one file per resolution ([calls, h, w]). */
  perStep?: WrittenMapStack[];
  /** Per-layer maps, one file per grid size ([layers, h, w]). */
  perLayer?: WrittenMapStack[];
}

export interface WrittenMapStack {
  height: number;
  width: number;
  /** Absolute path of the .npy. */
  npy: string;
}

/** What the per-step files of one resolution hold (report.json `stepMaps`). */
export interface StepMapsInfo {
  height: number;
  width: number;
  calls: number;
  /** Timestep of each UNet call (PNDM repeats one). */
  timesteps: number[];
}

/** What the per-layer files of one grid size hold (report.json `layerMaps`). */
export interface LayerMapsInfo {
  height: number;
  width: number;
  /** Module path of each plane, e.g. 'down_blocks.2.attentions.0.transformer_blocks.0.attn2'. */
  layers: string[];
}

export interface WrittenGenerate {
  /** Absolute path of image.png. */
  image: string;
  maps: WrittenMap[];
  mapsGrid?: string;
  stepMaps?: StepMapsInfo[];
  layerMaps?: LayerMapsInfo[];
  traceDir?: string;
  /** Absolute paths of every file written. */
  files: string[];
  /** What report.json holds. */
  report: Record<string, unknown>;
}

export interface WriteGenerateOptions {
  /** Write per-word maps and the grid (default: whenever the result carries DAAM maps). */
  maps?: boolean;
  /** Also write each word's map at every UNet call (needs per-step maps in the result; default false). */
  perStep?: boolean;
  /** Also write each word's map per layer (needs per-layer maps in the result; default false). */
  perLayer?: boolean;
  /** Trace folder (absolute or relative to the cwd); omitted: no trace. */
  traceDir?: string;
  colormap?: ColormapName;
  /** Heat-map opacity over the image (default 0.5). */
  opacity?: number;
  /** Readable text of a BPE token (ClipTokenizer.tokenText); without it report.json lists raw tokens only. */
  tokenText?: (token: string) => string;
  /** Extra top-level report.json fields (e.g. the latents file, Attend-and-Excite results). */
  extraReport?: Record<string, unknown>;
}

/** Longest side of a grid tile: maps.png stays a reasonable size for any image size. */
const GRID_TILE_MAX = 256;

function countNonFinite(data: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) n++;
  return n;
}

function round(v: number, digits = 6): number {
  return Number.isFinite(v) ? Number(v.toPrecision(digits)) : v;
}

export async function writeGenerateOutputs(result: GenerateResult, outDirIn: string, o: WriteGenerateOptions = {}): Promise<WrittenGenerate> {
  const outDir = resolve(outDirIn);
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const warnings = [...result.warnings];
  const put = (name: string, data: Buffer | Uint8Array | string): string => {
    const p = join(outDir, name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, data);
    files.push(p);
    return p;
  };

  const { width, height, data } = result.image;
  const badPixels = countNonFinite(data);
  if (badPixels > 0) warnings.push(`the decoded image has ${badPixels} non-finite values (drawn black): the model produced NaN/Inf; try another seed or scheduler, or check the model's precision`);
  const rgb = floatHwcToRgb(data, height, width, 3);
  const image = put('image.png', await encodePng(rgb));

  const wantMaps = o.maps ?? (result.attention !== null && result.attention.options.daam);
  const maps: WrittenMap[] = [];
  const tokenMax: { index: number; token: string; maxAttention: number }[] = [];
  let mapsGrid: string | undefined;
  let stepMaps: StepMapsInfo[] | undefined;
  let layerMaps: LayerMapsInfo[] | undefined;
  let bindings: BindingMargin[] | undefined;
  if (wantMaps) {
    if (!result.attention || !result.attention.options.daam) {
      warnings.push('maps were asked for but the generation collected no DAAM maps');
    } else {
      const global = result.attention.daamGlobal();
      const plane = global.height * global.width;
      for (let r = 0; r < global.tokens; r++) {
        const s = mapStats(global.data.subarray(r * plane, (r + 1) * plane));
        tokenMax.push({ index: r, token: result.prompt.tokens[r] ?? '', maxAttention: round(s.max) });
      }
      mkdirSync(join(outDir, 'maps'), { recursive: true });
      const scale = Math.min(1, GRID_TILE_MAX / Math.max(width, height));
      const tileW = Math.max(1, Math.round(width * scale));
      const tileH = Math.max(1, Math.round(height * scale));
      const tiles: GridTile[] = [{ image: await resizeRgb(rgb, tileW, tileH), label: 'image' }];
      const usedStems = new Set<string>();
      for (const w of distinctWords(result.prompt)) {
        const rows = w.tokenIndices.filter((i) => i < global.tokens);
        if (rows.length === 0) continue;
        const m = result.attention.wordMap(rows, global);
        const stats = mapStats(m);
        if (stats.nonFinite > 0) warnings.push(`the map of "${w.word}" has ${stats.nonFinite} non-finite values (drawn as 0)`);
        let stem = `${rows[0]}-${wordFileStem(w.word)}`;
        while (usedStems.has(stem)) stem += '_';
        usedStems.add(stem);
        const overlay = overlayHeatmap(rgb, { width: global.width, height: global.height, data: m }, {
          colormap: o.colormap ?? 'turbo', normalize: 'minmax', resample: 'bicubic', opacity: o.opacity ?? 0.5,
        });
        const png = put(`maps/${stem}.png`, await encodePng(overlay));
        const npy = put(`maps/${stem}.npy`, encodeNpy(m, [global.height, global.width], 'float32'));
        const written: WrittenMap = { word: w.word, tokenIndices: rows, maxAttention: round(stats.max), png, npy };
        if (o.perStep) {
          written.perStep = [];
          for (const r of result.attention.stepResolutions()) {
            const sm = result.attention.stepWordMaps(r, rows);
            const grid = `${sm.height}x${sm.width}`;
            written.perStep.push({ height: sm.height, width: sm.width, npy: put(`maps/steps/${grid}/${stem}.npy`, encodeNpy(sm.data, [sm.calls, sm.height, sm.width], 'float32')) });
            stepMaps ??= [];
            if (!stepMaps.some((x) => x.height === sm.height && x.width === sm.width)) {
              stepMaps.push({ height: sm.height, width: sm.width, calls: sm.calls, timesteps: result.attention.records.map((c) => c.timestep) });
            }
          }
        }
        if (o.perLayer) {
          written.perLayer = [];
          for (const g of result.attention.layerWordMaps(rows)) {
            const grid = `${g.height}x${g.width}`;
            written.perLayer.push({ height: g.height, width: g.width, npy: put(`maps/layers/${grid}/${stem}.npy`, encodeNpy(g.data, [g.layers.length, g.height, g.width], 'float32')) });
            layerMaps ??= [];
            if (!layerMaps.some((x) => x.height === g.height && x.width === g.width)) layerMaps.push({ height: g.height, width: g.width, layers: g.layers });
          }
        }
        maps.push(written);
        tiles.push({ image: await resizeRgb(overlay, tileW, tileH), label: w.word });
      }
      bindings = await promptBindings(result, (word) => {
        const w = result.prompt.words.find((x) => x.normalized === word.toLowerCase() && x.tokenIndices.some((i) => i < global.tokens));
        return w ? result.attention!.wordMap(w.tokenIndices.filter((i) => i < global.tokens), global) : undefined;
      });
      if (maps.length > 0) {
        mapsGrid = put('maps.png', (await renderGrid(tiles, { title: result.promptText, tileWidth: tileW, tileHeight: tileH })).png);
      } else {
        warnings.push('the prompt has no word with a letter or digit inside the token window: no per-word maps');
      }
    }
  }

  let traceDir: string | undefined;
  if (o.traceDir !== undefined) {
    traceDir = resolve(o.traceDir);
    const manifest = writeTrace(traceDir, result);
    files.push(...manifest.files.map((f) => join(traceDir!, f.file)), join(traceDir, 'manifest.json'));
  }

  const rel = (p: string | undefined): string | undefined => (p === undefined ? undefined : relative(outDir, p) || '.');
  const n = result.prompt.length;
  const report: Record<string, unknown> = {
    prompt: result.promptText,
    negativePrompt: result.negativePromptText,
    seed: result.seed,
    settings: result.settings,
    timesteps: result.timesteps,
    tokens: result.prompt.ids.slice(0, n).map((id, index) => ({
      index, id, token: result.prompt.tokens[index],
      ...(o.tokenText ? { text: o.tokenText(result.prompt.tokens[index]!) } : {}),
    })),
    words: result.prompt.words.map((w) => ({ word: w.word, normalized: w.normalized, start: w.start, end: w.end, tokenIndices: w.tokenIndices })),
    truncated: result.prompt.truncated,
    droppedWords: result.prompt.droppedWords,
    droppedTokenCount: result.prompt.droppedTokenCount,
    maps: maps.map((m) => ({
      word: m.word, tokenIndices: m.tokenIndices, maxAttention: m.maxAttention, png: rel(m.png), npy: rel(m.npy),
      ...(m.perStep ? { perStep: m.perStep.map((x) => rel(x.npy)) } : {}),
      ...(m.perLayer ? { perLayer: m.perLayer.map((x) => rel(x.npy)) } : {}),
    })),
    ...(stepMaps ? { stepMaps } : {}),
    ...(layerMaps ? { layerMaps } : {}),
    tokenMaxAttention: tokenMax,
    ...(bindings && bindings.length > 0 ? { bindings: bindings.map((b) => ({ ...b, margin: round(b.margin) })) } : {}),
    ...(result.attention && result.attention.options.daam ? { mapLayers: result.attention.daamLayers() } : {}),
    timingsMs: {
      encode: round(result.timings.encodeMs, 4),
      // opening the UNet session (graph surgery for the exposed attention); paid once per model and set of maps
      ...(typeof result.timings.prepareMs === 'number' ? { prepareUnet: round(result.timings.prepareMs, 4) } : {}),
      denoise: round(result.timings.denoiseMs, 4), decode: round(result.timings.decodeMs, 4),
      total: round(result.timings.totalMs, 4), steps: result.timings.stepMs.map((v) => round(v, 4)),
    },
    files: { image: rel(image), ...(mapsGrid ? { mapsGrid: rel(mapsGrid) } : {}), ...(traceDir ? { trace: traceDir } : {}) },
    ...(o.extraReport ?? {}),
    warnings,
  };
  put('report.json', JSON.stringify(report, null, 2) + '\n');
  return { image, maps, ...(mapsGrid ? { mapsGrid } : {}), ...(stepMaps ? { stepMaps } : {}), ...(layerMaps ? { layerMaps } : {}), ...(traceDir ? { traceDir } : {}), files, report };
}

/**
 * The prompt's nouns with the modifiers right before them (SynGen's bindings, engine/guidance/subjects.ts) and how
 * well each modifier's map sits on its own noun's (engine/attention/binding.ts): report.json `bindings`, which the
 * editor's leakage warning reads. Empty for prompts with fewer than two nouns or no modifier.
 */
async function promptBindings(result: GenerateResult, mapOf: (word: string) => Float32Array | undefined): Promise<BindingMargin[]> {
  const { autoSubjects, resolveSubjects, resolveBindings } = await import('../guidance/subjects.js');
  const nouns = autoSubjects(result.promptText);
  if (nouns.length < 2) return [];
  try {
    const subjects = resolveSubjects(result.prompt, result.promptText, nouns);
    const resolved = resolveBindings(result.prompt, result.promptText, subjects);
    return bindingMargins(resolved.map((b) => ({ noun: b.noun, modifiers: b.modifiers.map((m) => m.word) })), mapOf);
  } catch {
    return []; // a tagged noun the tokenizer dropped (beyond the window): no bindings rather than a failed write
  }
}
