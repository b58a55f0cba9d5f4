// `heed serve`: an HTTP server (GET /healthz) whose WebSocket upgrades speak the heed/1 protocol (protocol.ts,
// PROTOCOL.md). The main thread only parses, validates, authorises and routes; generation and explanation run in the
// worker pool (pool.ts). Every job also writes its files to <out>/jobs/<jobId>/ so nothing is lost when a client goes
// away, and its events go only to the connection that asked.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import type { Socket } from 'node:net';
import { basename, extname, join, resolve } from 'node:path';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { checkUpgradeAuth, generateToken, isLoopbackHost } from './auth.js';
import { ProtocolError, toErrorInfo, type ErrorInfo } from './errors.js';
import { PathPolicy } from './paths.js';
import { WorkerPool } from './pool.js';
import type { Isolation } from './worker-handle.js';
import {
  CLOSE_CODES,
  DEFAULT_MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  REQUEST_TYPES,
  Request,
  ServerEvent,
  describeIssues,
  encodeBinaryFrame,
  type ExplainRequest,
  type FetchRequest,
  type GenerateRequest,
  type ResultPayload,
} from '../protocol/index.js';
import type { WorkerJob } from './runner.js';
import { TokenizerService } from './tokenize.js';
import { JobFolders, type RetentionPolicy } from './retention.js';
import { DEFAULT_LIMITS, RateLimitedLog, nestingDepthOver } from './limits.js';
import { Outbox, openConfined } from './fetch.js';
import { copyVerifiedInput } from './job-inputs.js';

export const SERVER_VERSION = '0.1.0';

export interface ServerOptions {
  host?: string;
  /** 0 = a free port. */
  port?: number;
  /** The token clients must present; generated when absent. */
  token?: string;
  /** Set when the token came from the user (required to bind a non-loopback address). */
  tokenGiven?: boolean;
  /** Folders models may be loaded from (realpath containment); empty = any. */
  modelRoots?: string[];
  workers?: number;
  /** Output folder: job folders under jobs/, server.json beside them. Default ~/.heed. */
  outDir?: string;
  /** Where to write {url, token, pid} (mode 0600); false = do not write. Default <outDir>/server.json. */
  infoFile?: string | false;
  queueLimit?: number;
  maxMessageBytes?: number;
  maxFetchBytes?: number;
  /** Per-worker model cache budget. */
  cacheBytes?: number;
  /** Generate jobs whose estimated working set exceeds this many MiB are refused with invalid_input. */
  maxJobMemoryMb?: number;
  /** Interval of the WebSocket pings that detect dead connections (default 30 s). */
  heartbeatMs?: number;
  /** Runner module URL for the workers (tests inject their own); default: the engine runner. */
  runnerModule?: string;
  /** Workers as child processes (default: a killed or crashed worker cannot take the server down) or threads. */
  isolation?: Isolation;
  /** The Node binary that runs worker processes (default: this one). */
  workerExecPath?: string;
  /** WebSocket connections at once before new ones are refused with HTTP 503 (TCP sockets: twice this). Default 64. */
  maxConnections?: number;
  /** A connection must complete an authenticated WebSocket upgrade within this time or it is closed. Default 10 s. */
  authDeadlineMs?: number;
  /** Deepest nesting of arrays/objects in a client message, checked before parsing. Default 64. */
  maxJsonDepth?: number;
  /** Fetches one connection may have opened and not yet sent completely. Default 4. */
  maxFetchesInFlight?: number;
  /** A fetch stops reading its file while the socket holds more than this many unsent bytes. Default 1 MiB. */
  fetchHighWaterBytes?: number;
  /** Job retention: keep at most `count` finished job folders and/or none older than `ageMs`. Default: keep all. */
  keepJobs?: RetentionPolicy;
  /** Bytes the jobs folder may hold before new jobs are refused with quota_exceeded. Default 20 GiB. */
  maxOutBytes?: number;
  /** After a cancel, time a running job has to stop before its worker process is terminated. Default 30 s. */
  cancelGraceMs?: number;
  /** Longest a job may run before its worker is terminated and the job fails; 0 = no limit (default). */
  jobTimeoutMs?: number;
  log?: (message: string) => void;
}

