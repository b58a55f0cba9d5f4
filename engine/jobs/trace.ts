// `--trace DIR`: the tensors of one generation as .npy files numpy users can compare against diffusers/DAAM/A&E
// runs, plus manifest.json describing each file. Names and layouts follow the reference outputs.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { encodeNpy } from '../io/npy.js';
import type { GenerateResult } from '../diffusion/pipeline.js';
import type { TokenizedPrompt } from '../text/tokenizer.js';

export interface TraceFile {
  file: string;
  shape: number[];
  dtype: 'float32';
  description: string;
}

export interface TraceManifest {
  prompt: string;
  negativePrompt: string;
  seed: number | null;
  settings: GenerateResult['settings'];
  timesteps: number[];
  tokens: { index: number; id: number; token: string }[];
  words: { word: string; tokenIndices: number[]; file?: string }[];
  files: TraceFile[];
  warnings: string[];
}

/** Longest stem in UTF-8 bytes: with an index prefix and suffixes such as `-steps.npy` it stays far below NAME_MAX. */
export const WORD_STEM_MAX_BYTES = 96;

/**
 * File-name-safe form of a word (lower case; anything but letters, digits, '-' and '_' becomes '_'), at most
 * WORD_STEM_MAX_BYTES bytes: a longer word is cut and gets a hash of the whole word, so two long words sharing a
 * beginning keep distinct files (a 250-byte word once failed the job with ENAMETOOLONG after the image was made).
 */
export function wordFileStem(word: string): string {
  const safe = word.toLowerCase().replace(/[^\p{L}\p{N}_-]+/gu, '_');
  if (Buffer.byteLength(safe) <= WORD_STEM_MAX_BYTES) return safe;
  const hash = createHash('sha256').update(word).digest('hex').slice(0, 8);
  let cut = '';
  for (const ch of safe) {
    if (Buffer.byteLength(cut + ch) > WORD_STEM_MAX_BYTES - hash.length - 1) break;
    cut += ch;
  }
  return `${cut}-${hash}`;
}

/**
 * Distinct words of a prompt with all their token positions (every occurrence, as DAAM's word merge matches every
 * occurrence of the word's tokens). Pieces without a letter or digit (punctuation) are skipped; words whose
 * tokens were all truncated away are skipped too.
 */
export function distinctWords(prompt: TokenizedPrompt): { word: string; tokenIndices: number[] }[] {
  const byWord = new Map<string, number[]>();
  for (const w of prompt.words) {
    if (!/[\p{L}\p{N}]/u.test(w.normalized) || w.tokenIndices.length === 0) continue;
    const list = byWord.get(w.normalized) ?? [];
    list.push(...w.tokenIndices);
    byWord.set(w.normalized, list);
  }
  return [...byWord].map(([word, tokenIndices]) => ({ word, tokenIndices }));
}

/** Writes the trace of a finished generation into `dir` (created if needed) and returns the manifest. */
export function writeTrace(dir: string, result: GenerateResult): TraceManifest {
  const out = resolve(dir);
  mkdirSync(out, { recursive: true });
  const files: TraceFile[] = [];
  const put = (file: string, data: Float32Array, shape: number[], description: string): void => {
    writeFileSync(join(out, file), encodeNpy(data, shape, 'float32'));
    files.push({ file, shape, dtype: 'float32', description });
  };
  const shape = [...result.latentShape];
  put('latents_init.npy', result.initLatents, shape,
    result.seed !== null ? `initial latents, torch.randn(generator=manual_seed(${result.seed})) (before init_noise_sigma)` : 'initial latents as given');
  const [, seq, hidden] = result.textEmbeddings.dims;
  const emb = new Float32Array(2 * seq * hidden);
  emb.set(result.textEmbeddings.uncond, 0);
  emb.set(result.textEmbeddings.cond, seq * hidden);
  put('text_embeddings.npy', emb, [2, seq, hidden], 'text encoder last_hidden_state, rows [uncond (negative prompt), cond (prompt)]');
  for (const p of result.noisePredictions.slice(0, 2)) {
    put(`noise_pred_step${p.step}.npy`, p.cond, shape, `UNet output, conditional branch, step ${p.step} (t=${p.timestep})`);
  }
  put('latents_final.npy', result.latents, shape, 'latents after the last scheduler step (before / scaling_factor)');
  put('image.npy', result.image.data, [result.image.height, result.image.width, 3], 'decoded image, float32 HWC in [0, 1]');

  const words = distinctWords(result.prompt).map((w) => ({ ...w, file: undefined as string | undefined }));
  const store = result.attention;
  if (store) {
    const r = result.aeResolution;
    if (store.options.perStepResolutions.includes(r) && store.records.length > 0) {
      try {
        const m = store.stepMap(0, r);
        put(`attn${r}_step0.npy`, m.data, [m.height, m.width, m.keys],
          `cross-attention at ${m.height}x${m.width}, mean over heads and layers, conditional pass of step 0 (Attend-and-Excite's aggregate)`);
      } catch {
        // No layer at that resolution (e.g. an unusual UNet): the manifest simply lacks the file.
      }
    }
    if (store.options.daam) {
      const global = store.daamGlobal();
      put('daam_global_heat_map.npy', global.data, [global.tokens, global.height, global.width],
        'DAAM global heat map: rows SOT..first EOT, per (layer, head) summed over steps, bicubic to the latent size, clamped >= 0, mean');
      for (const w of words) {
        const rows = w.tokenIndices.filter((i) => i < global.tokens);
        if (rows.length === 0) continue;
        const file = `daam_word_${wordFileStem(w.word)}.npy`;
        if (files.some((f) => f.file === file)) continue; // two words with the same file stem: keep the first
        put(file, store.wordMap(rows, global), [global.height, global.width], `DAAM word heat map of "${w.word}" (mean of token rows ${rows.join(', ')})`);
        w.file = file;
      }
    }
  }
  const manifest: TraceManifest = {
    prompt: result.promptText,
    negativePrompt: result.negativePromptText,
    seed: result.seed,
    settings: result.settings,
    timesteps: result.timesteps,
    tokens: result.prompt.tokens.slice(0, result.prompt.length).map((token, index) => ({ index, id: result.prompt.ids[index], token })),
    words: words.map((w) => (w.file ? w : { word: w.word, tokenIndices: w.tokenIndices })),
    files,
    warnings: result.warnings,
  };
  writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}
