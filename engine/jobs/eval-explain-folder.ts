// The image folder of `heed eval explain`: images, and beside each, optionally, its ground-truth mask and class.
//   <stem>.png | .jpg | .jpeg | .webp      the image
//   <stem>.mask.png (or .jpg/.jpeg/.webp)  its foreground mask: a pixel is foreground when its grey value (mean of
//                                          R, G, B) is ≥ 128 — white object on black
//   <stem>.label.txt                       its class: an index, or a label of the model's config.json id2label
// Files are taken in name order; anything else in the folder is ignored.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HeedError } from '../errors.js';

const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'];

export interface EvalImageEntry {
  /** File name without its extension: names the image in the outputs. */
  stem: string;
  image: string;
  mask?: string;
  /** The class as written in <stem>.label.txt (resolved against the model's labels by resolveLabel). */
  label?: string;
}

function splitExtension(name: string): { stem: string; ext: string } | undefined {
  const lower = name.toLowerCase();
  const ext = IMAGE_EXTENSIONS.find((e) => lower.endsWith(e));
  return ext ? { stem: name.slice(0, name.length - ext.length), ext } : undefined;
}

/** The images of `dir` with their masks and labels, in name order. */
export function listEvalImages(dir: string): EvalImageEntry[] {
  const names = readdirSync(dir).sort();
  const masks = new Map<string, string>();
  const images: { stem: string; name: string }[] = [];
  for (const name of names) {
    const s = splitExtension(name);
    if (!s || !statSync(join(dir, name)).isFile()) continue;
    if (s.stem.endsWith('.mask')) masks.set(s.stem.slice(0, -'.mask'.length), name);
    else images.push({ stem: s.stem, name });
  }
  const seen = new Set<string>();
  const out: EvalImageEntry[] = [];
  for (const { stem, name } of images) {
    if (seen.has(stem)) {
      throw new HeedError('invalid_input', `${dir} has two images named ${stem} (${name} and another extension): keep one, the outputs are named by stem`, { field: 'images' });
    }
    seen.add(stem);
    const labelPath = join(dir, `${stem}.label.txt`);
    const label = existsSync(labelPath) ? readFileSync(labelPath, 'utf8').trim() : undefined;
    const mask = masks.get(stem);
    out.push({ stem, image: join(dir, name), ...(mask ? { mask: join(dir, mask) } : {}), ...(label !== undefined ? { label } : {}) });
  }
  return out;
}

/** A label file's text as a class index of the model: an integer in range, or one of its id2label names. */
export function resolveLabel(text: string, labels: readonly string[] | undefined, classCount: number, where: string): number {
  if (/^\d+$/.test(text)) {
    const i = Number(text);
    if (i < classCount) return i;
    throw new HeedError('invalid_input', `${where}: class ${i} is out of range (the model has ${classCount} classes, 0..${classCount - 1})`, { field: 'images' });
  }
  const i = labels?.indexOf(text) ?? -1;
  if (i >= 0) return i;
  const known = labels ? `one of ${labels.slice(0, 12).map((l) => JSON.stringify(l)).join(', ')}${labels.length > 12 ? ', …' : ''}` : 'a class index (the model has no id2label names)';
  throw new HeedError('invalid_input', `${where}: unknown class ${JSON.stringify(text)}; write ${known}`, { field: 'images' });
}
