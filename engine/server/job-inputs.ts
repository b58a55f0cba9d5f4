// Files a job reads that a client named (`latents`, `image.path`), made safe to hand to a worker (issue 16, item 4).
// A FIFO hangs the job where cancel cannot reach it, /dev/zero grows the worker without end, and a path checked by
// name can be swapped before the worker opens it. So the server opens the file itself, checks the DESCRIPTOR (a
// regular file, inside the allowed folders, of a plausible size) and copies those bytes into the job folder; the
// worker reads only that copy. The copy is removed when the job ends (request.json keeps the path the client gave).
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { ProtocolError } from './errors.js';
import { openConfined } from './fetch.js';

/** Largest latents or image file a job may name (a 4096² SD latent is 4 MiB; a large PNG some tens of MiB). */
export const MAX_INPUT_BYTES = 64 * 1024 * 1024;

const COPY_CHUNK_BYTES = 1024 * 1024;

/**
 * Copies the client-named file `path` (already resolved by the path policy) to `dest` (a new file) if it is a regular
 * file inside `roots` (empty = anywhere) of at most `maxBytes`. Returns the bytes copied.
 */
export async function copyVerifiedInput(path: string, roots: readonly string[], field: string, shownAs: string, dest: string, maxBytes = MAX_INPUT_BYTES): Promise<number> {
  const file = await openConfined(path, roots, field, shownAs);
  try {
    if (file.size > maxBytes) {
      throw new ProtocolError('file_too_large', `${shownAs} has ${file.size} bytes; a ${field} file may have at most ${maxBytes}`, field);
    }
    const out = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      // Chunked, bounded by the size seen on the descriptor (a file that grows meanwhile is cut there).
      const chunk = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(1, file.size)));
      for (let pos = 0; pos < file.size; ) {
        const { bytesRead } = await file.handle.read(chunk, 0, Math.min(chunk.length, file.size - pos), pos);
        if (bytesRead === 0) throw new ProtocolError('file_not_found', `${shownAs} shrank while it was read; try again`, field);
        await out.write(chunk, 0, bytesRead, pos);
        pos += bytesRead;
      }
    } finally {
      await out.close();
    }
    return file.size;
  } finally {
    await file.handle.close();
  }
}
