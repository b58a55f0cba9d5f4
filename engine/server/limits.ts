// The server's defensive limits (issue 16): what one client may hold of the server's connections, memory, time and
// disk. Defaults live here so the server, the CLI's help and the README quote one set of numbers.

export const DEFAULT_LIMITS = {
  /** WebSocket connections at once; more are refused with HTTP 503 (TCP sockets are capped at twice this). */
  maxConnections: 64,
  /** Time a new socket has to complete an authenticated WebSocket upgrade before it is closed. */
  authDeadlineMs: 10_000,
  /** Deepest nesting of arrays/objects in a client message, checked on the raw text before JSON.parse. */
  maxJsonDepth: 64,
  /** Fetches one connection may have opened and not yet completely sent. */
  maxFetchesInFlight: 4,
  /** A fetch reads no more of its file while the socket holds more than this many unsent bytes. */
  fetchHighWaterBytes: 1024 * 1024,
  /** Bytes the jobs folder may hold before new jobs are refused (quota_exceeded). */
  maxOutBytes: 20 * 1024 ** 3,
} as const;

/**
 * The nesting depth of a JSON text if it exceeds `limit`, else undefined. One linear pass, skipping string contents
 * (brackets in a prompt do not count), so a hostile message is refused before JSON.parse spends the main thread on
 * it. Strings are skipped with indexOf, far faster than a character loop (a 16 MB prompt costs milliseconds); the
 * pass over structure costs about a third of JSON.parse of the same text. Invalid JSON passes through: JSON.parse
 * reports it.
 */
export function nestingDepthOver(text: string, limit: number): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // The closing quote is the next one preceded by an even number of backslashes.
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return undefined;
        let backslashes = 0;
        while (text.charCodeAt(i - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}

/**
 * A log that writes at most `burst` lines per window for one kind of event and then counts the rest, reporting the
 * count when the window ends: refused connections must leave a trace without letting a client flood the log.
 */
export class RateLimitedLog {
  private windowStart = 0;
  private written = 0;
  private suppressed = 0;
  private flushTimer?: NodeJS.Timeout;

  constructor(
    private readonly log: (message: string) => void,
    private readonly what: string,
    private readonly burst = 5,
    private readonly windowMs = 60_000,
  ) {}

  write(message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      this.flush();
      this.windowStart = now;
      this.written = 0;
    }
    if (this.written < this.burst) {
      this.written++;
      this.log(message);
      return;
    }
    this.suppressed++;
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), this.windowStart + this.windowMs - now);
      this.flushTimer.unref();
    }
  }

  /** Reports the events not written one by one (also called on shutdown). */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.suppressed > 0) this.log(`${this.suppressed} more ${this.what} in the last ${Math.round(this.windowMs / 1000)} s (not logged one by one)`);
    this.suppressed = 0;
  }
}
