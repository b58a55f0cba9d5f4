// The engine connection: starts `heed serve` in its own process (the system Node, so native modules such as
// onnxruntime-node never load into VS Code's extension host) or connects to a configured remote engine; keeps the
// status bar and the output channel up to date; reconnects (restarting a local engine) when the connection drops.
import * as vscode from 'vscode';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import WebSocket from 'ws';
import { HeedClient, type WebSocketLike } from './core/client.js';
import { engineCliPath, readConfig } from './config.js';

export type EngineState =
  | { kind: 'stopped'; detail?: string }
  | { kind: 'starting'; detail?: string }
  | { kind: 'connected'; url: string; remote: boolean }
  | { kind: 'busy'; label: string; step: number; total: number }
  | { kind: 'lost'; detail: string; retryInMs: number }
  | { kind: 'error'; detail: string };

const RETRY_DELAYS_MS = [2000, 4000, 8000, 15000, 30000];

function wsFactory(url: string): WebSocketLike {
  // `ws` speaks the WHATWG property API (onopen/onmessage/…) the client uses; the cast only narrows its typing.
  return new WebSocket(url, { maxPayload: 256 * 1024 * 1024 }) as unknown as WebSocketLike;
}

export class EngineManager implements vscode.Disposable {
  readonly output: vscode.OutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly stateEmitter = new vscode.EventEmitter<EngineState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private client: HeedClient | undefined;
  private proc: ChildProcess | undefined;
  private connecting: Promise<HeedClient> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private retries = 0;
  private disposed = false;
  private busy = new Map<string, { label: string; step: number; total: number }>();
  state: EngineState = { kind: 'stopped' };

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('Heed Engine');
    this.statusItem = vscode.window.createStatusBarItem('heed.status', vscode.StatusBarAlignment.Left, 100);
    this.statusItem.name = 'Heed Engine';
    this.render();
    this.statusItem.show();
  }

  log(line: string): void {
    this.output.appendLine(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  }

  private setState(s: EngineState): void {
    this.state = s;
    this.render();
    this.stateEmitter.fire(s);
  }

  private render(): void {
    const s = this.state;
    const item = this.statusItem;
    item.backgroundColor = undefined;
    switch (s.kind) {
      case 'stopped':
        item.text = '$(circle-slash) Heed';
        item.tooltip = `Heed engine: not running${s.detail ? ` (${s.detail})` : ''}. Click to start.`;
        item.command = 'heed.reconnect';
        break;
      case 'starting':
        item.text = '$(sync~spin) Heed: starting';
        item.tooltip = `Heed engine: starting${s.detail ? ` — ${s.detail}` : ''}`;
        item.command = 'heed.showLog';
        break;
      case 'connected':
        item.text = '$(pass) Heed';
        item.tooltip = `Heed engine: connected to ${s.remote ? 'remote' : 'local'} engine ${s.url}`;
        item.command = 'heed.showLog';
        break;
      case 'busy':
        item.text = `$(loading~spin) Heed: ${s.label} ${s.total > 0 ? `${s.step}/${s.total}` : ''}`.trimEnd();
        item.tooltip = `Heed engine: busy — ${s.label}${s.total > 0 ? ` step ${s.step} of ${s.total}` : ''}. Run "Heed: Cancel Generation" to stop.`;
        item.command = 'heed.cancel';
        break;
      case 'lost':
        item.text = '$(debug-disconnect) Heed: engine lost';
        item.tooltip = `Heed engine: connection lost (${s.detail}); reconnecting in ${Math.round(s.retryInMs / 1000)} s. Click to reconnect now.`;
        item.command = 'heed.reconnect';
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
        break;
      case 'error':
        item.text = '$(error) Heed: error';
        item.tooltip = `Heed engine: ${s.detail}. Click to retry.`;
        item.command = 'heed.reconnect';
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
    }
    const label = typeof item.tooltip === 'string' ? item.tooltip : item.text;
    item.accessibilityInformation = { label, role: 'button' };
  }

  /** Progress of a job, for the status bar (`step`/`total` of the current phase). */
  jobProgress(id: string, label: string, step: number, total: number): void {
    this.busy.set(id, { label, step, total });
    this.setState({ kind: 'busy', label, step, total });
  }

  jobDone(id: string): void {
    this.busy.delete(id);
    const other = [...this.busy.values()].pop();
    if (other) this.setState({ kind: 'busy', ...other });
    else if (this.client?.connected) this.setState({ kind: 'connected', url: this.client.hello ? this.currentUrl : '', remote: this.isRemote() });
  }

  private currentUrl = '';

  private isRemote(): boolean {
    return readConfig().engineUrl !== '';
  }

  /** The connected client, starting or connecting to the engine first when needed. */
  async ensureClient(): Promise<HeedClient> {
    if (this.client?.connected) return this.client;
    if (!this.connecting) {
      this.connecting = this.connect().finally(() => {
        this.connecting = undefined;
      });
    }
    return this.connecting;
  }

  private async connect(): Promise<HeedClient> {
    clearTimeout(this.retryTimer);
    const cfg = readConfig();
    this.setState({ kind: 'starting', detail: cfg.engineUrl || 'local engine' });
    try {
      let url: string;
      let token: string;
      if (cfg.engineUrl) {
        url = cfg.engineUrl;
        token = cfg.engineToken;
        if (!token) this.log(`No heed.engine.token set for ${url}; the engine will refuse the connection unless it runs without one.`);
      } else {
        ({ url, token } = await this.startLocal());
      }
      const client = new HeedClient(wsFactory);
      const hello = await client.connect(url, token);
      this.log(`connected to ${hello.server.name} ${hello.server.version} (pid ${hello.server.pid}, protocol ${hello.protocol}) at ${url}`);
      client.onClose((reason) => {
        if (this.client === client) this.onLost(reason);
      });
      this.client = client;
      this.currentUrl = url;
      this.retries = 0;
      this.busy.clear();
      this.setState({ kind: 'connected', url, remote: cfg.engineUrl !== '' });
      return client;
    } catch (e) {
      const detail = (e as Error).message;
      this.log(`engine: ${detail}`);
      this.setState({ kind: 'error', detail });
      throw e;
    }
  }

  /** Path of the engine's CLI: the setting, or the engine bundled in this extension. */
  private cliPath(): string {
    return engineCliPath(readConfig().cliPath);
  }

  private startLocal(): Promise<{ url: string; token: string }> {
    const cfg = readConfig();
    const cli = this.cliPath();
    if (!existsSync(cli)) {
      return Promise.reject(
        new Error(`the Heed engine is missing: ${cli} does not exist. Install the platform package of the extension (heed-linux-x64.vsix), or set "heed.engine.cliPath" to dist/engine/cli/main.js of a built Heed checkout.`),
      );
    }
    this.stopLocal();
    const token = randomBytes(24).toString('hex');
    const storage = this.context.globalStorageUri.fsPath;
    mkdirSync(storage, { recursive: true });
    const tokenFile = path.join(storage, 'engine-token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    mkdirSync(cfg.outputFolder, { recursive: true });
    const args = [cli, 'serve', '--json', '--host', '127.0.0.1', '--port', '0', '--token-file', tokenFile, '--out', cfg.outputFolder, '--device', cfg.device];
    this.log(`starting engine: ${cfg.nodePath} ${args.join(' ')}`);
    const env = { ...process.env };
    delete env.ELECTRON_RUN_AS_NODE;
    delete env.NODE_OPTIONS; // the extension host's options (inspector ports, loaders) are not the engine's
    const proc = spawn(cfg.nodePath, args, { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: path.dirname(cli) });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      let settled = false;
      let buffered = '';
      let stderrTail = '';
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        reject(new Error(why));
      };
      proc.stdout!.setEncoding('utf8');
      proc.stdout!.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          if (!settled && line.startsWith('{')) {
            try {
              const info = JSON.parse(line) as { url?: unknown };
              if (typeof info.url === 'string') {
                settled = true;
                this.log(`engine pid ${proc.pid} listening on ${info.url}`);
                resolve({ url: info.url, token });
                continue;
              }
            } catch {
              // not the info line; log it below
            }
          }
          this.output.appendLine(line);
        }
      });
      proc.stderr!.setEncoding('utf8');
      proc.stderr!.on('data', (chunk: string) => {
        stderrTail = (stderrTail + chunk).slice(-2000);
        this.output.append(chunk);
      });
      proc.on('error', (err: NodeJS.ErrnoException) => {
        fail(
          err.code === 'ENOENT'
            ? `cannot run "${cfg.nodePath}": Node.js ≥ 20 is needed to run the engine. Install it, or set "heed.engine.nodePath" to its path.`
            : `cannot start the engine with ${cfg.nodePath}: ${err.message}`,
        );
      });
      proc.on('exit', (code, signal) => {
        this.log(`engine process ${proc.pid} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
        if (this.proc === proc) this.proc = undefined;
        fail(`the engine exited before listening (${signal ? `signal ${signal}` : `code ${code}`}): ${stderrTail.trim().split('\n').slice(-3).join(' ') || 'no output'}`);
      });
      setTimeout(() => fail('the engine did not report its address within 60 s (see "Heed: Show Engine Log")'), 60_000);
    });
  }

  private onLost(reason: string): void {
    this.client = undefined;
    if (this.disposed) return;
    this.busy.clear();
    const delay = RETRY_DELAYS_MS[Math.min(this.retries, RETRY_DELAYS_MS.length - 1)]!;
    this.retries += 1;
    this.log(`lost the engine: ${reason}; reconnecting in ${delay / 1000} s`);
    this.setState({ kind: 'lost', detail: reason, retryInMs: delay });
    this.retryTimer = setTimeout(() => {
      this.ensureClient().catch((e: Error) => {
        this.log(`reconnect failed: ${e.message}`);
        if (this.retries < 8) this.onLost(e.message);
      });
    }, delay);
  }

  /** Drops the connection (and a local engine) and connects again. */
  async reconnect(): Promise<HeedClient> {
    clearTimeout(this.retryTimer);
    this.retries = 0;
    const c = this.client;
    this.client = undefined;
    c?.close();
    if (!readConfig().engineUrl && this.proc && this.proc.exitCode === null) {
      // A live local engine is kept: reconnecting does not need a new process.
      const info = this.currentUrl;
      if (info) {
        try {
          const client = new HeedClient(wsFactory);
          const tokenFile = path.join(this.context.globalStorageUri.fsPath, 'engine-token');
          const token = readFileSync(tokenFile, 'utf8').trim();
          await client.connect(info, token);
          client.onClose((reason) => {
            if (this.client === client) this.onLost(reason);
          });
          this.client = client;
          this.setState({ kind: 'connected', url: info, remote: false });
          return client;
        } catch (e) {
          this.log(`reconnect to the running engine failed (${(e as Error).message}); restarting it`);
        }
      }
    }
    return this.ensureClient();
  }

  async restart(): Promise<HeedClient> {
    this.stopLocal();
    return this.reconnect();
  }

  stop(): void {
    clearTimeout(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    c?.close();
    this.stopLocal();
    this.setState({ kind: 'stopped', detail: 'stopped by the user' });
  }

  private stopLocal(): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) p.kill('SIGTERM');
  }

  get enginePid(): number | undefined {
    return this.proc?.pid;
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    this.client?.close();
    this.stopLocal();
    this.statusItem.dispose();
    this.output.dispose();
    this.stateEmitter.dispose();
  }
}
