// The committed Shapes models (models/shapes/, trained in this repository; see its model card) checked two ways:
//   1. as exports: Heed's attention discovery finds every UNet attention layer of the diffusers ONNX export, and the
//      VJP builder's gradients through the Shapes UNet, ViT and CLIP match central finite differences — the same
//      checks the reference exports pass;
//   2. semantically, against ground truth that Heed does not compute: the Shapes world's own images and masks
//      (test/fixtures/shapes/val, written by make_shapes_fixtures.py from the world generator) and the palette
//      colours of generated images. A word map must point at its shape, the plain pipeline must neglect a subject
//      where Attend-and-Excite recovers it (judged by the colours in the images, not by Heed's loss), the CLIP must
//      rank the right caption first, the ViT must name colour and shape.
// The models are part of the repository, so a missing folder is a failure, not a skip.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { loadModel, type OnnxModel } from '../engine/onnx/model.js';
import { Graph } from '../engine/onnx/graph.js';
import { DataType } from '../engine/onnx/tensor.js';
import { StableDiffusionPipeline } from '../engine/diffusion/pipeline.js';
import { runGenerateJob } from '../engine/jobs/generate.js';
import { explainImage } from '../engine/explain/api.js';
import { mayHaveLeaked, type BindingMargin } from '../engine/attention/binding.js';
import type { GridMap } from '../engine/explain/tensor.js';
import { checkVjp, Rng, type Values } from './vjp-fixtures.js';
// The pointing game (is the map's maximum cell, scaled to the image, on the mask?) and its Chefer measurement over a
// folder of pair images: the model card's tool (models/shapes/chefer-pointing.ts), so test and card count alike.
import { cheferPointing, pointsInto } from '../models/shapes/chefer-pointing.js';

const REPO = resolve(fileURLToPath(new URL('../../', import.meta.url)));
const SHAPES = join(REPO, 'models', 'shapes');
const FIXTURES = join(REPO, 'test', 'fixtures', 'shapes', 'val');

const PALETTE: Record<string, [number, number, number]> = {
  red: [220, 40, 40], green: [40, 170, 60], blue: [40, 80, 220], yellow: [235, 200, 40],
};
const COLOURS = Object.keys(PALETTE);
const SHAPE_WORDS = ['circle', 'square', 'triangle'];

// Prompts and seeds of the SD checks (PNDM as in the folder, 20 steps, guidance 5, 128×128). The single-shape cases
// are the first seeds tried; the pair case is the demo's (models/shapes/demo.json), picked from the model card's
// `heed eval --excite-words colour --ae-scale-factor 80` run as one where the plain run misses a subject and A&E
// draws it (the test checks both).
const SINGLE_CASES: [string, number][] = [['a red circle', 0], ['a blue triangle', 1], ['a yellow square', 2]];
const PAIR_CASE = { prompt: 'a green square and a yellow circle', seed: 1, neglected: 'yellow', excite: { subjects: ['green', 'yellow'], scaleFactor: 80 } };

interface Rgb { width: number; height: number; data: Uint8Array }

async function readRgb(path: string): Promise<Rgb> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

/** Pixels within `tol` (max channel difference) of a palette colour — `heed eval`'s default tolerance (60). */
function colourMask(img: Rgb, colour: string, tol = 60): Uint8Array {
  const [r, g, b] = PALETTE[colour]!;
  const m = new Uint8Array(img.width * img.height);
  for (let i = 0; i < m.length; i++) {
    const d = Math.max(Math.abs(img.data[3 * i]! - r), Math.abs(img.data[3 * i + 1]! - g), Math.abs(img.data[3 * i + 2]! - b));
    m[i] = d <= tol ? 1 : 0;
  }
  return m;
}

const fraction = (m: Uint8Array): number => m.reduce((a, v) => a + v, 0) / m.length;

interface FixtureImage { name: string; caption: string; subjects: { colour: string; shape: string }[] }
const fixtureIndex = (): FixtureImage[] =>
  (JSON.parse(readFileSync(join(FIXTURES, 'index.json'), 'utf8')) as { images: FixtureImage[] }).images;

function grammarCaptions(): string[] {
  const singles = SHAPE_WORDS.flatMap((s) => COLOURS.map((c) => `a ${c} ${s}`));
  const pairs: string[] = [];
  for (const s1 of SHAPE_WORDS) for (const c1 of COLOURS) for (const s2 of SHAPE_WORDS) for (const c2 of COLOURS) {
    if (s1 !== s2 && c1 !== c2) pairs.push(`a ${c1} ${s1} and a ${c2} ${s2}`);
  }
  return [...singles, ...pairs];
}

