// Reading files for clients without trusting paths or clients (issue 16, items 3 and 8).
//
// * `openConfined` opens first and checks afterwards, on the descriptor: the path policy's realpath check alone left a
//   window in which a local writer could swap a folder for a symlink between the check and the read. The opened
//   file's real path (from /proc/self/fd, or realpath + same inode elsewhere) must lie inside an allowed root, and it
//   must be a regular file (a FIFO or device would hang or never end).
// * `Outbox` is a connection's single way out. A fetched file goes as ONE binary message (the protocol's frame)
//   sent in fragments read from the descriptor as the socket drains, so a client that stops reading makes the server
//   hold at most about one chunk beyond the high-water mark, not whole files. While a fragmented message is on the
//   wire nothing else may be sent (WebSocket data frames cannot interleave), so text events queue behind it in order.
import { constants } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { ProtocolError } from './errors.js';
import { isInside } from './paths.js';

/** Bytes read from a file per fragment. */
export const FETCH_CHUNK_BYTES = 256 * 1024;

export interface OpenedFile {
  handle: FileHandle;
  /** The real path of what was opened. */
  path: string;
  size: number;
}

/** Where the descriptor really points, read from the kernel when it can tell. */
async function descriptorPath(handle: FileHandle, openedAs: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    // No procfs (macOS): the path's real path now, accepted only if it is the very file we hold.
    const real = await realpath(openedAs);
    const [a, b] = await Promise.all([handle.stat(), stat(real)]);
    if (a.dev !== b.dev || a.ino !== b.ino) throw new Error('the file changed while it was opened');
    return real;
  }
}

/**
 * Opens `path` for reading if, once open, it is a regular file whose real path lies inside one of `roots`
 * (empty = any). `field` names the request field in errors. The caller closes the handle.
 */
export async function openConfined(path: string, roots: readonly string[], field: string, shownAs = path): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the last component may not be a symlink
    // (the path comes from realpath, so one there now was planted since).
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new ProtocolError('file_not_allowed', `${shownAs} changed into a symlink while it was opened; ask again`, field);
    throw new ProtocolError('file_not_found', `${shownAs} cannot be opened (${code ?? (e as Error).message})`, field);
  }
  try {
    let real: string;
    try {
      real = await descriptorPath(handle, path);
    } catch (e) {
      throw new ProtocolError('file_not_allowed', `${shownAs} changed while it was opened (${(e as Error).message}); ask again`, field);
    }
    if (roots.length > 0 && !roots.some((r) => isInside(r, real))) {
      throw new ProtocolError('file_not_allowed', `${shownAs} resolves outside the folders this server may read from`, field);
    }
    const st = await handle.stat();
    if (!st.isFile()) throw new ProtocolError('file_not_found', `${shownAs} is not a regular file`, field);
    return { handle, path: real, size: st.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

type Item = { kind: 'text'; data: string } | { kind: 'stream'; run: () => Promise<void>; settle: (error?: unknown) => void };

/** A connection's outgoing messages, in order, with file streams that respect the socket's backpressure. */
export class Outbox {
  private readonly queue: Item[] = [];
  private busy = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly highWaterBytes: number,
  ) {}

  private get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  text(data: string): void {
    if (this.busy || this.queue.length > 0) this.queue.push({ kind: 'text', data });
    else if (this.open) this.ws.send(data);
  }

  /**
   * Sends `prefix` followed by `size` bytes of `file` as one binary message, after everything queued before it.
   * Resolves once it is sent, or abandoned because the connection closed; the caller then closes the file.
   */
  file(prefix: Uint8Array, file: FileHandle, size: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ kind: 'stream', run: () => this.stream(prefix, file, size), settle: (e) => (e === undefined ? resolve() : reject(e)) });
      if (!this.busy) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      for (let item = this.queue.shift(); item; item = this.queue.shift()) {
        if (item.kind === 'text') {
          if (this.open) this.ws.send(item.data);
          continue;
        }
        // A failed stream (an unreadable file) is its caller's to report; the messages queued after it still go.
        try {
          await item.run();
          item.settle();
        } catch (e) {
          item.settle(e ?? new Error('stream failed'));
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** Waits until the socket holds at most the high-water mark (or the connection is gone). */
  private async drained(): Promise<void> {
    while (this.open && this.ws.bufferedAmount > this.highWaterBytes) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.socket.off('drain', done);
          this.ws.off('close', done);
          resolve();
        };
        // `drain` is the signal; the timer re-checks in case the bytes waited in ws's own queue, not the socket's.
        const timer = setTimeout(done, 50);
        this.socket.once('drain', done);
        this.ws.once('close', done);
      });
    }
  }

  private async stream(prefix: Uint8Array, file: FileHandle, size: number): Promise<void> {
    let sent = 0;
    let first = true;
    for (;;) {
      await this.drained();
      if (!this.open) return;
      const want = Math.min(FETCH_CHUNK_BYTES, size - sent);
      const chunk = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await file.read(chunk, got, want - got, sent + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got < want) {
        // The file shrank under us: the announced length cannot be honoured, and a fragmented message cannot be
        // taken back, so the connection ends with the reason (1011: the server could not complete the request).
        this.ws.close(1011, 'a fetched file shrank while it was being sent; fetch it again');
        return;
      }
      sent += got;
      const last = sent >= size;
      const data = first ? Buffer.concat([prefix, chunk]) : chunk;
      first = false;
      // The callback fires once ws has handed the bytes to the socket: one chunk in flight per stream at a time.
      await new Promise<void>((resolve) => this.ws.send(data, { binary: true, fin: last }, () => resolve()));
      if (last) return;
    }
  }
}
