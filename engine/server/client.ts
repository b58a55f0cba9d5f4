// A small Node client for heed/1 (tests, benchmarks, scripts). It validates every event it receives with the same
// schemas the server uses, and collects each request's events until its terminal `result` or `error`.
import WebSocket from 'ws';
import {
  PROTOCOL_VERSION,
  ServerEvent,
  decodeBinaryFrame,
  describeClose,
  type BinaryHeader,
  type ErrorEvent,
  type ResultEvent,
} from '../protocol/index.js';

/** Any request without its id (the client assigns ids). Loosely typed on purpose: tests send invalid ones too. */
export type Outgoing = { type: string; [k: string]: unknown };

export interface Exchange {
  /** Every event of the request, in order, the terminal one last. */
  events: ServerEvent[];
  terminal: ResultEvent | ErrorEvent;
  /** The binary frame of a fetch. */
  binary?: { header: BinaryHeader; payload: Uint8Array };
}

interface Pending {
  events: ServerEvent[];
  resolve: (x: Exchange) => void;
  reject: (e: Error) => void;
  onEvent?: (e: ServerEvent) => void;
  binaryExpected: boolean;
  terminal?: ResultEvent | ErrorEvent;
}

export interface ConnectOptions {
  token?: string;
  /** Send the token as ?token= instead of the Authorization header. */
  tokenInQuery?: boolean;
  /** Skip the hello exchange. */
  noHello?: boolean;
  maxPayload?: number;
}

export class HeedClient {
  private nextId = 0;
  private readonly pending = new Map<string, Pending>();
  /** Events that belong to no pending request (e.g. errors without id). */
  readonly stray: ServerEvent[] = [];
  /** Every event received, in order (tests check nothing foreign arrives). */
  readonly all: ServerEvent[] = [];
  closeInfo?: { code: number; reason: string };
  private closed: Promise<{ code: number; reason: string }>;
  private strayWaiters: Array<(e: ServerEvent) => void> = [];

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((res) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const p of this.pending.values()) p.reject(new Error(describeClose(code, reason.toString())));
        this.pending.clear();
        res(this.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('error', () => undefined); // surfaced through close
  }

  static async connect(url: string, options: ConnectOptions = {}): Promise<HeedClient> {
    const target = options.token && options.tokenInQuery ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(options.token)}` : url;
    const ws = new WebSocket(target, {
      headers: options.token && !options.tokenInQuery ? { authorization: `Bearer ${options.token}` } : {},
      maxPayload: options.maxPayload ?? 256 * 1024 * 1024,
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body.trim()}`), { status: res.statusCode, body: body.trim() })));
      });
      ws.once('error', reject);
    });
    const client = new HeedClient(ws);
    if (!options.noHello) {
      const hello = await client.request({ type: 'hello', protocols: [PROTOCOL_VERSION], client: 'heed-node-client' });
      if (hello.terminal.type === 'error') throw new Error(`hello refused: ${hello.terminal.message}`);
    }
    return client;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      const frame = decodeBinaryFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      const p = this.pending.get(frame.header.id);
      if (p && p.terminal) {
        this.pending.delete(frame.header.id);
        p.resolve({ events: p.events, terminal: p.terminal, binary: frame });
      }
      return;
    }
    const event = ServerEvent.parse(JSON.parse(data.toString('utf8')));
    this.all.push(event);
    const p = event.id !== undefined ? this.pending.get(event.id) : undefined;
    if (!p) {
      this.stray.push(event);
      for (const w of this.strayWaiters.splice(0)) w(event);
      return;
    }
    p.events.push(event);
    p.onEvent?.(event);
    if (event.type === 'result' || event.type === 'error') {
      p.terminal = event;
      if (event.type === 'result' && event.result.kind === 'fetch' && p.binaryExpected) return; // wait for the frame
      this.pending.delete(event.id!);
      p.resolve({ events: p.events, terminal: event });
    }
  }

  /** Sends a request (id assigned unless given) and resolves with all its events once it ends. */
  request(msg: Outgoing, onEvent?: (e: ServerEvent) => void): Promise<Exchange> & { id: string } {
    const id = typeof msg.id === 'string' ? msg.id : `r${++this.nextId}`;
    let p!: Pending;
    const promise = new Promise<Exchange>((resolve, reject) => {
      p = { events: [], resolve, reject, onEvent, binaryExpected: msg.type === 'fetch' };
    });
    this.pending.set(id, p);
    this.ws.send(JSON.stringify({ ...msg, id }));
    return Object.assign(promise, { id });
  }

  /** Sends raw text or bytes (tests of malformed input). */
  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Next event that belongs to no request. */
  nextStray(timeoutMs = 10_000): Promise<ServerEvent> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no stray event arrived')), timeoutMs);
      this.strayWaiters.push((e) => {
        clearTimeout(t);
        resolve(e);
      });
    });
  }

  whenClosed(): Promise<{ code: number; reason: string }> {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}