function f32(dims: number[], data: number[]): Values[string] {
  return { type: DataType.FLOAT, dims, data };
}

describe('Shapes models: the committed exports', function () {
  it('are all there, within the 40 MB budget', () => {
    for (const part of ['sd/model_index.json', 'sd/unet/model.onnx', 'sd/text_encoder/model.onnx', 'sd/vae_decoder/model.onnx',
      'sd/tokenizer/vocab.json', 'sd/scheduler/scheduler_config.json', 'clip/model.onnx', 'clip/config.json', 'vit/model.onnx', 'vit/config.json']) {
      assert.ok(existsSync(join(SHAPES, part)), `models/shapes/${part} is missing (the trained Shapes models are committed; see models/shapes/README.md)`);
    }
    const size = (dir: string): number => readdirSync(dir, { withFileTypes: true })
      .reduce((a, e) => a + (e.isDirectory() ? size(join(dir, e.name)) : readFileSync(join(dir, e.name)).length), 0);
    const mb = (size(join(SHAPES, 'sd')) + size(join(SHAPES, 'clip')) + size(join(SHAPES, 'vit'))) / 2 ** 20;
    console.log(`      models/shapes/{sd,clip,vit}: ${mb.toFixed(1)} MB`);
    assert.ok(mb <= 40, `${mb} MB`);
  });

  it('attention discovery finds every attention layer of the Shapes UNet (self and cross, at 16/8/4 latent rows)', async function () {
    this.timeout(60_000);
    const pipe = await StableDiffusionPipeline.load(join(SHAPES, 'sd'), { threads: 2 });
    try {
      const sites = pipe.attentionSites(16, 16);
      const summary = sites.map((s) => `${s.kind}:${s.modulePath.replace(/\.transformer_blocks\.0\..*$/, '')}:${s.queryLength}`).sort();
      const graphSoftmax = new Graph(loadModel(join(SHAPES, 'sd', 'unet', 'model.onnx'))).nodes.filter((n) => n.opType === 'Softmax').length;
      assert.equal(sites.length, graphSoftmax, `every Softmax of the UNet is an attention site: ${summary.join(' ')}`);
      const cross = sites.filter((s) => s.kind === 'cross');
      assert.equal(cross.length, 7);
      assert.deepEqual(cross.map((s) => s.queryLength).sort((a, b) => a - b), [16, 64, 64, 64, 256, 256, 256]);
    } finally {
      await pipe.dispose();
    }
  });

  it('VJP through the Shapes UNet: d out_sample / d (cross-attention maps, latents) matches finite differences', async function () {
    this.timeout(180_000);
    const model: OnnxModel = loadModel(join(SHAPES, 'sd', 'unet', 'model.onnx'));
    const attn2 = new Graph(model).nodes.filter((n) => n.opType === 'Softmax' && /attn2\/Softmax$/.test(n.name)).map((n) => n.output[0]!);
    const rng = new Rng(3);
    const values: Values = {
      sample: f32([1, 4, 16, 16], rng.normal(4 * 256)),
      timestep: f32([1], [601]),
      encoder_hidden_states: f32([1, 77, 64], rng.normal(77 * 64)),
    };
    const res = await checkVjp(model, { seeds: ['out_sample'], wrt: [attn2[0]!, attn2[3]!, 'sample'], values, eps: { sample: 1e-2, [attn2[0]!]: 1e-1, [attn2[3]!]: 1e-1 }, directions: 2, seed: 5 });
    for (const [w, r] of Object.entries(res)) {
      console.log(`      ${w}: rel ${r.relErr.toExponential(2)} (|fd| ${r.scale.toExponential(2)})`);
      assert.ok(r.relErr < 2e-2, `${w}: rel error ${r.relErr} vs finite differences`);
    }
  });

  it('VJP through the Shapes ViT and CLIP: d logits / d (attention maps, pixels) matches finite differences', async function () {
    this.timeout(120_000);
    const rng = new Rng(4);
    const pixels = f32([1, 3, 128, 128], rng.uniform(3 * 128 * 128, -1, 1));
    const vit = loadModel(join(SHAPES, 'vit', 'model.onnx'));
    const vitProbs = new Graph(vit).nodes.filter((n) => n.opType === 'Softmax').map((n) => n.output[0]!);
    assert.equal(vitProbs.length, 4);
    const clip = loadModel(join(SHAPES, 'clip', 'model.onnx'));
    const clipProbs = new Graph(clip).nodes.filter((n) => n.opType === 'Softmax').map((n) => n.output[0]!);
    assert.equal(clipProbs.length, 6);
    // "a red circle" padded to 77 with the end token (the tokenizer's ids: see models/shapes/README.md).
    const ids = [543, 320, 515, 531, 544, ...new Array<number>(72).fill(544)];
    const mask = ids.map((_, i) => (i < 5 ? 1 : 0));
    const checks = [
      await checkVjp(vit, { seeds: ['logits'], wrt: [...vitProbs, 'pixel_values'], values: { pixel_values: pixels }, eps: { pixel_values: 0.05 }, directions: 2, seed: 7 }),
      await checkVjp(clip, {
        seeds: ['logits_per_image'], wrt: [clipProbs[2]!, clipProbs[5]!, 'pixel_values'], eps: { pixel_values: 0.05 }, directions: 2, seed: 8,
        values: { pixel_values: pixels, input_ids: { type: DataType.INT64, dims: [1, 77], data: ids }, attention_mask: { type: DataType.INT64, dims: [1, 77], data: mask } },
      }),
    ];
    for (const res of checks) for (const [w, r] of Object.entries(res)) {
      console.log(`      ${w}: rel ${r.relErr.toExponential(2)} (|fd| ${r.scale.toExponential(2)})`);
      assert.ok(r.relErr < 2e-2, `${w}: rel error ${r.relErr} vs finite differences`);
    }
  });
});

