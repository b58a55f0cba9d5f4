// Lets onnxruntime open an EDITED model straight from disk. ORT refuses external weights outside the folder of the
// model file (symlinks are resolved, so they do not help), and handing it the weights as JS buffers costs a full copy
// of them per session on top of ORT's own (SD 1.5's UNet: 3.4 GB each, and Attend-and-Excite opens three sessions).
// Instead the edited graph is written to a private folder next to HARD LINKS of the original weight files: ORT reads
// the weights from the user's files, no byte is copied, and the folder is removed once the session exists (ORT has
// read or mapped the weights by then; a mapping keeps the inode alive). The user's model folder is never written to.
import { linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';

export interface StagedModel {
  /** The staged model file to open by path. */
  path: string;
  /** Removes the staging folder (safe to call twice). */
  dispose(): void;
}

/**
 * Folders tried for staging, in order: `HEED_STAGING_DIR`, the user's cache, the system temp folder. A hard link needs
 * the same filesystem as the weights, so the first candidate where every link succeeds wins.
 */
export function stagingCandidates(): string[] {
  const env = process.env.HEED_STAGING_DIR;
  if (env === 'off') return [];
  const cache = process.env.XDG_CACHE_HOME ? join(process.env.XDG_CACHE_HOME, 'heed') : join(homedir(), '.cache', 'heed');
  return [...(env ? [env] : []), join(cache, 'staging'), join(tmpdir(), 'heed-staging')];
}

/**
 * A staging folder outlives its session only when the process died while ORT was opening it. Its hard links would keep
 * replaced weight files alive on disk, so folders older than any session takes to open are removed.
 */
const STALE_MS = 60 * 60 * 1000;

export function sweepStaleStaging(base: string, now = Date.now()): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith('model-')) continue;
    const dir = join(base, name);
    try {
      if (now - statSync(dir).mtimeMs > STALE_MS) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another process removed it first.
    }
  }
}

/** Locations ORT would accept: relative, inside the model's folder. */
function safeLocation(location: string): boolean {
  const n = normalize(location);
  return !isAbsolute(n) && n !== '..' && !n.startsWith(`..${sep}`);
}

/**
 * Writes `modelBytes` as model.onnx into a fresh folder with a hard link per external file (location → absolute path
 * of the original). Returns null when no candidate folder can hold links to these files (another filesystem, no
 * permission); callers then fall back to buffers.
 */
export function stageModel(modelBytes: Uint8Array, externalFiles: ReadonlyMap<string, string>, candidates = stagingCandidates()): StagedModel | null {
  if ([...externalFiles.keys()].some((loc) => !safeLocation(loc))) return null;
  for (const base of candidates) {
    let dir: string | null = null;
    try {
      mkdirSync(base, { recursive: true });
      sweepStaleStaging(base);
      dir = mkdtempSync(join(base, 'model-'));
      for (const [location, original] of externalFiles) {
        const target = join(dir, location);
        mkdirSync(dirname(target), { recursive: true });
        linkSync(original, target);
      }
      writeFileSync(join(dir, 'model.onnx'), modelBytes);
      const staged = dir;
      return { path: join(staged, 'model.onnx'), dispose: () => rmSync(staged, { recursive: true, force: true }) };
    } catch {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  return null;
}
