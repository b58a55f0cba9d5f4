// A test-only runner module that fails to load a chosen number of times, then behaves like server-fake-runner.ts.
// Its URL carries the settings: `?counter=<file>&failures=<n>`. Each worker start appends one byte to the counter
// file; while the count is at most `failures` the import throws, so that worker dies before it is ready (what a
// worker killed during start-up looks like to the pool).
import { appendFileSync, statSync } from 'node:fs';

const params = new URL(import.meta.url).searchParams;
const counter = params.get('counter');
const failures = Number(params.get('failures') ?? '0');
if (counter) {
  appendFileSync(counter, 'x');
  const starts = statSync(counter).size;
  if (starts <= failures) throw new Error(`flaky runner: start ${starts} of ${failures} planned failures`);
}

export { createRunner } from './server-fake-runner.js';