describe('Shapes models: meaning, against the world\'s ground truth', function () {
  const images = existsSync(join(FIXTURES, 'index.json')) ? fixtureIndex() : [];
  before(() => assert.ok(images.length > 0, 'test/fixtures/shapes/val is missing: run test/fixtures/shapes/make_shapes_fixtures.py'));

  // Right = the caption names the image's subjects; a pair caption in either order is right (an image has no order).
  it('the Shapes CLIP ranks a right caption first among the grammar\'s 84 captions (held-out images)', async function () {
    this.timeout(300_000);
    const captions = grammarCaptions();
    let right = 0;
    const wrong: string[] = [];
    for (const im of images) {
      const r = await explainImage(join(SHAPES, 'clip'), join(FIXTURES, `${im.name}.png`), { texts: captions, methods: [] });
      const best = r.similarities!.reduce((a, b) => (b.logit > a.logit ? b : a));
      const sameSubjects = (caption: string) => caption.split(' and ').sort().join(' and ') === im.caption.split(' and ').sort().join(' and ');
      if (sameSubjects(best.text)) right++;
      else wrong.push(`${im.name}: "${best.text}" for "${im.caption}"`);
    }
    console.log(`      top-1 ${right}/${images.length}${wrong.length ? `; wrong: ${wrong.slice(0, 4).join('; ')}` : ''}`);
    assert.ok(right / images.length >= 0.9, `top-1 ${right}/${images.length}`);
  });

  it('Chefer relevance of each subject\'s text peaks inside that subject (pair images)', async function () {
    this.timeout(300_000);
    // Per pair image: Chefer relevance of `a <colour> <shape>` for each subject, scored against that subject's mask.
    const { hits, total, misses } = await cheferPointing(join(SHAPES, 'clip'), FIXTURES);
    console.log(`      pointing ${hits}/${total}${misses.length ? `; misses: ${misses.slice(0, 3).join('; ')}, …` : ''}`);
    // The issue's target, 80 %, on the 200 subjects of the 100 pair fixtures (the committed CLIP: 169/200, model card).
    assert.ok(total >= 200 && hits / total >= 0.8, `pointing ${hits}/${total}`);
  });

  it('the Shapes ViT names colour and shape of held-out single-shape images', async function () {
    this.timeout(120_000);
    let right = 0;
    const singles = images.filter((i) => i.subjects.length === 1);
    for (const im of singles) {
      const r = await explainImage(join(SHAPES, 'vit'), join(FIXTURES, `${im.name}.png`), { methods: [] });
      if (r.classes![0]!.label === `${im.subjects[0]!.colour} ${im.subjects[0]!.shape}`) right++;
    }
    console.log(`      top-1 ${right}/${singles.length}`);
    assert.ok(right / singles.length >= 0.9, `${right}/${singles.length}`);
  });
});

