// Typed access to the `heed.*` settings (package.json "contributes.configuration" documents each).
import * as vscode from 'vscode';
import * as path from 'node:path';
import { DEFAULT_NEGLECT_THRESHOLD } from '../../engine/attention/neglect.js';
import { DEFAULT_LEAKAGE_THRESHOLD } from '../../engine/attention/binding.js';
import { defaultModelDir, type ModelKind } from './core/defaults.js';

/** Set at activation: where the bundled engine lives (extension root). */
let extensionRoot: string | undefined;
export function setExtensionRoot(root: string): void {
  extensionRoot = root;
}

/** The engine CLI: the `heed.engine.cliPath` setting, else the engine bundled in this extension. */
export function engineCliPath(cliSetting: string): string {
  if (cliSetting) return cliSetting;
  return path.join(extensionRoot ?? path.resolve(__dirname, '..'), 'engine', 'dist', 'engine', 'cli', 'main.js');
}

export interface HeedConfig {
  engineUrl: string;
  engineToken: string;
  nodePath: string;
  cliPath: string;
  /** `heed serve --device` of the local engine. */
  device: string;
  /** Folders to use: the settings, or the trained Shapes models next to the engine when a setting is empty. */
  models: { sd: string; vit: string; clip: string };
  /** Which of `models` are the built-in Shapes defaults (no setting given). */
  modelDefaults: { sd: boolean; vit: boolean; clip: boolean };
  defaults: { steps: number; guidance: number; scheduler: string; seed: number };
  outputFolder: string;
  neglectThreshold: number;
  leakageThreshold: number;
}

/** Resolves `${workspaceFolder}` and relative paths against the first workspace folder. */
function resolvePath(p: string): string {
  if (!p) return p;
  const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
  const expanded = p.replace(/\$\{workspaceFolder\}/g, ws).replace(/^~(?=\/|$)/, process.env.HOME ?? '~');
  return path.isAbsolute(expanded) ? expanded : path.join(ws, expanded);
}

export function readConfig(): HeedConfig {
  const c = vscode.workspace.getConfiguration('heed');
  const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const out = c.get<string>('outputFolder', '');
  const cliPath = resolvePath(c.get<string>('engine.cliPath', ''));
  const setting = (kind: ModelKind): string => resolvePath(c.get<string>(`models.${kind}`, '').trim());
  const model = (kind: ModelKind): string => setting(kind) || defaultModelDir(engineCliPath(cliPath), kind);
  return {
    engineUrl: c.get<string>('engine.url', '').trim(),
    engineToken: c.get<string>('engine.token', ''),
    nodePath: c.get<string>('engine.nodePath', 'node') || 'node',
    cliPath,
    device: c.get<string>('engine.device', 'cpu') || 'cpu',
    models: { sd: model('sd'), vit: model('vit'), clip: model('clip') },
    modelDefaults: { sd: !setting('sd'), vit: !setting('vit'), clip: !setting('clip') },
    defaults: {
      steps: c.get<number>('defaults.steps', 20),
      guidance: c.get<number>('defaults.guidance', 7.5),
      scheduler: c.get<string>('defaults.scheduler', ''),
      seed: c.get<number>('defaults.seed', 0),
    },
    outputFolder: out ? resolvePath(out) : ws ? path.join(ws, 'heed-out') : path.join(process.env.HOME ?? '/tmp', 'heed-out'),
    neglectThreshold: c.get<number>('neglectThreshold', DEFAULT_NEGLECT_THRESHOLD),
    leakageThreshold: c.get<number>('leakageThreshold', DEFAULT_LEAKAGE_THRESHOLD),
  };
}

/** A clear message for a model setting that is empty, naming the setting to fill in. */
export function missingModelMessage(kind: 'sd' | 'vit' | 'clip'): string {
  const what = { sd: 'Stable Diffusion', vit: 'ViT', clip: 'CLIP' }[kind];
  return `No ${what} model folder is set and the engine has no built-in Shapes model. Set "heed.models.${kind}" to an ONNX model folder (Settings → Heed).`;
}
