// `heed serve`: the CLI face of the server. engine/cli/main.ts registers it with `registerServe(program)`.
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { MIN_TOKEN_LENGTH, startServer, type HeedServer } from './server.js';
import { PROTOCOL_VERSION } from '../protocol/index.js';
import { isLoopbackHost } from './auth.js';
import { DEVICES, describeDevice, isDevice, resolveDevice } from '../onnx/device.js';
import { DEFAULT_LIMITS } from './limits.js';
import { parseKeepJobs, type RetentionPolicy } from './retention.js';

export interface ServeCliOptions {
  host: string;
  port: number;
  token?: string;
  tokenFile?: string;
  models?: string[];
  workers: number;
  out?: string;
  queueLimit: number;
  maxMessageMb: number;
  cacheMb?: number;
  maxJobMemoryMb?: number;
  infoFile?: string;
  json?: boolean;
  /** --device; resolved once here, handed to the workers as HEED_DEVICE. */
  device?: string;
  isolation: 'process' | 'thread';
  maxConnections: number;
  authTimeout: number;
  maxJsonDepth: number;
  maxFetches: number;
  keepJobs?: RetentionPolicy;
  maxOutMb: number;
  cancelGrace: number;
  jobTimeout: number;
}

function keepJobs(v: string, previous: RetentionPolicy | undefined): RetentionPolicy {
  try {
    return parseKeepJobs(v, previous);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`);
    return n;
  };
}

export function registerServe(program: Command): Command {
  return program
    .command('serve')
    .description(`run the engine as a WebSocket service (protocol ${PROTOCOL_VERSION}, see PROTOCOL.md) for the VS Code extension and other clients`)
    .option('--host <addr>', 'address to bind (non-loopback needs --token or --token-file)', '127.0.0.1')
    .option('--port <n>', 'port (0 = any free port; the chosen one is printed and written to server.json)', int('--port', 0, 65535), 0)
    .option('--token <secret>', 'token clients must present (default: a random one; prefer --token-file, command lines are visible to other users)')
    .option('--token-file <file>', 'read the token from this file (first line)')
    .option('--models <dirs...>', 'only these folders (and what they contain) may be loaded; default: any folder')
    .option('--workers <n>', 'workers running jobs in parallel (each holds its own models)', int('--workers', 1, 64), 1)
    .addOption(
      new Option('--isolation <kind>', 'workers as child processes (a crashed or killed worker cannot take the server down) or threads (lighter)')
        .choices(['process', 'thread'])
        .default('process'),
    )
    .option('--out <dir>', 'output folder: job folders under jobs/, server.json beside them (default ~/.heed)')
    .option('--queue-limit <n>', 'queued jobs per model before requests are refused with queue_full', int('--queue-limit', 1, 10_000), 16)
    .option('--max-message-mb <n>', 'largest message a client may send, in MiB', int('--max-message-mb', 1, 1024), 16)
    .option('--cache-mb <n>', 'model cache per worker, in MiB (default: 40% of RAM / workers)', int('--cache-mb', 1, 1 << 24))
    .option('--max-job-memory-mb <n>', 'refuse generate jobs whose estimated working set exceeds this, in MiB (default: half the RAM)', int('--max-job-memory-mb', 1, 2 ** 30))
    .option('--max-connections <n>', 'WebSocket connections at once; more are refused with HTTP 503', int('--max-connections', 1, 100_000), DEFAULT_LIMITS.maxConnections)
    .option('--auth-timeout <s>', 'seconds a new connection has to authenticate before it is closed', int('--auth-timeout', 1, 3600), DEFAULT_LIMITS.authDeadlineMs / 1000)
    .option('--max-json-depth <n>', 'deepest nesting of arrays/objects in a client message', int('--max-json-depth', 8, 10_000), DEFAULT_LIMITS.maxJsonDepth)
    .option('--max-fetches <n>', 'fetches one connection may have in flight', int('--max-fetches', 1, 1024), DEFAULT_LIMITS.maxFetchesInFlight)
    .option('--keep-jobs <count|age>', 'remove finished job folders beyond the N newest (e.g. 200) and/or older than an age (30m, 12h, 7d); repeatable; default: keep all', keepJobs)
    .option('--max-out-mb <n>', 'jobs folder size in MiB past which new jobs are refused with quota_exceeded', int('--max-out-mb', 1, 1 << 30), DEFAULT_LIMITS.maxOutBytes / 1024 / 1024)
    .option('--cancel-grace <s>', 'seconds a cancelled job has to reach a step boundary before its worker process is terminated', int('--cancel-grace', 1, 86_400), 30)
    .option('--job-timeout <min>', 'minutes a job may run before its worker is terminated and the job fails (0 = no limit)', int('--job-timeout', 0, 525_600), 0)
    .addOption(new Option('--device <device>', "execution provider of the workers' sessions (auto: the best that opens)").choices(DEVICES).default(process.env.HEED_DEVICE ?? 'cpu'))
    .option('--info-file <file>', 'where to write {url, token, pid} (mode 0600; default <out>/server.json)')
    .option('--json', 'print one JSON line {url, token, pid, outDir} on stdout once listening (for programs that start the engine)')
    .action(async (opts: ServeCliOptions) => {
      // The action lasts as long as the server: the CLI exits when its command returns.
      const server = await runServe(opts);
      await server.closed;
    });
}

export async function runServe(opts: ServeCliOptions): Promise<HeedServer> {
  if (opts.token && opts.tokenFile) throw new InvalidArgumentError('give --token or --token-file, not both');
  let token = opts.token;
  if (opts.tokenFile) {
    try {
      token = readFileSync(opts.tokenFile, 'utf8').split(/\r?\n/)[0]?.trim();
    } catch (e) {
      throw new InvalidArgumentError(`--token-file ${opts.tokenFile}: ${(e as Error).message}`);
    }
    if (!token) throw new InvalidArgumentError(`--token-file ${opts.tokenFile} is empty; put a random secret of ${MIN_TOKEN_LENGTH}+ characters in it`);
  }
  // User errors (exit 2, the fix named), checked here rather than surfacing as the server's internal errors.
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new InvalidArgumentError(
      `the token must be at least ${MIN_TOKEN_LENGTH} characters, got ${token.length}; use a random secret (e.g. \`openssl rand -base64 32\`), or omit --token to have one generated`,
    );
  }
  if (!isLoopbackHost(opts.host) && !token) {
    throw new InvalidArgumentError(
      `refusing to listen on ${opts.host} without a token you chose: a non-loopback address exposes the engine to the network. Pass --token-file F (a secret you share with the client) or bind 127.0.0.1`,
    );
  }
  // The device is resolved once, before any worker starts, so a device that cannot open fails `heed serve` at once
  // (exit 2, the fix named) instead of every job; workers inherit the concrete device through the environment.
  const requested = opts.device ?? 'cpu';
  if (!isDevice(requested)) throw new InvalidArgumentError(`--device must be one of ${DEVICES.join(', ')} (got '${requested}')`);
  const device = await resolveDevice(requested);
  process.env.HEED_DEVICE = device.device;
  if (requested !== 'cpu' && !opts.json) process.stdout.write(`heed serve: device ${describeDevice(device, requested)}\n`);
  const workers = Math.min(opts.workers, Math.max(1, cpus().length));
  const cacheBytes = opts.cacheMb !== undefined ? opts.cacheMb * 1024 * 1024 : Math.floor((0.4 * totalmem()) / workers);
  const server = await startServer({
    host: opts.host,
    port: opts.port,
    ...(token ? { token, tokenGiven: true } : {}),
    modelRoots: opts.models ?? [],
    workers,
    isolation: opts.isolation,
    ...(opts.out ? { outDir: opts.out } : {}),
    ...(opts.infoFile ? { infoFile: opts.infoFile } : {}),
    queueLimit: opts.queueLimit,
    maxMessageBytes: opts.maxMessageMb * 1024 * 1024,
    cacheBytes,
    maxJobMemoryMb: opts.maxJobMemoryMb ?? Math.floor(totalmem() / 2 / 2 ** 20),
    maxConnections: opts.maxConnections,
    authDeadlineMs: opts.authTimeout * 1000,
    maxJsonDepth: opts.maxJsonDepth,
    maxFetchesInFlight: opts.maxFetches,
    ...(opts.keepJobs ? { keepJobs: opts.keepJobs } : {}),
    maxOutBytes: opts.maxOutMb * 1024 * 1024,
    cancelGraceMs: opts.cancelGrace * 1000,
    ...(opts.jobTimeout > 0 ? { jobTimeoutMs: opts.jobTimeout * 60_000 } : {}),
  });
  const { url, pid, outDir } = server.info;
  if (opts.json) process.stdout.write(JSON.stringify({ url, token: server.token, pid, outDir, protocol: PROTOCOL_VERSION }) + '\n');
  else {
    process.stdout.write(`heed serve: listening on ${url}\n`);
    process.stdout.write(`token: ${token ? '(the one you gave)' : server.token}\n`);
    process.stdout.write(`connection info (url, token, pid): ${opts.infoFile ?? `${outDir}/server.json`}\n`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`heed serve: ${signal}, shutting down\n`);
    void server.close();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  return server;
}