describe('Shapes models: the SD pipeline, judged by colour', function () {
  let pipe: StableDiffusionPipeline;
  let tmp: string;
  before(async function () {
    this.timeout(60_000);
    pipe = await StableDiffusionPipeline.load(join(SHAPES, 'sd'), { threads: 2 });
    tmp = mkdtempSync(join(tmpdir(), 'heed-shapes-'));
  });
  after(async () => {
    if (pipe) await pipe.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function generate(prompt: string, seed: number, extra: Partial<Parameters<typeof runGenerateJob>[1]> = {}) {
    const outDir = join(tmp, `${prompt.replace(/\W+/g, '-')}-${seed}-${extra.excite ? 'ae' : 'plain'}`);
    const job = await runGenerateJob(pipe, { prompt, seed, steps: 20, guidance: 5, width: 128, height: 128, outDir, model: 'shapes', ...extra });
    return { job, outDir };
  }

  function wordMap(outDir: string, word: string): GridMap {
    const file = readdirSync(join(outDir, 'maps')).find((f) => f.endsWith(`-${word}.npy`));
    assert.ok(file, `no map for ${word}`);
    const a = readNpyFloat32(join(outDir, 'maps', file));
    return { height: a.shape[0]!, width: a.shape[1]!, data: a.data };
  }

  for (const [prompt, seed] of SINGLE_CASES) {
    it(`"${prompt}" (seed ${seed}): the colour is drawn and the shape word's map points at it`, async function () {
      this.timeout(120_000);
      const { outDir } = await generate(prompt, seed, { maps: true });
      const [, colour, shape] = prompt.split(' ');
      const img = await readRgb(join(outDir, 'image.png'));
      const mask = colourMask(img, colour!);
      assert.ok(fraction(mask) >= 0.01, `${colour} covers ${(100 * fraction(mask)).toFixed(2)} % of the image`);
      for (const word of [shape!, colour!]) {
        assert.ok(pointsInto(wordMap(outDir, word), mask, img.width, img.height), `the map of "${word}" peaks outside the ${colour} pixels`);
      }
    });
  }

  it(`"${PAIR_CASE.prompt}" (seed ${PAIR_CASE.seed}): the plain run neglects the ${PAIR_CASE.neglected} subject; Attend-and-Excite draws both`, async function () {
    this.timeout(300_000);
    const { prompt, seed } = PAIR_CASE;
    const words = prompt.split(' ');
    const colours = [words[1]!, words[5]!];
    const { outDir } = await generate(prompt, seed, { excite: { ...PAIR_CASE.excite, compare: true } });
    const present = async (file: string) => {
      const img = await readRgb(file);
      return colours.map((c) => fraction(colourMask(img, c)));
    };
    const plain = await present(join(outDir, 'plain', 'image.png'));
    const guided = await present(join(outDir, 'image.png'));
    console.log(`      colour shares plain ${plain.map((v) => v.toFixed(3)).join('/')}, A&E ${guided.map((v) => v.toFixed(3)).join('/')}`);
    assert.ok(plain.some((v) => v < 0.01), `the plain run draws both colours (${plain.join(', ')})`);
    assert.ok(guided.every((v) => v >= 0.01), `the A&E run misses a colour (${guided.join(', ')})`);
  });

  it('report.json\'s binding margins: a run that loses a colour reads as leaked, one that draws both does not', async function () {
    this.timeout(120_000);
    // The demo's leaked case, and a red/blue pair (blue never leaks on these models: model card, "Evaluation").
    for (const [prompt, seed, leaked] of [[PAIR_CASE.prompt, PAIR_CASE.seed, true], ['a red triangle and a blue circle', 0, false]] as const) {
      const { outDir } = await generate(prompt, seed, { maps: true });
      const words = prompt.split(' ');
      const img = await readRgb(join(outDir, 'image.png'));
      const shares = [words[1]!, words[5]!].map((c) => fraction(colourMask(img, c)));
      assert.equal(shares.some((v) => v < 0.01), leaked, `${prompt}: colour shares ${shares.join(', ')}`);
      const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as { bindings: BindingMargin[] };
      assert.deepEqual(report.bindings.map((b) => [b.modifiers, b.noun]), [[[words[1]], words[2]], [[words[5]], words[6]]]);
      assert.equal(mayHaveLeaked(report.bindings), leaked, `${prompt}: margins ${report.bindings.map((b) => b.margin).join(', ')}`);
    }
  });
});