export interface ServerInfo {
  url: string;
  token: string;
  pid: number;
  protocol: string;
  host: string;
  port: number;
  outDir: string;
  startedAt: string;
}

interface OpenRequest {
  jobId?: string;
}

interface Connection {
  ws: WebSocket;
  hello: boolean;
  open: Map<string, OpenRequest>;
  remote: string;
  chain: Promise<void>;
  /** Answered the last ping (half-open TCP connections are dropped after one silent interval). */
  alive: boolean;
  /** Every message to this client goes through here (ordering, and backpressure for fetched files). */
  outbox: Outbox;
  /** Fetches opened and not yet completely sent. */
  fetches: number;
}

type ResolvedOptions = Required<Omit<ServerOptions, 'token' | 'tokenGiven' | 'infoFile' | 'log' | 'modelRoots' | 'heartbeatMs' | 'workerExecPath' | 'cancelGraceMs' | 'jobTimeoutMs' | 'maxJobMemoryMb'>> & {
  infoFile: string | false;
  maxJobMemoryMb?: number;
  workerExecPath?: string;
  cancelGraceMs?: number;
  jobTimeoutMs?: number;
};

const DEFAULT_RUNNER = new URL('./engine-runner.js', import.meta.url).href;

function newJobId(): string {
  const d = new Date();
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}-${randomBytes(4).toString('hex')}`;
}

/** Where an explain's uploaded image is kept while its job runs. */
const UPLOAD_NAME = 'input.png';

/** Shortest token accepted from the user (a generated one has 43 characters). */
export const MIN_TOKEN_LENGTH = 16;

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${value}`);
  return value;
}

const MIME: Record<string, string> = { '.png': 'image/png', '.json': 'application/json', '.npy': 'application/octet-stream', '.txt': 'text/plain' };

