// WebSocket client of the Heed engine protocol (`heed/1`, engine/protocol/index.ts). Pure: it takes a WebSocket
// factory, so the extension host passes `ws` and the tests pass the same, and nothing here imports 'vscode'.
// Every event the server sends is validated with the protocol's own zod schema before it is trusted.
import {
  PROTOCOL_VERSION,
  ServerEvent,
  decodeBinaryFrame,
  describeClose,
  type AcceptedEvent,
  type CancelResult,
  type ErrorEvent,
  type ExplainRequest,
  type ExplainResult,
  type GenerateRequest,
  type GenerateResult,
  type HelloResult,
  type ListModelsResult,
  type ProgressEvent,
  type Request,
  type ResultPayload,
  type StatusResult,
  type TokenizeResult,
} from '../../../engine/protocol/index.js';

/** The subset of the WHATWG / `ws` WebSocket API the client uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string; error?: unknown }) => void) | null;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

/** An `error` event, or a lost connection, as a thrown Error that keeps the protocol's code and field. */
export class EngineError extends Error {
  constructor(
    message: string,
    readonly code: ErrorEvent['code'] | 'connection_lost' | 'connect_failed' | 'protocol_violation',
    readonly field?: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export interface JobCallbacks {
  onAccepted?(ev: AcceptedEvent): void;
  onProgress?(ev: ProgressEvent): void;
}

export interface Job<T> {
  /** The request id (the `target` to cancel). */
  id: string;
  result: Promise<T>;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type RequestBody = DistributiveOmit<Request, 'id'>;

interface Pending {
  resolve(r: ResultPayload): void;
  reject(e: Error): void;
  callbacks: JobCallbacks;
}

/** Adds the token as a query parameter (the protocol's way for clients that cannot set headers). */
export function withToken(url: string, token: string): string {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

export class HeedClient {
  private ws: WebSocketLike | undefined;
  private readonly pending = new Map<string, Pending>();
  private nextId = 1;
  private closeListeners: ((reason: string) => void)[] = [];
  hello: HelloResult | undefined;

  constructor(private readonly factory: WebSocketFactory) {}

  get connected(): boolean {
    return this.ws !== undefined && this.ws.readyState === 1 && this.hello !== undefined;
  }

  /** Called once when an open connection closes (not when `connect` itself fails). */
  onClose(listener: (reason: string) => void): void {
    this.closeListeners.push(listener);
  }

  /** Opens the socket and performs `hello`. Rejects with a reason that names the cause (refused, bad token, …). */
  async connect(url: string, token: string, clientName = 'heed-vscode', timeoutMs = 10_000): Promise<HelloResult> {
    const ws = this.factory(withToken(url, token));
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new EngineError(`no answer from ${url} within ${timeoutMs} ms`, 'connect_failed'));
        ws.close();
      }, timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = (ev) => {
        clearTimeout(timer);
        const detail = ev.message ?? (ev.error instanceof Error ? ev.error.message : 'connection failed');
        reject(new EngineError(`cannot connect to ${url}: ${detail}`, 'connect_failed'));
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        reject(new EngineError(`cannot connect to ${url}: ${describeClose(ev.code, ev.reason)}`, 'connect_failed'));
      };
    });
    ws.onmessage = (ev) => this.handleMessage(ev.data);
    ws.onerror = () => undefined; // the close event that follows carries the reason
    ws.onclose = (ev) => this.handleClose(describeClose(ev.code, ev.reason));
    const hello = await this.send({ type: 'hello', protocols: [PROTOCOL_VERSION], client: clientName });
    if (hello.kind !== 'hello') throw new EngineError(`hello answered with a ${hello.kind} result`, 'protocol_violation');
    this.hello = hello;
    return hello;
  }

  close(): void {
    this.ws?.close(1000, 'client closing');
  }

