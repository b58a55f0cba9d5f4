// `npm run bench`: runs each benchmark section in its own child process (so that each peak RSS is its own) and
// writes one JSON file, `bench/results.json` by default (or the path given as the first argument).
// Sections: diffusion (UNet hooks, generation, Attend-and-Excite), sdxl (the same on an SDXL folder), vjp, explain, server, sessions (memory of edited
// models: staged vs buffers), memory (peak Pss of an A&E generation vs the weights; step time with shared weights).
// `node dist/bench/run.js [out.json] [--only diffusion,vjp]`.
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, totalmem } from 'node:os';

const SECTIONS = ['diffusion', 'sdxl', 'vjp', 'explain', 'server', 'sessions', 'memory'] as const;
type Section = (typeof SECTIONS)[number];

async function runSection(name: Section): Promise<Record<string, unknown>> {
  switch (name) {
    case 'diffusion': return (await import('./diffusion.js')).benchDiffusion();
    case 'sdxl': return (await import('./sdxl.js')).benchSdxl();
    case 'vjp': return (await import('./vjp.js')).benchVjp();
    case 'explain': return (await import('./explain.js')).benchExplain();
    case 'server': return (await import('./server.js')).benchServer();
    case 'sessions': return (await import('./sessions.js')).benchSessions();
    case 'memory': return (await import('./memory.js')).benchMemory();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    const result = await runSection(args[1] as Section);
    process.stdout.write(`\nBENCH_JSON ${JSON.stringify({ ...result, child_peak_rss_mb: process.resourceUsage().maxRSS / 1024 })}\n`);
    return;
  }
  const onlyIdx = args.indexOf('--only');
  const only = onlyIdx >= 0 ? args[onlyIdx + 1].split(',') : [...SECTIONS];
  const outPath = resolve(args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--only') ?? 'bench/results.json');
  const here = fileURLToPath(import.meta.url);
  const report: Record<string, unknown> = {
    date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model, memGb: totalmem() / 2 ** 30,
  };
  for (const section of SECTIONS) {
    if (!only.includes(section)) continue;
    process.stderr.write(`bench: ${section}…\n`);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [here, '--child', section], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
    report[section] = line ? JSON.parse(line.slice('BENCH_JSON '.length)) : { error: `exit ${r.status}`, output: r.stdout.slice(-2000) };
    process.stderr.write(`bench: ${section} done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`bench: wrote ${outPath}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
