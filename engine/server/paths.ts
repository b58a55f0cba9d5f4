// Which folders a client may make the server read. With `--models DIR…` a model (or latents/image file) must resolve,
// after following symlinks, inside one of those folders: a lexical check alone would let `root/link -> /etc` or
// `root/../x` through. Without `--models` any readable folder is allowed (a local, token-protected engine).
import { realpath, readdir, stat, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ProtocolError } from './errors.js';
import type { ModelInfo, ModelKind } from '../protocol/index.js';

/** True when `child` is `parent` or inside it (both already absolute and normalised). */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

export class PathPolicy {
  private constructor(
    /** Real paths of the --models folders; empty = unrestricted. */
    readonly roots: string[],
  ) {}

  static async create(roots: string[]): Promise<PathPolicy> {
    const real: string[] = [];
    for (const r of roots) {
      try {
        const p = await realpath(resolve(r));
        if (!(await stat(p)).isDirectory()) throw new Error('not a folder');
        real.push(p);
      } catch (e) {
        throw new Error(`--models ${r}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such folder' : (e as Error).message}; pass existing folders that hold model folders`);
      }
    }
    return new PathPolicy(real);
  }

  get restricted(): boolean {
    return this.roots.length > 0;
  }

  /**
   * Resolves a client-given path to a real path the server may read. Relative paths are taken against the first
   * --models folder (so a client can say "sd-tiny"), or the server's working directory when unrestricted.
   */
  async resolve(p: string, field: string, what: 'model' | 'file'): Promise<string> {
    const abs = isAbsolute(p) ? resolve(p) : resolve(this.roots[0] ?? process.cwd(), p);
    const notAllowed = (): ProtocolError =>
      new ProtocolError(
        what === 'model' ? 'model_not_allowed' : 'file_not_allowed',
        `${p} is outside the folders this server may read (--models ${this.roots.join(' ')}); put it in one of them or restart the server with its folder in --models`,
        field,
      );
    if (this.restricted && !this.roots.some((r) => isInside(r, abs))) throw notAllowed();
    let real: string;
    try {
      real = await realpath(abs);
    } catch {
      throw new ProtocolError(what === 'model' ? 'model_not_found' : 'file_not_found', `${p} does not exist on the server's machine${what === 'model' ? ' (listModels shows what is available)' : ''}`, field);
    }
    // The real path decides: a symlink inside a root may point anywhere.
    if (this.restricted && !this.roots.some((r) => isInside(r, real))) throw notAllowed();
    return real;
  }

  /** Model folders directly inside each root (and one level deeper, for `root/org/name` layouts). */
  async listModels(): Promise<ModelInfo[]> {
    const out: ModelInfo[] = [];
    const seen = new Set<string>();
    const visit = async (dir: string, depth: number): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (!e.isDirectory() && !e.isSymbolicLink()) continue;
        const p = join(dir, e.name);
        let real: string;
        try {
          real = await realpath(p);
          if (!(await stat(real)).isDirectory()) continue;
        } catch {
          continue;
        }
        if (seen.has(real) || (this.restricted && !this.roots.some((r) => isInside(r, real)))) continue;
        const kind = await detectModelKind(real);
        if (kind) {
          seen.add(real);
          out.push({ path: real, name: relative(this.roots.find((r) => isInside(r, real)) ?? dir, real) || basename(real), kind, bytes: await folderBytes(real) });
        } else if (depth < 1) {
          await visit(p, depth + 1);
        }
      }
    };
    for (const r of this.roots) {
      const kind = await detectModelKind(r);
      if (kind) out.push({ path: r, name: basename(r), kind, bytes: await folderBytes(r) });
      else await visit(r, 0);
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }
}

/** Recognises the model folder layouts Heed loads (a diffusers/Optimum SD folder: model_index.json + unet/; a
 *  transformers.js/Optimum ViT or CLIP folder: config.json + model.onnx or onnx/) from their marker files; undefined
 *  when the folder is not a model. */
export async function detectModelKind(dir: string): Promise<ModelKind | undefined> {
  if (existsSync(join(dir, 'model_index.json')) && existsSync(join(dir, 'unet'))) return 'stable-diffusion';
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) return undefined;
  if (!existsSync(join(dir, 'model.onnx')) && !existsSync(join(dir, 'onnx'))) return undefined;
  try {
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as { model_type?: unknown };
    if (cfg.model_type === 'clip') return 'clip';
    if (typeof cfg.model_type === 'string' && /vit|deit|dino/.test(cfg.model_type)) return 'vit';
  } catch {
    return 'unknown';
  }
  return 'unknown';
}

/** Bytes of every file under a folder: the model cache's memory estimate (weights dominate what ORT holds). */
export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await stat(p)).size;
    }
  };
  try {
    await walk(dir);
  } catch {
    /* unreadable parts count as 0: an estimate */
  }
  return total;
}
