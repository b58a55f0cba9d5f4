// Step progress on stderr (stdout stays clean for --json and for piping). cli-progress draws only on a TTY; in a
// pipe or CI log it stays silent rather than flooding the log with carriage returns.
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
}

/** A progress bar over steps with ETA, or a no-op when disabled (--quiet / --json). */
export function stepProgress(o: ProgressOptions): StepProgress {
  if (!o.enabled) return { update: () => {}, stop: () => {} };
  const stream = o.stream ?? process.stderr;
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
