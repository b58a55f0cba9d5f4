// The jobs folder's retention policy (engine/server/retention.ts) when jobs end while a pass is running: the pass in
// flight listed the folders before the later job ended, so a second pass must follow it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobFolders } from '../engine/server/retention.js';

describe('server: job folder retention', function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'heed-retention-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a job that ends during a pass gets a pass of its own (keep the newest 1)', async function () {
    const now = Date.now() / 1000;
    ['a', 'b', 'c'].forEach((name, i) => {
      mkdirSync(join(dir, name));
      utimesSync(join(dir, name), now - 100 + i, now - 100 + i); // a oldest, c newest
    });
    let second: Promise<void> | undefined;
    // The first pass sees c running (so it keeps b and removes a); right after that check, c ends and its end asks
    // for a pass while the first one is still in flight.
    const folders: JobFolders = new JobFolders(dir, { count: 1 }, Infinity, (name) => {
      if (name !== 'c' || second) return false;
      second = folders.sweep();
      return true;
    }, () => {});
    await folders.sweep();
    assert.ok(second, 'c was checked');
    await second;
    assert.deepEqual(readdirSync(dir), ['c']);
  });
});