export class HeedServer {
  readonly pool: WorkerPool;
  readonly info: ServerInfo;
  private readonly connections = new Set<Connection>();
  /** TCP sockets that have not completed an authenticated upgrade yet → their deadline timers. */
  private readonly pendingSockets = new Map<Socket, NodeJS.Timeout>();
  private readonly refusals: RateLimitedLog;
  /** Job folders of queued or running jobs (retention leaves them alone). */
  private readonly activeJobs = new Set<string>();
  readonly jobFolders: JobFolders;
  private readonly tokenizers = new TokenizerService();
  private readonly startedAt = Date.now();
  private closing = false;
  private heartbeat?: NodeJS.Timeout;
  private closedResolve!: () => void;
  /** Resolves once close() has finished (the serve command waits on it). */
  readonly closed = new Promise<void>((r) => (this.closedResolve = r));

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    private readonly opts: ResolvedOptions,
    private readonly modelPolicy: PathPolicy,
    private readonly filePolicy: PathPolicy,
    private readonly fetchPolicy: PathPolicy,
    private readonly log: (m: string) => void,
    info: ServerInfo,
  ) {
    this.info = info;
    this.refusals = new RateLimitedLog(log, 'refused connections');
    this.jobFolders = new JobFolders(join(opts.outDir, 'jobs'), opts.keepJobs, opts.maxOutBytes, (name) => this.activeJobs.has(name), log);
    this.pool = new WorkerPool({ workers: opts.workers, runnerModule: opts.runnerModule, cacheBytes: opts.cacheBytes, ...(opts.maxJobMemoryMb !== undefined ? { maxJobMemoryMb: opts.maxJobMemoryMb } : {}), queueLimit: opts.queueLimit, isolation: opts.isolation,
      ...(opts.workerExecPath ? { execPath: opts.workerExecPath } : {}),
      ...(opts.cancelGraceMs !== undefined ? { cancelGraceMs: opts.cancelGraceMs } : {}),
      ...(opts.jobTimeoutMs !== undefined ? { jobTimeoutMs: opts.jobTimeoutMs } : {}),
      log,
    });
  }

  get url(): string {
    return this.info.url;
  }

  get token(): string {
    return this.info.token;
  }

  static async start(options: ServerOptions = {}): Promise<HeedServer> {
    const host = options.host ?? '127.0.0.1';
    if (!isLoopbackHost(host) && !(options.token && options.tokenGiven)) {
      throw new Error(
        `refusing to listen on ${host} without a token you chose: a non-loopback address exposes the engine to the network. Pass --token-file F (a secret you share with the client) or bind 127.0.0.1`,
      );
    }
    if (options.token !== undefined && options.token.length < MIN_TOKEN_LENGTH) throw new Error(`the token must be at least ${MIN_TOKEN_LENGTH} characters (use a random secret)`);
    const log = options.log ?? ((m: string) => process.stderr.write(`[heed serve ${new Date().toISOString()}] ${m}\n`));
    const outDir = resolve(options.outDir ?? join(homedir(), '.heed'));
    await mkdir(join(outDir, 'jobs'), { recursive: true, mode: 0o700 });
    const modelPolicy = await PathPolicy.create(options.modelRoots ?? []);
    const filePolicy = modelPolicy.restricted ? await PathPolicy.create([...modelPolicy.roots, outDir]) : modelPolicy;
    const fetchPolicy = await PathPolicy.create([outDir]);
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const opts: ResolvedOptions = {
      host,
      port: options.port ?? 0,
      workers: options.workers ?? 1,
      outDir,
      infoFile: options.infoFile === undefined ? join(outDir, 'server.json') : options.infoFile,
      queueLimit: options.queueLimit ?? 16,
      maxMessageBytes,
      maxFetchBytes: options.maxFetchBytes ?? 64 * 1024 * 1024,
      cacheBytes: options.cacheBytes ?? 4 * 1024 ** 3,
      runnerModule: options.runnerModule ?? DEFAULT_RUNNER,
      isolation: options.isolation ?? 'process',
      ...(options.workerExecPath ? { workerExecPath: options.workerExecPath } : {}),
      maxConnections: positive(options.maxConnections, DEFAULT_LIMITS.maxConnections, 'maxConnections'),
      authDeadlineMs: positive(options.authDeadlineMs, DEFAULT_LIMITS.authDeadlineMs, 'authDeadlineMs'),
      maxJsonDepth: positive(options.maxJsonDepth, DEFAULT_LIMITS.maxJsonDepth, 'maxJsonDepth'),
      maxFetchesInFlight: positive(options.maxFetchesInFlight, DEFAULT_LIMITS.maxFetchesInFlight, 'maxFetchesInFlight'),
      fetchHighWaterBytes: positive(options.fetchHighWaterBytes, DEFAULT_LIMITS.fetchHighWaterBytes, 'fetchHighWaterBytes'),
      maxOutBytes: positive(options.maxOutBytes, DEFAULT_LIMITS.maxOutBytes, 'maxOutBytes'),
      keepJobs: options.keepJobs ?? {},
      ...(options.cancelGraceMs !== undefined ? { cancelGraceMs: positive(options.cancelGraceMs, 0, 'cancelGraceMs') } : {}),
      ...(options.jobTimeoutMs ? { jobTimeoutMs: positive(options.jobTimeoutMs, 0, 'jobTimeoutMs') } : {}),
      ...(options.maxJobMemoryMb !== undefined ? { maxJobMemoryMb: positive(options.maxJobMemoryMb, 1, 'maxJobMemoryMb') } : {}),
    };
    const token = options.token ?? generateToken();
    const http = createServer();
    // A hard cap on TCP sockets (handshakes in progress included); the WebSocket cap below answers with a reason.
    http.maxConnections = opts.maxConnections * 2;
    // maxPayload makes ws refuse an oversized frame from its header, before buffering it, and close with 1009.
    const wss = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes });
    await new Promise<void>((res, rej) => {
      http.once('error', rej);
      http.listen(opts.port, host, () => res());
    });
    const addr = http.address();
    const port = typeof addr === 'object' && addr ? addr.port : opts.port;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    const info: ServerInfo = { url: `ws://${urlHost}:${port}/`, token, pid: process.pid, protocol: PROTOCOL_VERSION, host, port, outDir, startedAt: new Date().toISOString() };
    const server = new HeedServer(http, wss, opts, modelPolicy, filePolicy, fetchPolicy, log, info);
    await server.jobFolders.start();
    http.on('connection', (socket: Socket) => server.onSocket(socket));
    http.on('drop', (d?: { remoteAddress?: string }) => server.refusals.write(`refused a connection from ${d?.remoteAddress ?? 'unknown'}: over ${opts.maxConnections * 2} open sockets`));
    http.on('request', (req, res) => {
      if (req.method === 'GET' && new URL(req.url ?? '/', 'http://x').pathname === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, protocol: PROTOCOL_VERSION, version: SERVER_VERSION }));
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('heed serve: WebSocket endpoint (protocol heed/1) and GET /healthz only\n');
    });
    http.on('upgrade', (req, socket, head) => server.onUpgrade(req, socket, head));
    server.heartbeat = setInterval(() => server.ping(), options.heartbeatMs ?? 30_000);
    server.heartbeat.unref();
    if (opts.infoFile) await writeInfoFile(opts.infoFile, info);
    log(`listening on ${info.url} (protocol ${PROTOCOL_VERSION}, ${opts.workers} worker ${opts.isolation === 'process' ? 'process' : 'thread'}${opts.workers > 1 ? (opts.isolation === 'process' ? 'es' : 's') : ''}, out ${outDir})`);
    return server;
  }

  /** Every new TCP socket gets the authentication deadline: an idle or half-sent handshake cannot hold it longer. */
  private onSocket(socket: Socket): void {
    const timer = setTimeout(() => {
      this.pendingSockets.delete(socket);
      this.refusals.write(`refused a connection from ${socket.remoteAddress}: no authenticated WebSocket upgrade within ${this.opts.authDeadlineMs} ms`);
      socket.destroy();
    }, this.opts.authDeadlineMs);
    timer.unref();
    this.pendingSockets.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(this.pendingSockets.get(socket));
      this.pendingSockets.delete(socket);
    });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const auth = checkUpgradeAuth(req, this.info.token);
    const full = this.connections.size >= this.opts.maxConnections;
    if (!auth.ok || this.closing || full) {
      const reason = !auth.ok
        ? auth.reason
        : this.closing
          ? 'the server is shutting down'
          : `too many connections: this server allows ${this.opts.maxConnections} at once (--max-connections); close one or raise the limit`;
      const status = auth.ok ? '503 Service Unavailable' : '401 Unauthorized';
      const body = `${reason}\n`;
      socket.end(
        `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `${auth.ok ? '' : 'WWW-Authenticate: Bearer realm="heed"\r\n'}Connection: close\r\n\r\n${body}`,
      );
      this.refusals.write(`refused a connection from ${req.socket.remoteAddress}: ${reason}`);
      return;
    }
    clearTimeout(this.pendingSockets.get(req.socket));
    this.pendingSockets.delete(req.socket);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const conn: Connection = {
      ws,
      hello: false,
      open: new Map(),
      remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      chain: Promise.resolve(),
      alive: true,
      outbox: new Outbox(ws, req.socket, this.opts.fetchHighWaterBytes),
      fetches: 0,
    };
    ws.on('pong', () => (conn.alive = true));
    this.connections.add(conn);
    ws.on('message', (data, isBinary) => {
      // One connection's requests are handled in arrival order: job submission awaits file-system checks, and
      // without the chain two generates could enter the queue swapped, or a cancel overtake the job it targets.
      conn.chain = conn.chain
        .then(() => this.onMessage(conn, data, isBinary))
        .catch((e: unknown) => {
          this.log(`internal error handling a message: ${(e as Error).stack ?? String(e)}`);
          this.sendError(conn, undefined, { code: 'internal', message: `internal server error: ${(e as Error).message}` });
        });
    });
    ws.on('error', (err) => {
      // ws has already closed the socket (1009 for an oversized message); the server keeps serving the others.
      this.log(`connection ${conn.remote}: ${err.message}`);
    });
    ws.on('close', () => {
      this.connections.delete(conn);
      // Jobs keep running: their files land in the job folder even though nobody listens any more.
    });
  }

  private send(conn: Connection, event: ServerEvent): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    const checked = ServerEvent.safeParse(event);
    if (!checked.success) {
      // A bug on our side: tell the client plainly instead of sending something its schema would reject.
      const { message } = describeIssues(checked.error.issues);
      this.log(`BUG: outgoing ${event.type} event fails the schema: ${message}`);
      conn.outbox.text(JSON.stringify({ type: 'error', ...(event.id ? { id: event.id } : {}), code: 'internal', message: `internal error: the server built an invalid ${event.type} event (${message})` }));
      // That error ends the request: exactly one terminal event per request id. Close it here, and stop its job so
      // its later result (or error) is not sent as a second terminal event (the job's callbacks check `open`).
      const open = event.id !== undefined ? conn.open.get(event.id) : undefined;
      if (open && event.id !== undefined) {
        conn.open.delete(event.id);
        if (open.jobId !== undefined) this.pool.cancel(open.jobId);
      }
      return;
    }
    conn.outbox.text(JSON.stringify(event));
  }

  private sendError(conn: Connection, id: string | undefined, err: ErrorInfo): void {
    this.send(conn, { type: 'error', ...(id !== undefined ? { id } : {}), code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) });
  }

  private sendResult(conn: Connection, id: string, result: ResultPayload): void {
    this.send(conn, { type: 'result', id, result });
  }

  private async onMessage(conn: Connection, data: RawData, isBinary: boolean): Promise<void> {
    if (isBinary) {
      this.sendError(conn, undefined, { code: 'binary_not_supported', message: 'send requests as JSON text frames; binary frames only go from server to client' });
      return;
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    // JSON.parse of deeply nested input holds the main thread (8 MB of brackets: ~1.3 s): count before parsing.
    if (nestingDepthOver(text, this.opts.maxJsonDepth) !== undefined) {
      this.sendError(conn, undefined, {
        code: 'bad_json',
        message: `the message nests arrays/objects deeper than ${this.opts.maxJsonDepth} levels, the server's limit (checked before parsing; no request needs more)`,
      });
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      this.sendError(conn, undefined, { code: 'bad_json', message: `the message is not valid JSON: ${(e as Error).message}` });
      return;
    }
    const obj = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
    const rid = typeof obj?.id === 'string' && obj.id.length > 0 && obj.id.length <= 64 ? obj.id : undefined;
    if (!obj) {
      this.sendError(conn, undefined, { code: 'invalid_message', message: 'a message must be a JSON object with "type" and "id"' });
      return;
    }
    if (typeof obj.type !== 'string' || !(REQUEST_TYPES as readonly string[]).includes(obj.type)) {
      this.sendError(conn, rid, {
        code: 'unknown_type',
        field: 'type',
        message: `unknown message type ${JSON.stringify(obj.type)}; this server (${PROTOCOL_VERSION}) understands ${REQUEST_TYPES.join(', ')}`,
      });
      return;
    }
    const parsed = Request.safeParse(obj);
    if (!parsed.success) {
      const { field, message } = describeIssues(parsed.error.issues);
      this.sendError(conn, rid, { code: 'invalid_message', message: `invalid ${obj.type} request: ${message}`, ...(field ? { field } : {}) });
      return;
    }
    const req = parsed.data;
    if (req.type !== 'hello' && !conn.hello) {
      this.sendError(conn, req.id, { code: 'hello_required', message: `send {"type":"hello","id":…,"protocols":["${PROTOCOL_VERSION}"]} first` });
      return;
    }
    if (conn.open.has(req.id)) {
      this.sendError(conn, req.id, { code: 'duplicate_id', field: 'id', message: `request id ${JSON.stringify(req.id)} is still in use by an open request of this connection; use a fresh id` });
      return;
    }
    conn.open.set(req.id, {});
    try {
      await this.handle(conn, req);
    } catch (e) {
      conn.open.delete(req.id);
      this.sendError(conn, req.id, toErrorInfo(e, 'internal'));
    }
  }

  /** Handles a validated request. Non-job requests answer here; jobs answer from the pool's callbacks. */
  private async handle(conn: Connection, req: Request): Promise<void> {
    const done = (result: ResultPayload): void => {
      conn.open.delete(req.id);
      this.sendResult(conn, req.id, result);
    };
    switch (req.type) {
      case 'hello': {
        if (!req.protocols.includes(PROTOCOL_VERSION)) {
          throw new ProtocolError('unsupported_protocol', `this server speaks ${PROTOCOL_VERSION}; the client offered ${req.protocols.join(', ')} — update the client or the engine`, 'protocols');
        }
        conn.hello = true;
        done({
          kind: 'hello',
          protocol: PROTOCOL_VERSION,
          server: { name: 'heed', version: SERVER_VERSION, pid: process.pid },
          limits: { maxMessageBytes: this.opts.maxMessageBytes, queueLimit: this.opts.queueLimit, maxFetchBytes: this.opts.maxFetchBytes },
          outDir: this.opts.outDir,
        });
        return;
      }
      case 'tokenize': {
        const dir = await this.modelPolicy.resolve(req.model, 'model', 'model');
        done(await this.tokenizers.tokenize(dir, req.text));
        return;
      }
      case 'listModels':
        done({ kind: 'listModels', roots: this.modelPolicy.roots, models: await this.modelPolicy.listModels() });
        return;
      case 'status':
        done({
          kind: 'status',
          protocol: PROTOCOL_VERSION,
          uptimeMs: Date.now() - this.startedAt,
          workers: this.pool.status(),
          queues: this.pool.queueLengths(),
          queueLimit: this.opts.queueLimit,
          yourJobs: [...conn.open]
            .filter(([, o]) => o.jobId && this.pool.jobState(o.jobId))
            .map(([id, o]) => ({ id, jobId: o.jobId!, state: this.pool.jobState(o.jobId!)! })),
          connections: this.connections.size,
        });
        return;
      case 'cancel': {
        const target = conn.open.get(req.target);
        const was = target?.jobId ? this.pool.cancel(target.jobId) : undefined;
        if (!was) throw new ProtocolError('not_found', `no open job with id ${JSON.stringify(req.target)} on this connection (finished already, or never a job)`, 'target');
        done({ kind: 'cancel', target: req.target, was });
        return;
      }
      case 'fetch':
        await this.fetchFile(conn, req);
        return;
      case 'generate':
      case 'explain':
        await this.submitJob(conn, req);
        return;
    }
  }

  /**
   * Answers a fetch: the result event, then the file as one binary message streamed from the descriptor (fetch.ts).
   * The stream runs on after this returns, so a large file does not hold up the connection's other requests.
   */
  private async fetchFile(conn: Connection, req: FetchRequest): Promise<void> {
    const max = this.opts.maxFetchesInFlight;
    if (conn.fetches >= max) {
      throw new ProtocolError('too_many_fetches', `this connection already has ${max} fetches in flight, the server's limit (--max-fetches); wait for one to arrive, then ask again`);
    }
    const checked = await this.fetchPolicy.resolve(req.path, 'path', 'file');
    // The policy's answer is only a first filter: what is read is the descriptor opened and verified here.
    const file = await openConfined(checked, this.fetchPolicy.roots, 'path', req.path);
    if (file.size > this.opts.maxFetchBytes) {
      await file.handle.close();
      throw new ProtocolError('file_too_large', `${req.path} has ${file.size} bytes, over the fetch limit of ${this.opts.maxFetchBytes}`, 'path');
    }
    const header = { id: req.id, path: file.path, bytes: file.size, mime: MIME[extname(file.path).toLowerCase()] ?? 'application/octet-stream' };
    conn.fetches++;
    conn.open.delete(req.id);
    this.sendResult(conn, req.id, { kind: 'fetch', path: header.path, bytes: header.bytes, mime: header.mime });
    void conn.outbox
      .file(encodeBinaryFrame(header, new Uint8Array(0)), file.handle, file.size)
      .catch((e: unknown) => {
        this.log(`connection ${conn.remote}: fetch of ${file.path} failed: ${(e as Error).message}`);
        conn.ws.close(1011, 'a fetched file could not be read');
      })
      .finally(() => {
        conn.fetches--;
        void file.handle.close().catch(() => undefined);
      });
  }

  private async submitJob(conn: Connection, req: GenerateRequest | ExplainRequest): Promise<void> {
    const modelDir = await this.modelPolicy.resolve(req.model, 'model', 'model');
    const upload = req.type === 'explain' && 'data' in req.image ? Buffer.from(req.image.data, 'base64') : undefined;
    this.jobFolders.checkRoom(upload?.length ?? 0);
    const jobId = newJobId();
    const outDir = join(this.opts.outDir, 'jobs', jobId);
    // From here the folder is the job's: retention leaves it alone until the job has ended.
    this.activeJobs.add(jobId);
    const jobEnded = (): void => {
      this.activeJobs.delete(jobId);
      void Promise.all(copies.map(({ copy }) => rm(copy, { force: true })))
        .then(() => this.jobFolders.ended(jobId))
        .catch((e: unknown) => this.log(`job ${jobId}: cleaning up its folder: ${(e as Error).message}`));
    };
    let job: WorkerJob;
    /** Copies of client-named input files (job-inputs.ts): the worker reads these, and they go when the job ends. */
    const copies: Array<{ copy: string; given: string }> = [];
    const copyInput = async (given: string, field: string, name: string): Promise<string> => {
      const real = await this.filePolicy.resolve(given, field, 'file');
      const dest = join(outDir, `${name}${extname(real).toLowerCase().replace(/[^.a-z0-9]/g, '')}`);
      await copyVerifiedInput(real, this.filePolicy.roots, field, given, dest);
      copies.push({ copy: dest, given });
      return dest;
    };
    try {
      await mkdir(outDir, { recursive: true });
      if (req.type === 'generate') {
        const latentsPath = req.latents ? await copyInput(req.latents, 'latents', 'input-latents') : undefined;
        job = { kind: 'generate', jobId, request: req, modelDir, ...(latentsPath ? { latentsPath } : {}), outDir };
      } else {
        let imagePath: string;
        if (!upload && 'path' in req.image) imagePath = await copyInput(req.image.path, 'image.path', 'input-image');
        else {
          imagePath = join(outDir, UPLOAD_NAME);
          await writeFile(imagePath, upload ?? Buffer.alloc(0));
          this.jobFolders.add(jobId, upload?.length ?? 0);
        }
        job = { kind: 'explain', jobId, request: req, modelDir, imagePath, outDir };
      }
    } catch (e) {
      this.activeJobs.delete(jobId);
      this.jobFolders.forget(jobId);
      await rm(outDir, { recursive: true, force: true });
      throw e;
    }
    // The request beside the results: a client that went away can still see what produced them.
    await writeFile(join(outDir, 'request.json'), JSON.stringify(req.type === 'explain' && 'data' in req.image ? { ...req, image: { path: 'input.png' } } : req, null, 2));
    const open = conn.open.get(req.id);
    if (open) open.jobId = jobId;
    let submitted: { position: number; started: boolean };
    try {
      submitted = this.pool.submit(job, {
      onProgress: (update) => {
        if (conn.open.get(req.id) === open) this.send(conn, { type: 'progress', id: req.id, jobId, ...update });
      },
      // The record lands in the job folder before the client hears of the end, so it can rely on finding it.
      onDone: (result) => {
        void writeFile(join(outDir, 'result.json'), JSON.stringify(result, null, 2))
          .catch((e: unknown) => this.log(`job ${jobId}: could not write result.json: ${(e as Error).message}`))
          .then(() => {
            // Already ended (an outgoing event failed the schema and was answered with an error): no second end.
            if (conn.open.get(req.id) === open) {
              conn.open.delete(req.id);
              this.sendResult(conn, req.id, result);
            }
            jobEnded();
          });
      },
      onError: (raw) => {
        // The engine names the file it read, the server's copy: say the path the client gave instead.
        const err = { ...raw, message: copies.reduce((m, { copy, given }) => m.split(copy).join(given), raw.message) };
        this.log(`job ${jobId} ended: ${err.code}: ${err.message}`);
        // The upload served only this job: a failed job keeps its record (request.json, error.json), not the bytes.
        void (upload ? rm(join(outDir, UPLOAD_NAME), { force: true }) : Promise.resolve())
          .then(() => writeFile(join(outDir, 'error.json'), JSON.stringify(err, null, 2)))
          .catch(() => undefined)
          .then(() => {
            if (conn.open.get(req.id) === open) {
              conn.open.delete(req.id);
              this.sendError(conn, req.id, err);
            }
            jobEnded();
          });
      },
    });
    } catch (e) {
      this.activeJobs.delete(jobId);
      this.jobFolders.forget(jobId);
      await rm(outDir, { recursive: true, force: true });
      throw e;
    }
    this.send(conn, { type: 'accepted', id: req.id, jobId, position: submitted.position, outDir });
    if (!submitted.started) this.send(conn, { type: 'progress', id: req.id, jobId, phase: 'queued', step: 0, total: 0 });
  }

  /** Pings every connection; one that did not answer the previous ping is gone (its jobs go on). */
  private ping(): void {
    for (const c of this.connections) {
      if (!c.alive) {
        this.log(`connection ${c.remote} stopped answering pings; dropping it`);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  /** Request ids → job ids of one connection's open jobs (tests). */
  jobIdOf(requestId: string): string | undefined {
    for (const c of this.connections) {
      const j = c.open.get(requestId)?.jobId;
      if (j) return j;
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.heartbeat);
    this.jobFolders.stop();
    for (const timer of this.pendingSockets.values()) clearTimeout(timer);
    for (const c of this.connections) c.ws.close(CLOSE_CODES.goingAway, 'server shutting down');
    await this.pool.close();
    await this.tokenizers.close();
    await new Promise<void>((res) => {
      this.wss.close(() => res());
    });
    for (const c of this.connections) c.ws.terminate();
    await new Promise<void>((res) => this.http.close(() => res()));
    this.http.closeAllConnections?.();
    if (this.opts.infoFile) await rm(this.opts.infoFile, { force: true });
    this.refusals.flush();
    this.closedResolve();
  }
}

/**
 * Writes server.json atomically with mode 0600 (it holds the token). The temporary file has an unguessable name and
 * is created exclusively without following symlinks: a file or symlink planted beside it cannot receive the token or
 * lend it wider permissions.
 */
async function writeInfoFile(path: string, info: ServerInfo): Promise<void> {
  await mkdir(resolve(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = join(resolve(path, '..'), `.${basename(path)}.${randomBytes(12).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    try {
      await fh.writeFile(JSON.stringify(info, null, 2) + '\n');
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export function startServer(options: ServerOptions = {}): Promise<HeedServer> {
  return HeedServer.start(options);
}
