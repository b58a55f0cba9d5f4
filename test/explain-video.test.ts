// `heed explain --video` on the reference tiny ViT: an animated GIF made here with sharp from a few frames; the frame
// count, the animation and .npy stack shapes, and each frame's map equal to a single-image run on that frame as
// sharp decodes it on its own (`page: i`, a different decoding path from the animated read). The ffmpeg path runs a
// stand-in `ffmpeg` on PATH (a script that writes the frames a real one would), which checks the arguments Heed passes
// and that the extracted frames are explained; with no ffmpeg on PATH a non-GIF/WebP file is a clear exit-2 error.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { requireReference } from './helpers/reference.js';
import { explainImage } from '../engine/explain/index.js';
import { readNpyFloat32 } from '../engine/io/npy.js';
import { assertUserError, CLI, heed, REPO, type CliRun } from './cli-helpers.js';

const W = 48;
const H = 40;
const FRAMES = 3;

/** Frame f: grey background, a red disk moving right, a blue bar moving down (few colours, so the GIF keeps them). */
function frame(f: number): Buffer {
  const px = Buffer.alloc(W * H * 3, 128);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      if (Math.hypot(x - 10 - 12 * f, y - 20) < 8) px.set([220, 30, 30], i);
      else if (x > 36 && y >= 4 + 10 * f && y < 12 + 10 * f) px.set([30, 40, 210], i);
    }
  }
  return px;
}

