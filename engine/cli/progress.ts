// Step progress on stderr (stdout stays clean for --json and for piping). On a terminal: a cli-progress bar with ETA.
// Elsewhere (a pipe, a CI log) a bar would be a stream of carriage returns, so we print a plain line instead, at most
// every few seconds, plus the last step.
import cliProgress from 'cli-progress';

export interface StepProgress {
  /** Called after each step with 1-based progress. */
  update(done: number, total: number, detail?: string): void;
  stop(): void;
}

export interface ProgressOptions {
  enabled: boolean;
  label: string;
  stream?: NodeJS.WriteStream;
  /** Minimum time between plain lines when the stream is not a terminal (default 5 s). */
  lineIntervalMs?: number;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}

/** A progress display over steps with ETA, or a no-op when disabled (--quiet / --json). */
export function stepProgress(o: ProgressOptions): StepProgress {
  if (!o.enabled) return { update: () => {}, stop: () => {} };
  const stream = o.stream ?? process.stderr;
  if (!stream.isTTY) return plainLines(stream, o.label.trim(), o.lineIntervalMs ?? 5000);
  let bar: cliProgress.SingleBar | null = null;
  return {
    update(done, total, detail = '') {
      if (!bar) {
        bar = new cliProgress.SingleBar({
          stream,
          format: `${o.label} {bar} {value}/{total} | {detail} | elapsed {duration_formatted} | ETA {eta_formatted}`,
          barCompleteChar: '█',
          barIncompleteChar: '░',
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 5,
        }, cliProgress.Presets.shades_classic);
        bar.start(total, 0, { detail });
      }
      bar.setTotal(total);
      bar.update(done, { detail });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

function plainLines(stream: NodeJS.WritableStream, label: string, intervalMs: number): StepProgress {
  const start = Date.now();
  let last = -Infinity;
  return {
    update(done, total, detail = '') {
      const now = Date.now();
      if (done < total && now - last < intervalMs) return;
      last = now;
      const elapsed = (now - start) / 1000;
      const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
      stream.write(`${label}: step ${done}/${total}${detail ? ` (${detail})` : ''}, elapsed ${formatSeconds(elapsed)}, ETA ${formatSeconds(eta)}\n`);
    },
    stop() {},
  };
}
