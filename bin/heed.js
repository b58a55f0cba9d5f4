#!/usr/bin/env node
// `heed` launcher: the CLI is TypeScript compiled to dist/ by `npm run build`.
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/engine/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('heed: the CLI is not built yet; run `npm run build` in the Heed folder first\n');
  process.exit(2);
}

// glibc reads its malloc settings only at process start, so on Linux the launcher runs the CLI in a child with them
// set (engine/onnx/memory.ts MALLOC_ENV: large ONNX activations go back to the OS when freed; an SD 1.5 A&E generation
// peaks ~1 GB lower). HEED_MALLOC_TUNING=0 runs the CLI in this process as it is.
const { withMallocEnv } = await import(new URL('../dist/engine/onnx/memory.js', import.meta.url).href);
const env = withMallocEnv(process.env);
if (env !== process.env && process.env.HEED_MALLOC_CHILD !== '1') {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit', env: { ...env, HEED_MALLOC_CHILD: '1' },
  });
  // A terminal's Ctrl-C reaches the whole foreground process group, child included: forwarding it too would be a
  // second Ctrl-C (quit at once instead of stopping after the step). A program that signals this process alone is
  // forwarded the signal.
  const fromTerminal = process.stdin.isTTY === true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      if (!(signal === 'SIGINT' && fromTerminal)) child.kill(signal);
    });
  }
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
} else {
  const { run } = await import(main.href);
  const code = await run(process.argv);
  process.stdout.write('', () => process.exit(code));
}
