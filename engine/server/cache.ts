// Per-worker model cache, least-recently-used by memory: loaded models (ORT sessions) are what makes the second
// generation on a model fast, and also what fills RAM. Each entry declares its size (the weights' bytes, a good proxy
// for what ORT holds); loading past the budget evicts the least recently used entries first and disposes them
// (session.release()) so their memory is actually returned.

export interface CacheEntry<T> {
  value: T;
  bytes: number;
  dispose?: () => void | Promise<void>;
}

interface Slot {
  entry: Promise<CacheEntry<unknown>>;
  bytes: number;
  lastUsed: number;
  users: number;
}

export class ModelCache {
  private readonly slots = new Map<string, Slot>();
  private clock = 0;

  constructor(readonly budgetBytes: number) {}

  /** Returns the cached value for `key`, loading it (and evicting others to fit) when absent. */
  async get<T>(key: string, load: () => Promise<CacheEntry<T>>): Promise<T> {
    let slot = this.slots.get(key);
    if (!slot) {
      const entry = load();
      slot = { entry, bytes: 0, lastUsed: ++this.clock, users: 0 };
      this.slots.set(key, slot);
      try {
        const e = await entry;
        slot.bytes = e.bytes;
      } catch (err) {
        this.slots.delete(key);
        throw err;
      }
      await this.evict(key);
    }
    slot.lastUsed = ++this.clock;
    return (await slot.entry).value as T;
  }

  /** Marks an entry in use so that eviction skips it (a job holds its model for its whole run). */
  async use<T>(key: string, load: () => Promise<CacheEntry<T>>, fn: (value: T) => Promise<unknown>): Promise<void> {
    const value = await this.get(key, load);
    const slot = this.slots.get(key);
    if (slot) slot.users++;
    try {
      await fn(value);
    } finally {
      if (slot) slot.users--;
    }
  }

  get totalBytes(): number {
    let t = 0;
    for (const s of this.slots.values()) t += s.bytes;
    return t;
  }

  keys(): string[] {
    return [...this.slots.keys()];
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** Evicts LRU entries (never `keep`, never one in use) until the total fits the budget. */
  private async evict(keep: string): Promise<void> {
    while (this.totalBytes > this.budgetBytes) {
      let victim: [string, Slot] | undefined;
      for (const kv of this.slots) {
        if (kv[0] === keep || kv[1].users > 0) continue;
        if (!victim || kv[1].lastUsed < victim[1].lastUsed) victim = kv;
      }
      if (!victim) return; // everything left is needed: exceed the budget rather than fail the job
      await this.delete(victim[0]);
    }
  }

  async delete(key: string): Promise<void> {
    const slot = this.slots.get(key);
    if (!slot) return;
    this.slots.delete(key);
    const e = await slot.entry;
    await e.dispose?.();
  }

  async clear(): Promise<void> {
    for (const k of [...this.slots.keys()]) await this.delete(k);
  }
}
