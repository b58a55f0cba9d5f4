// Builds the tiny model folders once and reuses them: each folder carries a stamp with the builder version and a
// hash of its config, and is rebuilt only when that stamp is missing or stale. Folders are built in a temporary
// sibling and renamed into place, so concurrent test processes never see a half-written model.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSdPipeline, sdTinyConfig } from './sd.js';
import { buildVitFolder, vitTinyConfig } from './vit.js';
import { buildClipFolder, clipTinyConfig } from './clip.js';
import { hashString } from './lib/rng.js';

/** Bump when a builder changes what it writes: every cached folder is then rebuilt. */
export const BUILDER_VERSION = 1;
export const STAMP_FILE = '.heed-build-stamp.json';

/** `<repo>/.cache/models` (this file is compiled to `<repo>/dist/models/cache.js`). */
export function defaultCacheDir(): string {
  return resolve(fileURLToPath(new URL('../../', import.meta.url)), '.cache', 'models');
}

export interface TinyModels {
  /** SD 1.x pipeline folder (model_index.json, text_encoder/, unet/, vae_decoder/, tokenizer/, scheduler/). */
  sd: string;
  /** ViTForImageClassification folder (config.json, preprocessor_config.json, onnx/model.onnx). */
  vit: string;
  /** CLIPModel folder (model.onnx, config.json, preprocessor_config.json, tokenizer files). */
  clip: string;
  /** DINO-style ViTModel folder (last_hidden_state output). */
  dino: string;
}

export async function ensureTinyModels(cacheDir: string = defaultCacheDir(), seed = 0): Promise<TinyModels> {
  mkdirSync(cacheDir, { recursive: true });
  const sdCfg = sdTinyConfig(seed);
  const vitCfg = vitTinyConfig(seed);
  const dinoCfg = { ...vitTinyConfig(seed), variant: 'dino' as const };
  const clipCfg = clipTinyConfig(seed);
  return {
    sd: ensureFolder(join(cacheDir, `sd-tiny-s${seed}`), sdCfg, (dir) => buildSdPipeline(dir, sdCfg)),
    vit: ensureFolder(join(cacheDir, `vit-tiny-s${seed}`), vitCfg, (dir) => buildVitFolder(dir, vitCfg)),
    clip: ensureFolder(join(cacheDir, `clip-tiny-s${seed}`), clipCfg, (dir) => buildClipFolder(dir, clipCfg)),
    dino: ensureFolder(join(cacheDir, `dino-tiny-s${seed}`), dinoCfg, (dir) => buildVitFolder(dir, dinoCfg)),
  };
}

/** Returns `dir`, (re)building it with `build` unless its stamp matches `config`. */
export function ensureFolder(dir: string, config: unknown, build: (dir: string) => unknown): string {
  const stamp = { builderVersion: BUILDER_VERSION, configHash: configHash(config) };
  if (stampMatches(dir, stamp)) return dir;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    build(tmp);
    writeFileSync(join(tmp, STAMP_FILE), JSON.stringify({ ...stamp, config }, null, 2) + '\n');
    if (stampMatches(dir, stamp)) return dir; // another process finished first
    rmSync(dir, { recursive: true, force: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!stampMatches(dir, stamp)) throw e; // lost a race against an equivalent build: keep theirs
    }
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function configHash(config: unknown): string {
  const s = JSON.stringify(config);
  return `${hashString(s, 1).toString(16)}${hashString(s, 2).toString(16)}`;
}

function stampMatches(dir: string, stamp: { builderVersion: number; configHash: string }): boolean {
  const p = join(dir, STAMP_FILE);
  if (!existsSync(p)) return false;
  try {
    const s = JSON.parse(readFileSync(p, 'utf8')) as { builderVersion?: number; configHash?: string };
    return s.builderVersion === stamp.builderVersion && s.configHash === stamp.configHash;
  } catch {
    return false;
  }
}