  /** Sends one request and resolves with its `result` payload (rejects with EngineError on `error`). */
  send(body: RequestBody, callbacks: JobCallbacks = {}, id = `r${this.nextId++}`): Promise<ResultPayload> {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new EngineError('not connected to the engine', 'connection_lost'));
    return new Promise<ResultPayload>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, callbacks });
      ws.send(JSON.stringify({ ...body, id }));
    });
  }

  private start<K extends ResultPayload['kind']>(body: RequestBody, kind: K, callbacks: JobCallbacks = {}): Job<Extract<ResultPayload, { kind: K }>> {
    const id = `r${this.nextId++}`;
    const result = this.send(body, callbacks, id).then((r) => {
      if (r.kind !== kind) throw new EngineError(`expected a ${kind} result, got ${r.kind}`, 'protocol_violation');
      return r as Extract<ResultPayload, { kind: K }>;
    });
    return { id, result };
  }

  tokenize(model: string, text: string): Promise<TokenizeResult> {
    return this.start({ type: 'tokenize', model, text }, 'tokenize').result;
  }

  generate(req: Omit<GenerateRequest, 'id' | 'type'>, callbacks: JobCallbacks = {}): Job<GenerateResult> {
    return this.start({ type: 'generate', ...req }, 'generate', callbacks);
  }

  explain(req: Omit<ExplainRequest, 'id' | 'type'>, callbacks: JobCallbacks = {}): Job<ExplainResult> {
    return this.start({ type: 'explain', ...req }, 'explain', callbacks);
  }

  cancel(target: string): Promise<CancelResult> {
    return this.start({ type: 'cancel', target }, 'cancel').result;
  }

  status(): Promise<StatusResult> {
    return this.start({ type: 'status' }, 'status').result;
  }

  listModels(): Promise<ListModelsResult> {
    return this.start({ type: 'listModels' }, 'listModels').result;
  }

  /** The bytes of a file the engine wrote (for clients on another machine than the engine). */
  async fetchFile(path: string, timeoutMs = 30_000): Promise<Uint8Array> {
    const id = `r${this.nextId++}`;
    // The binary frame and the `result` may come in either order: wait for both.
    const frame = new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.binaryWaiters.delete(id);
        reject(new EngineError(`fetch of ${path}: no binary frame within ${timeoutMs} ms`, 'protocol_violation'));
      }, timeoutMs);
      this.binaryWaiters.set(id, (bytes) => {
        clearTimeout(timer);
        resolve(bytes);
      });
    });
    try {
      await this.send({ type: 'fetch', path }, {}, id);
    } catch (e) {
      this.binaryWaiters.get(id)?.(new Uint8Array(0));
      this.binaryWaiters.delete(id);
      throw e;
    }
    return frame;
  }

  private readonly binaryWaiters = new Map<string, (bytes: Uint8Array) => void>();

  private handleMessage(data: unknown): void {
    if (typeof data !== 'string') {
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : undefined;
      if (!bytes) return;
      try {
        const { header, payload } = decodeBinaryFrame(bytes);
        this.binaryWaiters.get(header.id)?.(payload.slice());
        this.binaryWaiters.delete(header.id);
      } catch {
        // A malformed binary frame cannot be matched to a request; the fetch then fails for want of it.
      }
      return;
    }
    let parsed: ServerEvent;
    try {
      const r = ServerEvent.safeParse(JSON.parse(data));
      if (!r.success) return;
      parsed = r.data;
    } catch {
      return;
    }
    const id = parsed.id;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) return;
    switch (parsed.type) {
      case 'accepted':
        p.callbacks.onAccepted?.(parsed);
        return;
      case 'progress':
        p.callbacks.onProgress?.(parsed);
        return;
      case 'result':
        this.pending.delete(parsed.id);
        p.resolve(parsed.result);
        return;
      case 'error':
        this.pending.delete(parsed.id!);
        p.reject(new EngineError(parsed.message, parsed.code, parsed.field));
        return;
    }
  }

  private handleClose(reason: string): void {
    const wasHello = this.hello !== undefined;
    this.hello = undefined;
    this.ws = undefined;
    for (const [, p] of this.pending) p.reject(new EngineError(`lost the engine: ${reason}`, 'connection_lost'));
    this.pending.clear();
    if (wasHello) for (const l of this.closeListeners) l(reason);
  }
}
