// The models `heed demo` runs on, laid out as the demo reads them: <dir>/sd (SD pipeline folder), <dir>/vit (ViT
// classifier), <dir>/clip (CLIP). Until trained default models are committed (models/shapes/), they are the tiny
// seeded random-weight builds of this folder. The engine never imports this module: `npm run demo` runs it first
// (`node dist/models/demo.js`), so the builders stay out of the engine and out of the .vsix.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureFolder } from './cache.js';
import { buildSdPipeline, sdTinyConfig } from './sd.js';
import { buildVitFolder, vitTinyConfig } from './vit.js';
import { buildClipFolder, clipTinyConfig } from './clip.js';

/** `<repo>/.cache/models/demo` (this file is compiled to `<repo>/dist/models/demo.js`); the folder `heed demo` reads
 *  when there is no models/shapes/. */
export function defaultDemoDir(): string {
  return resolve(fileURLToPath(new URL('../../', import.meta.url)), '.cache', 'models', 'demo');
}

/** Builds whichever of <dir>/sd, vit, clip is missing or stale (seed 0) and returns `dir`. */
export function ensureDemoModels(dir: string = defaultDemoDir()): string {
  const sd = sdTinyConfig(0);
  const vit = vitTinyConfig(0);
  const clip = clipTinyConfig(0);
  ensureFolder(join(dir, 'sd'), sd, (d) => buildSdPipeline(d, sd));
  ensureFolder(join(dir, 'vit'), vit, (d) => buildVitFolder(d, vit));
  ensureFolder(join(dir, 'clip'), clip, (d) => buildClipFolder(d, clip));
  return dir;
}

// `node dist/models/demo.js [dir]`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = ensureDemoModels(process.argv[2] !== undefined ? resolve(process.argv[2]) : undefined);
  console.log(`demo models ready in ${dir}`);
}
