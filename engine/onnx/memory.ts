// Returning large typed arrays to the OS at phase boundaries.
//
// onnxruntime-node hands outputs to JavaScript as ArrayBuffers. V8 frees an ArrayBuffer's memory only when a garbage
// collection finds it unreachable, and it schedules collections by JavaScript allocation pressure; it never sees
// onnxruntime's native allocations. So after Attend-and-Excite drops ~1 GB of residual buffers (SD 1.5 at 512²), the
// next UNet call can allocate its own gigabytes while the dead buffers are still mapped, and the peaks add up.
// A full collection there costs milliseconds (the JS heap itself is small) and takes the dead buffers off the peak.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

/** Runs a full garbage collection when the runtime allows it (always in Node; a no-op elsewhere). */
export function collectGarbage(): void {
  if (gc === undefined) gc = resolveGc();
  gc?.();
}

function resolveGc(): (() => void) | null {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    // Exposing gc after startup only makes the next context get the global; the main context is left unchanged.
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    return typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    return null;
  }
}

/**
 * glibc malloc settings for a process that runs large ONNX graphs (Linux). onnxruntime (with its arena off, as Heed
 * opens sessions) allocates and frees thousands of 1–32 MB activations per UNet call; glibc serves those from its heaps
 * once its dynamic mmap threshold has grown, and fragmentation keeps the freed memory from going back to the OS, so
 * an SD 1.5 A&E generation at 512² kept ~1.4 GB it no longer used and peaked at 8.2 GB Pss instead of 7.3 GB. A fixed
 * 64 KiB mmap threshold returns every large block on free, with no measurable cost in step time (bench `--only memory`).
 * Only read at process start: `bin/heed.js` re-executes itself with these set, and the server forks its workers with them.
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: '65536',
  MALLOC_TRIM_THRESHOLD_: '0',
  MALLOC_ARENA_MAX: '1',
};

/** The environment for a child process that runs models: `env` with MALLOC_ENV added where the user set nothing. */
export function withMallocEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (process.platform !== 'linux' || env.HEED_MALLOC_TUNING === '0') return env;
  const out = { ...env };
  for (const [k, v] of Object.entries(MALLOC_ENV)) if (out[k] === undefined) out[k] = v;
  return out;
}
