// `npm run package`: builds the extension with the engine bundled for THIS machine's platform and packs a
// platform-specific .vsix (vsce --target) into the repository root as heed-<platform>-<arch>.vsix.
// The engine's native parts (onnxruntime-node, sharp) are the ones npm installed here, hence "this machine's platform":
// build each platform's package on that platform (or a CI matrix). `--target <platform-arch>` overrides the name only
// when the matching binaries are installed.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const target = args.includes('--target') ? args[args.indexOf('--target') + 1] : `${process.platform}-${process.arch}`;
const run = (cmd, argv) => {
  const r = spawnSync(cmd, argv, { cwd: here, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
run(process.execPath, [join(here, 'build.mjs'), '--engine', '--target', target]);
run(process.execPath, [join(here, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package', '--no-dependencies', '--target', target, '-o', join(here, '..', `heed-${target}.vsix`)]);
