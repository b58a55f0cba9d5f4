// The layer rule (README, "Layout"): engine modules import downward only. Every import statement (static, `export …
// from`, and `import('…')`) of every engine/, bench/ and extension/src file is read from the sources and checked; a
// failure lists each offending edge as `importer → imported`.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('../../', import.meta.url)));

/**
 * Engine layers, lowest first. A module may import its own folder and any folder of a LOWER rank; folders of the
 * same rank are independent of each other.
 */
const ENGINE_RANKS: Record<string, number> = {
  // The error type every layer throws.
  'errors.ts': 0,
  // Plain data shared by everything: the protocol's schemas (zod only), .npy files.
  protocol: 1, io: 1,
  // ONNX graphs, sessions and gradients; images and charts; Pillow-exact resampling.
  onnx: 2, render: 2, image: 2,
  // Attention discovery/aggregation on ONNX graphs; text tokenizers.
  attention: 3, text: 3,
  // The Stable Diffusion pipeline.
  diffusion: 4,
  // What runs on the pipeline or on vision transformers: Attend-and-Excite, explanations.
  guidance: 5, explain: 5,
  // Jobs: one typed call per task plus its output files, owned by neither face.
  jobs: 6,
  // The faces. The server translates requests into jobs; the command line translates flags into jobs and is the
  // outermost layer (`heed serve` starts the server), so nothing imports it.
  server: 7,
  cli: 8,
};

/** The layer of an engine file: its folder under engine/ (or the file itself at engine/'s top). */
function engineLayer(rel: string): string {
  const parts = rel.split('/');
  return parts[1]!;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Module specifiers of every import/export-from/dynamic import in a TypeScript source (comments stripped). */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const specs: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g, // import x from '…', import type { … } from '…'
    /\bexport\s+(?:type\s+)?(?:\*|\{[^}]*\})\s*(?:as\s+\w+\s*)?from\s*['"]([^'"]+)['"]/g, // export … from '…'
    /\bimport\s*['"]([^'"]+)['"]/g, // import '…' (side effects)
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g, // import('…')
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) specs.push(m[1]!);
  return specs;
}

interface Edge {
  from: string;
  to: string;
}

/** Repository-relative paths of the files a source imports by relative path (packages are not layers). */
function localImports(file: string): Edge[] {
  const from = relative(REPO, file).split('\\').join('/');
  return importSpecifiers(readFileSync(file, 'utf8'))
    .filter((s) => s.startsWith('.'))
    .map((s) => ({ from, to: relative(REPO, resolve(dirname(file), s)).split('\\').join('/').replace(/\.js$/, '.ts') }));
}

/**
 * Edges that break the rule today and are being removed in a parallel change (issue 15: benches stop importing test
 * helpers). Listed, not hidden: delete the entry when the import is gone.
 */
const PENDING: ReadonlySet<string> = new Set(['bench/vjp.ts → test/helpers/reference.ts']);

/** Engine modules the extension bundles: pure logic with no imports, shared so that the editor and the engine agree
 *  (the neglect and leakage warnings are the predictors `heed eval` measures). */
const EXTENSION_SHARED: ReadonlySet<string> = new Set(['engine/attention/neglect.ts', 'engine/attention/binding.ts']);

/** Why an edge breaks the rule, or undefined when it is allowed. */
export function violation(e: Edge): string | undefined {
  const top = (p: string): string => p.split('/')[0]!;
  if (top(e.from) === 'engine') {
    if (top(e.to) === 'models') return 'the engine does not import the model builders (models/)';
    if (top(e.to) === 'test') return 'the engine does not import tests';
    if (top(e.to) !== 'engine') return `the engine imports only engine/ (got ${top(e.to)}/)`;
    const a = engineLayer(e.from);
    const b = engineLayer(e.to);
    if (a === b) return undefined;
    const ra = ENGINE_RANKS[a];
    const rb = ENGINE_RANKS[b];
    if (ra === undefined) return `engine/${a} has no layer in the rule: add it to ENGINE_RANKS and the README`;
    if (rb === undefined) return `engine/${b} has no layer in the rule: add it to ENGINE_RANKS and the README`;
    if (rb >= ra) return `${a} (layer ${ra}) may import only lower layers, not ${b} (layer ${rb})`;
    return undefined;
  }
  if (top(e.from) === 'bench') {
    if (top(e.to) === 'test') return 'benchmarks do not import tests';
    return undefined;
  }
  if (e.from.startsWith('extension/src/')) {
    // The extension shares only the protocol and a few pure, dependency-free modules with the engine (the engine runs
    // as a separate process; esbuild bundles these files into the extension).
    if (e.to.startsWith('extension/')) return undefined;
    if (e.to.startsWith('engine/protocol/')) return undefined;
    if (EXTENSION_SHARED.has(e.to)) return undefined;
    return `the extension imports only its own files, engine/protocol/ and ${[...EXTENSION_SHARED].join(', ')}`;
  }
  return undefined;
}

