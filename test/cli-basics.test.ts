// The CLI as users run it: a child process, its exit code, stdout and stderr. No diffusion here (fast); the
// generate/demo runs are in cli-generate.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTinyModels, type TinyModels } from '../models/cache.js';
import { classifyError, UsageError } from '../engine/cli/errors.js';
import { parseSize } from '../engine/cli/options.js';
import { ModelFolderError } from '../engine/diffusion/folder.js';
import { CancelledError } from '../engine/diffusion/pipeline.js';
import { requireReference } from './helpers/reference.js';
import { assertUserError, heed, REPO } from './cli-helpers.js';

describe('cli: basics (child process)', function () {
  let models: TinyModels;
  let tmp: string;
  before(async function () {
    models = await ensureTinyModels();
    tmp = mkdtempSync(join(tmpdir(), 'heed-cli-'));
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('--help lists the commands and exits 0; --version prints the version', async function () {
    const h = await heed(['--help']);
    assert.equal(h.code, 0);
    for (const c of ['generate', 'explain', 'tokenize', 'demo', 'eval', 'serve']) assert.match(h.stdout, new RegExp(`\\b${c}\\b`));
    const g = await heed(['generate', '--help']);
    assert.equal(g.code, 0);
    for (const f of ['--model', '--prompt', '--negative', '--steps', '--guidance', '--scheduler', '--seed', '--latents', '--size', '--out', '--maps', '--trace']) assert.ok(g.stdout.includes(f), f);
    const v = await heed(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
  });

  it('bin/heed.js launches the built CLI', async function () {
    const v = await heed(['--version'], { script: join(REPO, 'bin/heed.js') });
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
  });

  it('tokenize --json matches the reference CLIP ids and alignment (SD export with onnx/ sub-folder)', async function () {
    const ref = requireReference(this);
    const r = await heed(['tokenize', '--model', join(ref, 'sd-tiny-v1'), '--json', 'a cat and a frog']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { tokens: { id: number; text: string; word: number | null }[]; words: { word: string; tokenIndices: number[]; start: number; end: number }[]; length: number; maxLength: number };
    // The reference README: [49406, 320, 2368, 537, 320, 11438, 49407]
    assert.deepEqual(j.tokens.map((t) => t.id), [49406, 320, 2368, 537, 320, 11438, 49407]);
    assert.equal(j.length, 7);
    assert.equal(j.maxLength, 77);
    assert.deepEqual(j.words.map((w) => [w.word, w.start, w.end, w.tokenIndices]), [['a', 0, 1, [1]], ['cat', 2, 5, [2]], ['and', 6, 9, [3]], ['a', 10, 11, [4]], ['frog', 12, 16, [5]]]);
    assert.deepEqual(j.tokens.map((t) => t.word), [null, 0, 1, 2, 3, 4, null]);
    assert.equal(j.tokens[2]!.text, 'cat');
  });

  it('tokenize prints a table, --quiet only ids, and reports truncation as a warning', async function () {
    const t = await heed(['tokenize', '--model', models.sd, 'a', 'cat']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /2 tokens \+ start\/end = 4 of 77 positions/);
    assert.match(t.stdout, /"cat" \[2, 5\) → 2/);
    const q = await heed(['tokenize', '--model', models.sd, '--quiet', 'a cat']);
    assert.match(q.stdout.trim(), /^\d+ \d+ \d+ \d+$/);
    const long = Array.from({ length: 90 }, (_, i) => `w${i}`).join(' ');
    const l = await heed(['tokenize', '--model', models.sd, '--json', long]);
    assert.equal(l.code, 0);
    const j = JSON.parse(l.stdout) as { truncated: boolean; length: number; warning?: string; droppedWords: string[] };
    assert.equal(j.truncated, true);
    assert.equal(j.length, 77);
    assert.ok(j.warning && j.droppedWords.length > 0);
  });

  it('user errors: one line naming the cause and the fix, exit code 2', async function () {
    const out = join(tmp, 'o');
    const cases: [string[], RegExp][] = [
      [['generate', '--model', join(tmp, 'missing'), '--prompt', 'x', '--out', out], /--model .*missing: no such folder; point it at a Stable Diffusion ONNX folder/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--size', '500x512'], /--size width 500 is not a multiple of 8 .*use 496 or 504/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--size', 'big'], /--size must look like 512x512/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--steps', '0'], /--steps must be an integer from 1 to 1000, got '0'/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--guidance', 'nan'], /--guidance must be a number between 0 and 100/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--seed', '-4'], /--seed must be an integer from 0/],
      [['generate', '--model', models.sd, '--prompt', '   ', '--out', out], /--prompt is empty/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--latents', join(tmp, 'nope.npy')], /--latents .*nope\.npy: no such file/],
      [['generate', '--model', models.sd, '--prompt', 'x'], /required option '--out <dir>' not specified/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--colormap', 'rainbow'], /--colormap must be one of viridis, turbo/],
      [['generate', '--model', models.sd, '--prompt', 'x', '--out', out, '--frobnicate'], /unknown option '--frobnicate'/],
      [['paint'], /unknown command 'paint'/],
      [['explain', '--model', models.vit, '--image', join(tmp, 'none.png'), '--out', out], /--image .*none\.png: no such file; give a PNG, JPEG or WebP file/],
      [['explain', '--model', models.vit, '--image', join(REPO, 'package.json'), '--out', out, '--class', '1', '--top', '2'], /give --class N or --top K, not both/],
      [['explain', '--model', models.vit, '--image', join(REPO, 'package.json'), '--out', out, '--method', 'rollout,magic'], /--method must be one of heads, rollout/],
      [['explain', '--model', models.vit, '--image', join(REPO, 'package.json'), '--out', out, '--discard', '1.5'], /--discard must be a number between 0 and/],
      [['explain', '--model', models.vit, '--image', join(REPO, 'package.json'), '--out', out], /cannot read image .*package\.json/],
      [['tokenize', '--model', tmp, 'hi'], /has no usable CLIP tokenizer/],
    ];
    for (const [args, pattern] of cases) assertUserError(await heed(args), pattern);
  });

  it('an existing file given as --out is refused', async function () {
    const f = join(tmp, 'afile');
    writeFileSync(f, 'x');
    assertUserError(await heed(['generate', '--model', models.sd, '--prompt', 'x', '--out', f]), /--out .*afile is an existing file; give a folder path/);
    assert.ok(existsSync(f));
  });

  it('classification: engine user errors → 2 without stack; internal errors → 1, stack only with --verbose', function () {
    const user = classifyError(new UsageError('bad\nthing'), true);
    assert.deepEqual(user, { exitCode: 2, message: 'heed: bad thing' });
    const folder = new ModelFolderError('unet/model.onnx is missing');
    assert.equal(classifyError(folder, false).exitCode, 2);
    const internal = classifyError(new TypeError('x is undefined'), false);
    assert.equal(internal.exitCode, 1);
    assert.match(internal.message, /internal error: x is undefined/);
    assert.doesNotMatch(internal.message, /\n\s+at /);
    assert.match(classifyError(new TypeError('x is undefined'), true).message, /\n\s+at /);
    assert.equal(classifyError(new CancelledError(0, 3), false).exitCode, 130);
  });

  it('size parser accepts WxH, W×H and N', function () {
    assert.deepEqual(parseSize('640x480'), { width: 640, height: 480 });
    assert.deepEqual(parseSize('64×128'), { width: 64, height: 128 });
    assert.deepEqual(parseSize('256'), { width: 256, height: 256 });
  });
});
