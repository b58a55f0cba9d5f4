// Entry point: wires the engine connection, the prompt-file features, the panels and the commands together.
import * as vscode from 'vscode';
import * as path from 'node:path';
import type { GenerateRequest, ProgressEvent } from '../../engine/protocol/index.js';
import type { PromptBlock } from './core/promptFile.js';
import { lossTraceFromExcite } from './core/tokens.js';
import { missingModelMessage, readConfig, setExtensionRoot } from './config.js';
import { EngineManager } from './engine.js';
import { ExplainPanel } from './explainPanel.js';
import { MapsPanel, type RunLabel } from './mapsPanel.js';
import { LANGUAGE_ID, PromptFeatures, type RunRecord } from './promptFeatures.js';

let engine: EngineManager | undefined;

interface ActiveJob {
  id: string;
  label: RunLabel;
}

export function activate(context: vscode.ExtensionContext): void {
  setExtensionRoot(context.extensionPath);
  const eng = new EngineManager(context);
  engine = eng;
  const features = new PromptFeatures(eng);
  context.subscriptions.push(eng, features);
  let active: ActiveJob[] = [];
  let lastResult: { image: string; subjects: string[] } | undefined;

  /** The prompt block to act on: from a CodeLens (uri, line) or the active editor's cursor. */
  async function target(uri?: vscode.Uri, line?: number): Promise<{ doc: vscode.TextDocument; block: PromptBlock } | undefined> {
    const doc = uri ? await vscode.workspace.openTextDocument(uri) : vscode.window.activeTextEditor?.document;
    if (!doc || doc.languageId !== LANGUAGE_ID) {
      void vscode.window.showWarningMessage('Heed: open a .prompt file and put the cursor in a prompt.');
      return undefined;
    }
    const l = line ?? vscode.window.activeTextEditor?.selection.active.line ?? 0;
    const file = features.parse(doc);
    const block = file.prompts.find((p) => l >= p.startLine && l <= p.endLine) ?? file.prompts.find((p) => p.startLine >= l) ?? file.prompts[0];
    if (!block) {
      void vscode.window.showWarningMessage('Heed: this file has no prompt yet. Write one on its own line (a blank line separates prompts).');
      return undefined;
    }
    return { doc, block };
  }

  function requestFor(block: PromptBlock, excite: boolean): Omit<GenerateRequest, 'id' | 'type'> {
    const cfg = readConfig();
    const s = block.settings;
    const scheduler = s.scheduler ?? cfg.defaults.scheduler;
    return {
      model: cfg.models.sd,
      prompt: block.text,
      ...(s.negative ? { negativePrompt: s.negative } : {}),
      steps: s.steps ?? cfg.defaults.steps,
      guidance: s.guidance ?? cfg.defaults.guidance,
      ...(scheduler ? { scheduler } : {}),
      seed: s.seed ?? cfg.defaults.seed,
      ...(s.size ? { width: s.size.width, height: s.size.height } : {}),
      // Per-step and per-layer maps feed the panel's step slider and layer/resolution filter.
      maps: { perStep: true, perLayer: true },
      preview: { every: 1, size: 64 },
      ...(excite ? {
        excite: {
          subjects: s.excite && s.excite.length ? s.excite : 'auto',
          ...(s.loss === 'syngen' ? { method: 'syngen' as const } : {}),
          ...(s.scale !== undefined ? { scaleFactor: s.scale } : {}),
        },
      } : {}),
    };
  }

  async function runOne(panel: MapsPanel, doc: vscode.TextDocument, block: PromptBlock, label: RunLabel): Promise<RunRecord | undefined> {
    const client = await eng.ensureClient();
    const lossTrace: RunRecord['lossTrace'] = [];
    const job = client.generate(requestFor(block, label === 'excite'), {
      onProgress: (p: ProgressEvent) => {
        panel.progress(label, p);
        eng.jobProgress(job.id, label === 'excite' ? `A&E ${p.phase}` : p.phase, p.step, p.total);
        if (p.loss !== undefined) lossTrace.push({ step: p.step, ...(p.iteration !== undefined ? { iteration: p.iteration } : {}), loss: p.loss, ...(p.scores ? { scores: p.scores } : {}) });
      },
    });
    active.push({ id: job.id, label });
    try {
      const result = await job.result;
      // Loss from the progress events; else from the engine's excite.json event log.
      const trace = lossTrace.length > 0 ? lossTrace : lossTraceFromExcite(result.excite);
      const run: RunRecord = { promptText: block.text, excite: label === 'excite', result, lossTrace: trace };
      features.recordRun(doc, run);
      await panel.result(label, run);
      lastResult = { image: result.image.file.path, subjects: block.settings.excite ?? [] };
      return run;
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === 'cancelled') panel.cancelled(label);
      else {
        panel.error(err.message, label);
        void vscode.window.showErrorMessage(`Heed: generation failed — ${err.message}`);
      }
      return undefined;
    } finally {
      active = active.filter((a) => a.id !== job.id);
      eng.jobDone(job.id);
    }
  }

  async function generate(labels: RunLabel[], uri?: vscode.Uri, line?: number): Promise<void> {
    const t = await target(uri, line);
    if (!t) return;
    if (!readConfig().models.sd) {
      const open = 'Open Settings';
      if ((await vscode.window.showErrorMessage(`Heed: ${missingModelMessage('sd')}`, open)) === open) void vscode.commands.executeCommand('workbench.action.openSettings', 'heed.models');
      return;
    }
    const panel = MapsPanel.show(context, eng);
    panel.onCancel = () => void cancelAll();
    panel.begin(t.block.text, labels, t.block.settings.excite ?? []);
    try {
      // Serial on purpose: the two runs share one engine worker, and a plain run first gives the baseline early.
      for (const label of labels) await runOne(panel, t.doc, t.block, label);
    } catch (e) {
      panel.error((e as Error).message);
      void vscode.window.showErrorMessage(`Heed: ${(e as Error).message}`);
    }
  }

  async function cancelAll(): Promise<void> {
    if (active.length === 0) {
      void vscode.window.showInformationMessage('Heed: nothing is running.');
      return;
    }
    const client = await eng.ensureClient();
    for (const a of active) await client.cancel(a.id).catch((e: Error) => eng.log(`cancel ${a.id}: ${e.message}`));
  }

  context.subscriptions.push(
    vscode.commands.registerCommand('heed.generate', (uri?: vscode.Uri, line?: number) => generate(['plain'], uri, line)),
    vscode.commands.registerCommand('heed.generateExcite', (uri?: vscode.Uri, line?: number) => generate(['excite'], uri, line)),
    vscode.commands.registerCommand('heed.compare', (uri?: vscode.Uri, line?: number) => generate(['plain', 'excite'], uri, line)),
    vscode.commands.registerCommand('heed.showMaps', async (uri?: vscode.Uri, line?: number) => {
      const t = await target(uri, line);
      if (!t) return;
      const run = features.lastRun(t.doc, t.block);
      if (!run) {
        const gen = 'Generate';
        if ((await vscode.window.showInformationMessage('Heed: no maps for this prompt yet.', gen)) === gen) await generate(['plain'], t.doc.uri, t.block.startLine);
        return;
      }
      const panel = MapsPanel.show(context, eng);
      const label: RunLabel = run.excite ? 'excite' : 'plain';
      panel.begin(t.block.text, [label], t.block.settings.excite ?? []);
      await panel.result(label, run);
    }),
    vscode.commands.registerCommand('heed.cancel', () => cancelAll()),
    vscode.commands.registerCommand('heed.explainImage', async (uri?: vscode.Uri) => {
      let image = uri?.fsPath;
      if (!image) {
        const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { Images: ['png', 'jpg', 'jpeg', 'webp'] }, title: 'Image to explain' });
        image = picked?.[0]?.fsPath;
      }
      if (image) await ExplainPanel.show(context, eng, image);
    }),
    vscode.commands.registerCommand('heed.explainResult', async (imagePath?: string) => {
      const image = imagePath ?? lastResult?.image;
      if (!image) {
        void vscode.window.showInformationMessage('Heed: generate an image first, then ask whether its subjects are there.');
        return;
      }
      const subjects = lastResult && lastResult.image === image && lastResult.subjects.length ? lastResult.subjects : [];
      const texts = subjects.length ? subjects.map((s) => `a photo of a ${s}`) : [];
      await ExplainPanel.show(context, eng, image, texts, texts.length > 0);
    }),
    vscode.commands.registerCommand('heed.reconnect', () => eng.reconnect().then(() => undefined, (e: Error) => void vscode.window.showErrorMessage(`Heed: ${e.message}`))),
    vscode.commands.registerCommand('heed.restartEngine', () => eng.restart().then(() => undefined, (e: Error) => void vscode.window.showErrorMessage(`Heed: ${e.message}`))),
    vscode.commands.registerCommand('heed.stopEngine', () => eng.stop()),
    vscode.commands.registerCommand('heed.showLog', () => eng.output.show(true)),
    vscode.commands.registerCommand('heed.exciteWord', async (uri: vscode.Uri, line: number, word: string) => {
      const doc = await vscode.workspace.openTextDocument(uri);
      const block = features.blockAt(doc, line);
      if (!block) return;
      const { addExciteEdit } = await import('./core/promptFile.js');
      const e = addExciteEdit(block, word, (l) => doc.lineAt(l).text);
      const edit = new vscode.WorkspaceEdit();
      edit.replace(uri, new vscode.Range(e.range.line, e.range.start, e.range.line, e.range.end), e.newText);
      await vscode.workspace.applyEdit(edit);
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('heed.engine')) void eng.restart().catch(() => undefined);
    }),
  );

  // Connect early when a prompt file is open, so hovers have tokens by the time the user points at a word.
  if (vscode.workspace.textDocuments.some((d) => d.languageId === LANGUAGE_ID) || vscode.window.activeTextEditor?.document.languageId === LANGUAGE_ID) {
    void eng.ensureClient().catch(() => undefined);
  }
  context.subscriptions.push(
    vscode.workspace.onDidOpenTextDocument((d) => {
      if (d.languageId === LANGUAGE_ID) void eng.ensureClient().catch(() => undefined);
    }),
  );
  eng.log(`Heed extension activated (${path.basename(context.extensionPath)})`);
}

export function deactivate(): void {
  engine?.dispose();
  engine = undefined;
}
