// Builds the extension: esbuild bundles src/extension.ts (with the protocol, zod and ws) into out/extension.cjs and
// copies the webview files from ../media. With --engine it also lays the engine out under engine/ for a
// platform-specific .vsix: the compiled engine (../dist), a {"type":"module"} package.json, and the engine's
// production dependencies with native binaries pruned to the target platform (onnxruntime-node ships all platforms).
//
//   node build.mjs                 # extension bundle + media
//   node build.mjs --engine        # … + bundled engine for linux-x64 (or --target <platform-arch>)
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const args = process.argv.slice(2);
const withEngine = args.includes('--engine');
const target = args.includes('--target') ? args[args.indexOf('--target') + 1] : 'linux-x64';
const [platform, arch] = target.split('-');

await build({
  entryPoints: [join(here, 'src', 'extension.ts')],
  outfile: join(here, 'out', 'extension.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // ws probes these optional native speed-ups with require() inside try/catch; they are not needed.
  external: ['vscode', 'bufferutil', 'utf-8-validate'],
  // zod probes `navigator` (Cloudflare detection); in VS Code's extension host that global is a deprecation trap that
  // logs a PendingMigrationError. The extension host is never a browser, so the probe can be answered at build time.
  define: { navigator: 'undefined' },
  sourcemap: 'linked',
  logLevel: 'warning',
});
rmSync(join(here, 'media'), { recursive: true, force: true });
cpSync(join(root, 'media'), join(here, 'media'), { recursive: true });
// The map panel's view logic is tested TypeScript (src/core/mapViews.ts); the webview runs the same code as a global.
await build({
  entryPoints: [join(here, 'src', 'core', 'mapViews.ts')],
  outfile: join(here, 'media', 'map-views.js'),
  bundle: true,
  platform: 'browser',
  format: 'iife',
  globalName: 'heedViews',
  target: 'es2022',
  logLevel: 'warning',
});
// The explain panel's compare view (src/core/compareView.ts), the same way.
await build({
  entryPoints: [join(here, 'src', 'core', 'compareView.ts')],
  outfile: join(here, 'media', 'compare-view.js'),
  bundle: true,
  platform: 'browser',
  format: 'iife',
  globalName: 'heedCompare',
  target: 'es2022',
  logLevel: 'warning',
});
console.log('built out/extension.cjs and media/ (with media/map-views.js and media/compare-view.js)');

if (withEngine) {
  // The engine is the project's compiled output; compile it first (tsc emits even when unrelated files have type
  // errors, so the presence of the entry point is the test, not the exit code).
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  const cli = join(root, 'dist', 'engine', 'cli', 'main.js');
  if (!existsSync(cli)) {
    console.error(`engine entry ${cli} is missing after tsc (exit ${tsc.status}); build the engine first`);
    process.exit(1);
  }
  const out = join(here, 'engine');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const skip = (src) => src.endsWith('.map') || src.endsWith('.d.ts');
  // Only the engine: it imports nothing from models/ (the test/demo model builders stay out of the .vsix).
  for (const part of ['engine']) {
    cpSync(join(root, 'dist', part), join(out, 'dist', part), { recursive: true, filter: (s) => !skip(s) });
  }
  // The trained Shapes models: the extension's default when no model folder is set (see src/core/defaults.ts).
  for (const part of ['sd', 'vit', 'clip', 'demo.json']) {
    const src = join(root, 'models', 'shapes', part);
    if (existsSync(src)) cpSync(src, join(out, 'models', 'shapes', part), { recursive: true, dereference: true });
  }
  writeFileSync(join(out, 'package.json'), JSON.stringify({ name: 'heed-engine', private: true, type: 'module' }, null, 2) + '\n');
  // Production dependency folders as npm resolved them (nested paths kept, so resolution is unchanged).
  const listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } })
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && l !== root && l.includes('node_modules'));
  const typesOnly = (p) => /node_modules\/(@types\/|undici-types|type-fest)/.test(p);
  for (const dir of listed) {
    if (typesOnly(dir)) continue;
    const rel = relative(root, dir);
    const dest = join(out, rel);
    if (existsSync(dest)) continue;
    cpSync(dir, dest, {
      recursive: true,
      filter: (s) => {
        const r = relative(dir, s);
        if (r.startsWith('node_modules')) return false; // nested deps are listed (and copied) on their own
        if (skip(s)) return false;
        // onnxruntime-node: keep only the target's native binaries (the package ships every platform).
        const m = /^bin\/napi-v\d+\/([^/]+)(?:\/([^/]+))?/.exec(r);
        if (rel.endsWith('onnxruntime-node') && m && (m[1] !== platform || (m[2] && m[2] !== arch))) return false;
        // onnxruntime-web comes in through @huggingface/transformers (used for image preprocessing only); its WASM
        // runtimes (~85 MB) are loaded only by its wasm backend, which the engine never selects.
        if (rel.endsWith('onnxruntime-web') && s.endsWith('.wasm')) return false;
        return true;
      },
    });
  }
  const size = (p) => (statSync(p).isDirectory() ? readdirSync(p).reduce((a, f) => a + size(join(p, f)), 0) : statSync(p).size);
  console.log(`bundled engine for ${target}: ${(size(out) / 1e6).toFixed(1)} MB in engine/`);
}
