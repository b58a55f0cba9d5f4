// Where does a subject's text point on a two-shape Shapes image? For every image of a folder in the layout of
// test/fixtures/shapes/val (index.json with each image's subjects in caption order, <name>.png, one
// <name>.mask<k>.png per subject — models/shapes/train/pair_eval_set.py writes such folders), Heed's Chefer relevance
// of each subject's text `a <colour> <shape>` on the CLIP is scored by the pointing game: is the maximum of the
// relevance map inside that subject's mask? The model card's target is >= 80 %.
//
//   node dist/models/shapes/chefer-pointing.js --clip models/shapes/clip --images /tmp/shapes-pairs [--chefer-start all]
//
// Images with one subject are skipped (one subject has nothing to be confused with). A development tool, like
// models/demo.ts: the engine never imports it.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ExplainModel, GradientEngine, explainWithModel, type GridMap, type StartLayer } from '../../engine/explain/index.js';

export interface ShapesIndexImage { name: string; caption: string; subjects: { colour: string; shape: string }[] }

/** The pointing game on a patch map and a full-resolution mask: is the map's maximum cell's centre, scaled to the
 *  mask, inside the mask? (First maximum on ties.) */
export function pointsInto(map: GridMap, mask: Uint8Array, width: number, height: number): boolean {
  let at = 0;
  for (let i = 1; i < map.data.length; i++) if (map.data[i]! > map.data[at]!) at = i;
  const cy = Math.floor(((Math.floor(at / map.width) + 0.5) * height) / map.height);
  const cx = Math.floor((((at % map.width) + 0.5) * width) / map.width);
  return mask[cy * width + cx] === 1;
}

/** A white-on-black mask PNG as 0/1 (red channel > 127). */
export async function readMaskPng(path: string): Promise<{ width: number; height: number; data: Uint8Array }> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const m = Uint8Array.from({ length: info.width * info.height }, (_, i) => (data[info.channels * i]! > 127 ? 1 : 0));
  return { width: info.width, height: info.height, data: m };
}

export interface PointingResult { hits: number; total: number; misses: string[] }

export async function cheferPointing(clipDir: string, imagesDir: string, cheferStart?: StartLayer): Promise<PointingResult> {
  const images = (JSON.parse(readFileSync(join(imagesDir, 'index.json'), 'utf8')) as { images: ShapesIndexImage[] }).images;
  const model = await ExplainModel.load(clipDir, { intraOpThreads: 1 });
  const gradients = new GradientEngine(model);
  const result: PointingResult = { hits: 0, total: 0, misses: [] };
  try {
    for (const im of images.filter((i) => i.subjects.length === 2)) {
      const texts = im.subjects.map((s) => `a ${s.colour} ${s.shape}`);
      const prepared = await model.prepareImage(join(imagesDir, `${im.name}.png`));
      const r = await explainWithModel(model, gradients, prepared, { texts, methods: ['chefer'], ...(cheferStart !== undefined ? { cheferStart } : {}) });
      for (const [k, ch] of r.chefer.entries()) {
        const t = ch.textIndex ?? k;
        const mask = await readMaskPng(join(imagesDir, `${im.name}.mask${t}.png`));
        result.total++;
        if (pointsInto(ch.image, mask.data, mask.width, mask.height)) result.hits++;
        else result.misses.push(`${im.name}: ${texts[t]}`);
      }
    }
  } finally {
    await gradients.release();
    await model.release();
  }
  return result;
}

function parseArgs(argv: string[]): { clip: string; images: string; cheferStart?: StartLayer } {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const clip = get('--clip');
  const images = get('--images');
  if (!clip || !images) {
    console.error('usage: node dist/models/shapes/chefer-pointing.js --clip <CLIP folder> --images <folder with index.json> [--chefer-start last|all|<n>]');
    process.exit(2);
  }
  const start = get('--chefer-start');
  let cheferStart: StartLayer | undefined;
  if (start !== undefined) {
    if (start === 'last' || start === 'all') cheferStart = start;
    else if (/^\d+$/.test(start)) cheferStart = Number(start);
    else {
      console.error(`--chefer-start must be last, all or a block index from 0 (got '${start}')`);
      process.exit(2);
    }
  }
  return { clip: resolve(clip), images: resolve(images), ...(cheferStart !== undefined ? { cheferStart } : {}) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = parseArgs(process.argv.slice(2));
  const r = await cheferPointing(args.clip, args.images, args.cheferStart);
  console.log(JSON.stringify({ clip: args.clip, images: args.images, cheferStart: args.cheferStart ?? 'default', hits: r.hits, total: r.total, pointing: r.hits / r.total, misses: r.misses }, null, 1));
}
