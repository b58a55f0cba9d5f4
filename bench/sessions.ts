// Peak memory of opening EDITED models (what hooks and the VJP graphs produce): staged beside hard links of the weight
// files (the default) vs the weights handed to onnxruntime as buffers. Each variant runs in its own child process, so
// each peak RSS is its own; the figure is their ratio in one run. `HEED_BENCH_SD` picks the SD folder (default: the
// tiny one; a full-width SD 1.5 from `node dist/models/build.js --kind sd --size sd15` shows the 3.4 GB weights case).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTinyModels } from '../models/cache.js';

const SESSIONS = 2;

async function openEdited(unetPath: string, staging: boolean): Promise<void> {
  const { loadModel, cloneModel } = await import('../engine/onnx/model.js');
  const { openSession } = await import('../engine/onnx/session.js');
  const model = loadModel(unetPath);
  const open = [];
  for (let i = 0; i < SESSIONS; i++) open.push(await openSession(cloneModel(model), { intraOpThreads: 1, staging }));
  for (const s of open) await s.release();
}

export async function benchSessions(): Promise<Record<string, number | string>> {
  const dir = process.env.HEED_BENCH_SD ?? (await ensureTinyModels()).sd;
  const unet = join(dir, 'unet', 'model.onnx');
  const here = fileURLToPath(import.meta.url);
  const peak = (mode: 'staged' | 'buffers'): number => {
    const r = spawnSync(process.execPath, [here, '--open', mode, unet], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.split('\n').find((l) => l.startsWith('PEAK_RSS_MB '));
    if (!line) throw new Error(`sessions bench (${mode}) failed with exit ${r.status}`);
    return Number(line.slice('PEAK_RSS_MB '.length));
  };
  const staged = peak('staged');
  const buffers = peak('buffers');
  return { model: unet, sessions: SESSIONS, peak_rss_mb_staged: staged, peak_rss_mb_buffers: buffers, ratio_peak_rss_buffers_vs_staged: buffers / staged };
}

if (process.argv[2] === '--open') {
  await openEdited(process.argv[4]!, process.argv[3] === 'staged');
  process.stdout.write(`PEAK_RSS_MB ${process.resourceUsage().maxRSS / 1024}\n`);
}
