// Which model folders the extension uses when the user has set none: the trained Shapes models that ship next to the
// engine (models/shapes/ of a Heed checkout, engine/models/shapes/ inside the .vsix), so that a new user sees maps
// that mean something on first use. Pure (no vscode import) so that it is unit-tested.
import { existsSync } from 'node:fs';
import * as path from 'node:path';

export type ModelKind = 'sd' | 'vit' | 'clip';

/** The engine root of a CLI path `<root>/dist/engine/cli/main.js`. */
export function engineRoot(cliPath: string): string {
  return path.resolve(path.dirname(cliPath), '..', '..', '..');
}

/** `<engine root>/models/shapes/<kind>` when it holds a model, else ''. */
export function defaultModelDir(cliPath: string, kind: ModelKind): string {
  const dir = path.join(engineRoot(cliPath), 'models', 'shapes', kind);
  const marker = kind === 'sd' ? 'model_index.json' : 'config.json';
  return existsSync(path.join(dir, marker)) ? dir : '';
}