describe('layers: imports point downward only', function () {
  it('reads import statements of every kind', function () {
    const src = [
      "import a from './a.js';",
      "import type { B } from '../b.js';",
      "import {\n  c,\n  d,\n} from './cd.js';",
      "export { e } from './e.js';",
      "export * from './f.js';",
      "import './g.js';",
      "const h = await import('./h.js');",
      "// import x from './commented.js';",
      "/* import y from './block.js'; */",
    ].join('\n');
    assert.deepEqual(importSpecifiers(src).sort(), ['../b.js', './a.js', './cd.js', './e.js', './f.js', './g.js', './h.js']);
  });

  it('the rule rejects what it should (so a pass means something)', function () {
    assert.match(violation({ from: 'engine/server/engine-runner.ts', to: 'engine/cli/excite.ts' }) ?? '', /lower layers/);
    assert.match(violation({ from: 'engine/io/npy.ts', to: 'engine/protocol/index.ts' }) ?? '', /lower layers/);
    assert.match(violation({ from: 'engine/cli/demo.ts', to: 'models/cache.ts' }) ?? '', /builders/);
    assert.match(violation({ from: 'engine/diffusion/pipeline.ts', to: 'engine/jobs/outputs.ts' }) ?? '', /lower layers/);
    assert.match(violation({ from: 'engine/explain/api.ts', to: 'engine/guidance/subjects.ts' }) ?? '', /lower layers/);
    assert.match(violation({ from: 'bench/vjp.ts', to: 'test/helpers/x.ts' }) ?? '', /tests/);
    assert.match(violation({ from: 'extension/src/extension.ts', to: 'engine/server/client.ts' }) ?? '', /protocol/);
    assert.match(violation({ from: 'extension/src/core/tokens.ts', to: 'engine/attention/store.ts' }) ?? '', /protocol/);
    assert.equal(violation({ from: 'extension/src/core/tokens.ts', to: 'engine/attention/neglect.ts' }), undefined);
    assert.equal(violation({ from: 'engine/jobs/generate.ts', to: 'engine/diffusion/pipeline.ts' }), undefined);
    assert.equal(violation({ from: 'engine/server/server.ts', to: 'engine/protocol/index.ts' }), undefined);
  });

  it('the engine modules the extension bundles import nothing (esbuild would pull their imports into the extension)', function () {
    for (const f of EXTENSION_SHARED) assert.deepEqual(importSpecifiers(readFileSync(join(REPO, f), 'utf8')), [], `${f} must stay free of imports`);
  });

  it('every engine/, bench/ and extension/src import follows the rule', function () {
    const files = ['engine', 'bench', join('extension', 'src')].flatMap((d) => sourceFiles(join(REPO, d)));
    assert.ok(files.length > 50, `found only ${files.length} source files under ${REPO}`);
    const edges = files.flatMap(localImports);
    assert.ok(edges.length > 100, `found only ${edges.length} imports`);
    const bad = edges.flatMap((e) => {
      const why = violation(e);
      return why && !PENDING.has(`${e.from} → ${e.to}`) ? [`${e.from} → ${e.to}: ${why}`] : [];
    });
    assert.deepEqual(bad, [], `imports against the layer rule:\n  ${bad.join('\n  ')}`);
  });
});
