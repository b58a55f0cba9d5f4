// The frames of a video for `heed explain --video`: animated GIF / WebP (and any still image, as one frame) are
// decoded by sharp; any other file goes through ffmpeg when it is on PATH (frames extracted as PNG into a temporary
// folder). Each frame comes back as PNG bytes of what the decoder drew (alpha flattened onto white, as single images
// are), so a frame explains exactly like the same picture given with --image.
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import sharp from 'sharp';
import { HeedError } from '../errors.js';

export interface VideoFrames {
  /** Number of frames read. */
  count: number;
  /** PNG bytes (RGB) of frame i (0-based). ffmpeg's frames stay on disk until asked for: a long video at full
   *  resolution would not fit in memory. */
  frame(i: number): Promise<Buffer>;
  /** Removes the temporary frame folder (ffmpeg); call when done. */
  dispose(): void;
  /** Display time of each frame in ms (from the GIF/WebP, or 1000 / fps for ffmpeg). */
  delays: number[];
  width: number;
  height: number;
  decoder: 'sharp' | 'ffmpeg';
  /** Frames in the file when more were there than were read (--max-frames). */
  totalFrames?: number;
}

export interface ReadVideoOptions {
  /** Read at most this many frames from the start. */
  maxFrames?: number;
  /** ffmpeg only: sample this many frames per second (default: every frame). */
  fps?: number;
  /** Where to look for ffmpeg (default: the PATH environment variable). */
  path?: string;
  /** The request field the file came from (errors name it). */
  field?: string;
}

/** Frame delay when the source gives none (ffmpeg without --fps; GIFs without delays): 25 frames per second. */
export const DEFAULT_DELAY_MS = 40;

export const FFMPEG_HINT = 'install ffmpeg and put it on PATH (Debian/Ubuntu: apt install ffmpeg; macOS: brew install ffmpeg; Windows: winget install ffmpeg; or https://ffmpeg.org/download.html), or convert the video to an animated GIF or WebP';

/** The path of an executable on PATH, or undefined. */
export function findOnPath(name: string, pathVar = process.env.PATH ?? ''): string | undefined {
  const exts = process.platform === 'win32' ? ['.exe', '.cmd', ''] : [''];
  for (const dir of pathVar.split(delimiter).filter(Boolean)) {
    for (const ext of exts) {
      const p = join(dir, name + ext);
      try {
        accessSync(p, constants.X_OK);
        if (statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

async function sharpFrames(file: string, o: ReadVideoOptions): Promise<VideoFrames> {
  const meta = await sharp(file, { animated: true }).metadata();
  const total = meta.pages ?? 1;
  const count = Math.min(total, o.maxFrames ?? total);
  const { data, info } = await sharp(file, { pages: count, animated: count > 1 })
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const height = info.pageHeight ?? info.height;
  const width = info.width;
  const frameBytes = width * height * 3;
  if (info.channels !== 3 || data.length !== frameBytes * count) {
    throw new HeedError('internal', `decoding ${file}: expected ${count} RGB frames of ${width}×${height}, got ${data.length} bytes in ${info.channels} channels`);
  }
  const frames: Buffer[] = [];
  for (let f = 0; f < count; f++) {
    frames.push(await sharp(data.subarray(f * frameBytes, (f + 1) * frameBytes), { raw: { width, height, channels: 3 } }).png().toBuffer());
  }
  const delays = Array.from({ length: count }, (_, f) => (meta.delay?.[f] && meta.delay[f]! > 0 ? meta.delay[f]! : DEFAULT_DELAY_MS));
  return {
    count, frame: async (i) => frames[i]!, dispose: () => {}, delays, width, height, decoder: 'sharp', ...(count < total ? { totalFrames: total } : {}),
  };
}

function run(cmd: string, args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stderr: String(stderr) });
    });
  });
}

async function ffmpegFrames(ffmpeg: string, file: string, o: ReadVideoOptions): Promise<VideoFrames> {
  const field = o.field ?? 'video';
  const dir = mkdtempSync(join(tmpdir(), 'heed-frames-'));
  const dispose = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-i', file,
      ...(o.fps !== undefined ? ['-vf', `fps=${o.fps}`] : []), ...(o.maxFrames !== undefined ? ['-frames:v', String(o.maxFrames)] : []),
      join(dir, 'frame_%06d.png')];
    const r = await run(ffmpeg, args);
    const names = readdirSync(dir).filter((n) => /^frame_\d+\.png$/.test(n)).sort();
    if (r.code !== 0 || names.length === 0) {
      const why = r.stderr.trim().split('\n').filter(Boolean).pop() ?? `exit code ${r.code}, no frames`;
      throw new HeedError('invalid_input', `ffmpeg could not read frames from ${file}: ${why} (give a video file ffmpeg can decode)`, { field });
    }
    const first = await sharp(join(dir, names[0]!)).metadata();
    const delay = o.fps !== undefined ? 1000 / o.fps : DEFAULT_DELAY_MS;
    return {
      count: names.length, frame: async (i) => readFileSync(join(dir, names[i]!)), dispose,
      delays: names.map(() => delay), width: first.width ?? 0, height: first.height ?? 0, decoder: 'ffmpeg',
    };
  } catch (e) {
    dispose();
    throw e;
  }
}

/** Reads the frames of `file`: sharp when it can decode it, else ffmpeg from PATH, else a clear error. */
export async function readVideoFrames(file: string, o: ReadVideoOptions = {}): Promise<VideoFrames> {
  const field = o.field ?? 'video';
  let sharpProblem: string | undefined;
  try {
    await sharp(file, { animated: true }).metadata();
  } catch (e) {
    sharpProblem = (e as Error).message;
  }
  if (sharpProblem === undefined) {
    if (o.fps !== undefined) throw new HeedError('invalid_input', `${file} is decoded frame by frame without ffmpeg, so fps does not apply: leave it out (or use --max-frames)`, { field: 'fps' });
    return sharpFrames(file, o);
  }
  const ffmpeg = findOnPath('ffmpeg', o.path);
  if (!ffmpeg) {
    throw new HeedError('invalid_input', `${file} is not an animated GIF or WebP (sharp: ${sharpProblem}); other video formats are read with ffmpeg, which is not on PATH: ${FFMPEG_HINT}`, { field });
  }
  return ffmpegFrames(ffmpeg, file, o);
}
