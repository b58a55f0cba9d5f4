#!/usr/bin/env node
// `heed` launcher: the CLI is TypeScript compiled to dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/engine/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('heed: the CLI is not built yet; run `npm run build` in the Heed folder first\n');
  process.exit(2);
}
const { run } = await import(main.href);
const code = await run(process.argv);
process.stdout.write('', () => process.exit(code));