function run(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: REPO, env, timeout: 300_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

describe('explain --video (child process, reference tiny ViT)', function () {
  let ref: string;
  let tmp: string;
  let gif: string;
  let framePngs: string[];
  const load = { intraOpThreads: 1 };
  before(async function () {
    ref = requireReference(this);
    tmp = mkdtempSync(join(tmpdir(), 'heed-video-'));
    gif = join(tmp, 'clip.gif');
    const all = Buffer.concat(Array.from({ length: FRAMES }, (_, f) => frame(f)));
    await sharp(all, { raw: { width: W, height: H * FRAMES, channels: 3, pageHeight: H } }).gif({ loop: 0, delay: [120, 80, 200] }).toFile(gif);
    // The frames as sharp decodes them one by one: the single-image runs' inputs.
    framePngs = [];
    for (let f = 0; f < FRAMES; f++) {
      const p = join(tmp, `frame${f}.png`);
      await sharp(gif, { page: f }).png().toFile(p);
      framePngs.push(p);
    }
  });
  after(function () {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('GIF: frame count, animation and stack shapes; each frame\'s rollout and gradcam equal single-image runs', async function () {
    const out = join(tmp, 'out');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--video', gif, '--method', 'rollout,gradcam', '--threads', '1', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { frames: number; decoder: string; files: string[] };
    assert.equal(j.frames, FRAMES);
    assert.equal(j.decoder, 'sharp');
    const video = JSON.parse(readFileSync(join(out, 'video.json'), 'utf8')) as { frames: number; perFrame: { delayMs: number; classIndex?: number }[] };
    assert.deepEqual(video.perFrame.map((p) => p.delayMs), [120, 80, 200]);
    for (const [method, stem, field] of [['rollout', 'rollout', 'rollout'], ['gradcam', 'gradcam', 'lrp']] as const) {
      const stack = readNpyFloat32(join(out, `${stem}.npy`));
      assert.deepEqual(stack.shape, [FRAMES, 14, 14]);
      const anim = await sharp(join(out, `${stem}.webp`), { animated: true }).metadata();
      assert.equal(anim.pages, FRAMES);
      assert.equal(anim.pageHeight, 224);
      assert.equal(anim.width, 2 * 224 + 4, 'input | map');
      assert.equal((await sharp(join(out, `${stem}.gif`), { animated: true }).metadata()).pages, FRAMES);
      for (let f = 0; f < FRAMES; f++) {
        // The same options as the video run: with gradcam asked for, the attention comes from the gradient forward.
        const single = await explainImage(join(ref, 'vit-tiny'), framePngs[f]!, { methods: ['rollout', 'gradcam'], load });
        const want = field === 'rollout' ? single.rollout[0]!.map.data : single.lrp[0]!.map.data;
        const got = stack.data.subarray(f * 196, (f + 1) * 196);
        let d = 0;
        for (let i = 0; i < 196; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!));
        assert.ok(d <= 1e-6, `${method} frame ${f}: max diff ${d}`);
        if (field === 'lrp') assert.equal(video.perFrame[f]!.classIndex, single.lrp[0]!.classIndex, 'the class each frame explains');
      }
    }
    // The frames differ, so their maps must too (a stack of one repeated frame would pass the shape checks).
    const rollout = readNpyFloat32(join(out, 'rollout.npy')).data;
    assert.notDeepEqual(Array.from(rollout.subarray(0, 196)), Array.from(rollout.subarray(196, 392)));
  });

  it('heads: [frames, heads, h, w]; --max-frames reads the first N frames', async function () {
    const out = join(tmp, 'heads');
    const r = await heed(['explain', '--model', join(ref, 'vit-tiny'), '--video', gif, '--method', 'heads', '--max-frames', '2', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { frames: number }).frames, 2);
    assert.deepEqual(readNpyFloat32(join(out, 'heads_layer3.npy')).shape, [2, 4, 14, 14]);
    const anim = await sharp(join(out, 'heads_layer3.webp'), { animated: true }).metadata();
    assert.equal(anim.pages, 2);
    assert.equal(anim.width, 5 * 224 + 4 * 4, 'input | head 0 … head 3');
  });

  it('other formats go through ffmpeg on PATH: the frames it extracts are explained (stand-in ffmpeg)', async function () {
    // The "video": a list of frame files only the stand-in understands (sharp cannot decode it).
    const video = join(tmp, 'movie.vid');
    writeFileSync(video, JSON.stringify(framePngs));
    const bin = join(tmp, 'bin');
    mkdirSync(bin, { recursive: true });
    const log = join(tmp, 'ffmpeg-args.json');
    writeFileSync(join(bin, 'ffmpeg'), `#!${process.execPath}
const fs = require('node:fs'); const path = require('node:path');
const args = process.argv.slice(2);
fs.writeFileSync(${JSON.stringify(log)}, JSON.stringify(args));
const input = args[args.indexOf('-i') + 1];
const pattern = args[args.length - 1];
let frames = JSON.parse(fs.readFileSync(input, 'utf8'));
const cap = args.indexOf('-frames:v');
if (cap >= 0) frames = frames.slice(0, Number(args[cap + 1]));
frames.forEach((f, i) => fs.copyFileSync(f, pattern.replace('%06d', String(i + 1).padStart(6, '0'))));
`);
    chmodSync(join(bin, 'ffmpeg'), 0o755);
    const frameTmp = join(tmp, 'frame-tmp');
    mkdirSync(frameTmp, { recursive: true });
    const env = { ...process.env, PATH: `${bin}:${dirname(process.execPath)}`, TMPDIR: frameTmp };
    const out = join(tmp, 'ff');
    const r = await run(['explain', '--model', join(ref, 'vit-tiny'), '--video', video, '--method', 'rollout', '--fps', '5', '--max-frames', '2', '--threads', '1', '--out', out, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { frames: number; decoder: string };
    assert.deepEqual([j.frames, j.decoder], [2, 'ffmpeg']);
    assert.deepEqual(readdirSync(frameTmp).filter((n) => n.startsWith('heed-frames-')), [], 'the extracted frames are removed');
    const args = JSON.parse(readFileSync(log, 'utf8')) as string[];
    assert.equal(args[args.indexOf('-i') + 1], video);
    assert.deepEqual(args.slice(args.indexOf('-vf'), args.indexOf('-vf') + 2), ['-vf', 'fps=5']);
    assert.deepEqual(args.slice(args.indexOf('-frames:v'), args.indexOf('-frames:v') + 2), ['-frames:v', '2']);
    const video2 = JSON.parse(readFileSync(join(out, 'video.json'), 'utf8')) as { perFrame: { delayMs: number }[] };
    assert.deepEqual(video2.perFrame.map((p) => p.delayMs), [200, 200], '1000 / fps');
    const stack = readNpyFloat32(join(out, 'rollout.npy'));
    const single = await explainImage(join(ref, 'vit-tiny'), framePngs[1]!, { methods: ['rollout'], load });
    let d = 0;
    for (let i = 0; i < 196; i++) d = Math.max(d, Math.abs(stack.data[196 + i]! - single.rollout[0]!.map.data[i]!));
    assert.ok(d <= 1e-6, `frame 1 via ffmpeg: ${d}`);
  });

  it('errors: ffmpeg needed but absent names ffmpeg and how to install it; bad flags are exit 2', async function () {
    const video = join(tmp, 'movie.mp4');
    writeFileSync(video, 'not a video sharp can read');
    const env = { ...process.env, PATH: dirname(process.execPath) };
    const noFfmpeg = await run(['explain', '--model', join(ref, 'vit-tiny'), '--video', video, '--out', join(tmp, 'x')], env);
    assertUserError(noFfmpeg, /movie\.mp4 is not an animated GIF or WebP.*ffmpeg, which is not on PATH: install ffmpeg.*apt install ffmpeg/);
    const vit = join(ref, 'vit-tiny');
    assertUserError(await heed(['explain', '--model', vit, '--video', gif, '--method', 'distance', '--out', join(tmp, 'x')]), /--video draws maps per frame and 'distance' gives none/);
    assertUserError(await heed(['explain', '--model', vit, '--video', gif, '--top', '2', '--out', join(tmp, 'x')]), /one class per frame/);
    assertUserError(await heed(['explain', '--model', vit, '--video', gif, '--fps', '5', '--out', join(tmp, 'x')]), /--fps does not apply/);
    assertUserError(await heed(['explain', '--model', vit, '--video', join(tmp, 'missing.gif'), '--out', join(tmp, 'x')]), /--video .*missing\.gif: no such file/);
    assertUserError(await heed(['explain', '--model', vit, '--image', framePngs[0]!, '--video', gif, '--out', join(tmp, 'x')]), /give one input, not --image and --video/);
    assertUserError(await heed(['explain', '--model', vit, '--image', framePngs[0]!, '--max-frames', '3', '--out', join(tmp, 'x')]), /--fps and --max-frames apply to --video only/);
  });
});
