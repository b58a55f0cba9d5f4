// `heed eval` on an SDXL folder, unchanged: the tiny SDXL export of test/fixtures/sdxl with the reference CLIP runs a
// plain and an Attend-and-Excite sample whose subjects, maps and CLIP scores are all recorded, and the report counts
// them. (The tiny models have random weights: this checks the plumbing on SDXL, not what the numbers mean.)
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { heed } from './cli-helpers.js';
import { requireReference, referencePath } from './helpers/reference.js';
import type { SampleRecord } from '../engine/jobs/eval/samples.js';
import type { EvalReport } from '../engine/jobs/eval/report.js';

const SDXL = resolve(fileURLToPath(new URL('../../test/fixtures/sdxl/tiny/', import.meta.url)));

describe('heed eval on an SDXL folder', function () {
  it('runs plain and A&E samples on the tiny SDXL export and reports them', async function () {
    this.timeout(300_000);
    const ref = requireReference(this);
    const tmp = mkdtempSync(join(tmpdir(), 'heed-sdxl-eval-'));
    try {
      writeFileSync(join(tmp, 'prompts.txt'), 'a cat and a frog\n');
      const out = join(tmp, 'out');
      const r = await heed(['eval', '--sd', SDXL, '--clip', referencePath(ref, 'clip-tiny'), '--prompts', join(tmp, 'prompts.txt'),
        '--seeds', '0', '--steps', '2', '--size', '128x128', '--out', out, '--quiet']);
      assert.equal(r.code, 0, r.stderr);
      const records = readFileSync(join(out, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SampleRecord);
      assert.equal(records.length, 1);
      const [rec] = records;
      assert.equal(rec!.by, 'clip');
      for (const run of [rec!.plain, rec!.excite!]) {
        assert.deepEqual(run.subjects.map((s) => s.word), ['cat', 'frog']);
        for (const s of run.subjects) assert.ok(Number.isFinite(s.clip) && s.area >= 0 && s.area <= 1, JSON.stringify(s));
      }
      for (const s of rec!.plain.subjects) assert.ok(s.maxAttention! > 0, `the plain run's DAAM map of ${s.word}`);
      const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as EvalReport;
      assert.equal(report.pairs.plain.images, 1);
      assert.equal(report.pairs.excite!.images, 1);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
