// The jobs folder's disk use (issue 16, item 11): every job writes <out>/jobs/<jobId>/, and without a bound one
// client could fill the disk. Two mechanisms:
//
// * a quota (`--max-out-mb`): while the jobs folder holds more, new jobs are refused with `quota_exceeded` (nothing
//   is deleted behind the user's back to make room);
// * a retention policy (`--keep-jobs N` and/or `--keep-jobs AGE`): finished job folders beyond the N newest, or
//   older than AGE (by the folder's last change), are removed at start, after every job and every few minutes.
//
// Folders of queued or running jobs are never touched. The byte count is kept per job folder and refreshed when a
// job ends, so the quota is checked without walking the disk on every request.
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ProtocolError } from './errors.js';
import { folderBytes } from './paths.js';

export interface RetentionPolicy {
  /** Keep at most this many finished job folders (the newest). */
  count?: number;
  /** Remove finished job folders whose last change is older than this. */
  ageMs?: number;
}

const AGE_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses one `--keep-jobs` value: a count (`100`) or an age (`30m`, `12h`, `7d`). Throws with the accepted forms. */
export function parseKeepJobs(value: string, into: RetentionPolicy = {}): RetentionPolicy {
  const v = value.trim();
  const age = /^(\d+)([mhd])$/.exec(v);
  if (age) return { ...into, ageMs: Number(age[1]) * AGE_UNITS[age[2]!]! };
  if (/^\d+$/.test(v) && Number(v) >= 1) return { ...into, count: Number(v) };
  throw new Error(`--keep-jobs takes a count of job folders (e.g. 200) or an age (e.g. 30m, 12h, 7d), got '${value}'`);
}

export function describeRetention(p: RetentionPolicy): string {
  const parts = [];
  if (p.count !== undefined) parts.push(`the newest ${p.count}`);
  if (p.ageMs !== undefined) parts.push(`those changed in the last ${Math.round(p.ageMs / 60_000)} min`);
  return parts.length ? `keeps ${parts.join(' and ')}` : 'keeps every job folder';
}

export class JobFolders {
  private readonly bytes = new Map<string, number>();
  private sweeping?: Promise<void>;
  private again?: Promise<void>;
  private timer?: NodeJS.Timeout;

  constructor(
    readonly dir: string,
    private readonly policy: RetentionPolicy,
    readonly maxBytes: number,
    /** Job folders in use (queued or running): never removed. */
    private readonly inUse: (name: string) => boolean,
    private readonly log: (message: string) => void,
  ) {}

  get usedBytes(): number {
    let total = 0;
    for (const b of this.bytes.values()) total += b;
    return total;
  }

  /** Counts what is there, applies the policy, and re-applies it every 10 minutes (ages advance without jobs). */
  async start(): Promise<void> {
    for (const name of await this.names()) this.bytes.set(name, await folderBytes(join(this.dir, name)));
    await this.sweep();
    if (this.policy.ageMs !== undefined) {
      this.timer = setInterval(() => void this.sweep(), Math.min(600_000, Math.max(10_000, this.policy.ageMs / 10)));
      this.timer.unref();
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Throws quota_exceeded when `incoming` more bytes would take the jobs folder over the quota. */
  checkRoom(incoming = 0): void {
    const used = this.usedBytes;
    if (used + incoming <= this.maxBytes) return;
    const mib = (n: number): string => `${Math.ceil(n / 1024 / 1024)} MiB`;
    throw new ProtocolError(
      'quota_exceeded',
      `the server's jobs folder ${this.dir} holds ${mib(used)}${incoming ? ` (+${mib(incoming)} uploaded)` : ''}, over its limit of ${mib(this.maxBytes)}; ` +
        `delete old job folders, restart the server with --keep-jobs N|AGE to prune them, or raise --max-out-mb`,
    );
  }

  /** Records bytes written into a job folder before the job ends (an upload). */
  add(name: string, bytes: number): void {
    this.bytes.set(name, (this.bytes.get(name) ?? 0) + bytes);
  }

  /** A job folder removed before its job was queued. */
  forget(name: string): void {
    this.bytes.delete(name);
  }

  /** A job ended: count its folder as it is now and apply the policy. */
  async ended(name: string): Promise<void> {
    this.bytes.set(name, await folderBytes(join(this.dir, name)));
    await this.sweep();
  }

  private async names(): Promise<string[]> {
    try {
      return (await readdir(this.dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return [];
    }
  }

  /**
   * Applies the retention policy. A call while a pass runs gets one more pass after it (shared by every such call):
   * the running pass listed the folders before this call's job ended, so it may keep a folder the policy now removes.
   */
  sweep(): Promise<void> {
    if (this.policy.count === undefined && this.policy.ageMs === undefined) return Promise.resolve();
    if (this.sweeping) {
      this.again ??= this.sweeping.then(() => {
        this.again = undefined;
        return this.sweep();
      });
      return this.again;
    }
    this.sweeping = this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    const folders: Array<{ name: string; changed: number }> = [];
    for (const name of await this.names()) {
      if (this.inUse(name)) continue;
      try {
        folders.push({ name, changed: (await stat(join(this.dir, name))).mtimeMs });
      } catch {
        /* removed meanwhile */
      }
    }
    folders.sort((a, b) => b.changed - a.changed || b.name.localeCompare(a.name));
    const now = Date.now();
    const doomed = folders.filter(
      (f, i) => (this.policy.count !== undefined && i >= this.policy.count) || (this.policy.ageMs !== undefined && now - f.changed > this.policy.ageMs),
    );
    for (const f of doomed) {
      try {
        await rm(join(this.dir, f.name), { recursive: true, force: true });
        this.bytes.delete(f.name);
      } catch (e) {
        this.log(`retention: could not remove job folder ${f.name}: ${(e as Error).message}`);
      }
    }
    if (doomed.length) this.log(`retention: removed ${doomed.length} job folder${doomed.length > 1 ? 's' : ''} (${describeRetention(this.policy)})`);
  }
}
