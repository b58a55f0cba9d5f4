// The map preview panel: live progress and previews while generating, then the image, one map per token (click to
// overlay, opacity), the Attend-and-Excite loss chart, plain vs A&E side by side, and save buttons.
import * as vscode from 'vscode';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { GenerateResult, ProgressEvent } from '../../engine/protocol/index.js';
import { encodeNpyFloat32, parseNpyFloat } from './core/npy.js';
import { selectPlane, splitStack, viewOptions, type LayerGroup, type PlaneStack, type StepGroup, type ViewOption, type WordMaps } from './core/mapViews.js';
import { readConfig } from './config.js';
import type { EngineManager } from './engine.js';
import type { RunRecord } from './promptFeatures.js';
import { pngDataUri, readEngineFile, webviewHtml } from './webview.js';

export type RunLabel = 'plain' | 'excite';

/** What the panel's script receives (media/maps.js reads exactly these shapes). */
export type MapsMessage =
  | { type: 'start'; prompt: string; labels: RunLabel[]; subjects: string[] }
  | { type: 'progress'; label: RunLabel; phase: string; step: number; total: number; etaMs?: number; preview?: string; loss?: number; scores?: Record<string, number>; iteration?: number }
  | {
    type: 'result'; label: RunLabel; image: string; width: number; height: number; maps: PanelMap[]; lossTrace: RunRecord['lossTrace'];
    outDir: string; seed?: unknown; timingsMs: Record<string, number>;
    /** The layer/resolution filter's options and what the stacks hold (see core/mapViews.ts). */
    views: ViewOption[]; layerGroups: LayerGroup[]; stepGroups: StepGroup[];
  }
  | { type: 'error'; label?: RunLabel; message: string }
  | { type: 'cancelled'; label: RunLabel };

/** A word's maps as the webview receives them: plain arrays (webview messages are JSON). */
export interface PanelMap extends WordMaps {
  daam: { height: number; width: number; data: number[] };
  layers?: { height: number; width: number; planes: number[][] }[];
  steps?: { height: number; width: number; planes: number[][] }[];
}

type FromWebview =
  | { type: 'ready' }
  | { type: 'cancel' }
  /** `view`/`step`: the layer filter and map step on screen, so "Save .npy" saves the map the user is looking at. */
  | { type: 'save'; label: RunLabel; what: 'png' | 'npy' | 'report'; word?: string; view?: string; step?: number | null }
  | { type: 'explainSubjects'; label: RunLabel };

interface PanelRun {
  maps: PanelMap[];
  layerGroups: LayerGroup[];
  stepGroups: StepGroup[];
}

export class MapsPanel implements vscode.Disposable {
  private static current: MapsPanel | undefined;
  private readonly panel: vscode.WebviewPanel;
  private ready = false;
  private queue: MapsMessage[] = [];
  private results = new Map<RunLabel, GenerateResult>();
  private panelRuns = new Map<RunLabel, PanelRun>();
  /** Called when the user presses Cancel. */
  onCancel: (() => void) | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  static show(context: vscode.ExtensionContext, engine: EngineManager): MapsPanel {
    if (MapsPanel.current) {
      MapsPanel.current.panel.reveal(vscode.ViewColumn.Beside, true);
      return MapsPanel.current;
    }
    MapsPanel.current = new MapsPanel(context, engine);
    return MapsPanel.current;
  }

  private constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly engine: EngineManager,
  ) {
    this.panel = vscode.window.createWebviewPanel('heed.maps', 'Heed Maps', { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'media')],
    });
    this.panel.webview.html = webviewHtml(this.panel.webview, context.extensionUri, 'maps.js', 'Heed Maps', 'heed-maps', ['map-views.js']);
    this.disposables.push(
      this.panel.onDidDispose(() => this.dispose()),
      this.panel.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m)),
    );
  }

  private post(m: MapsMessage): void {
    if (!this.ready) this.queue.push(m);
    else void this.panel.webview.postMessage(m);
  }

  private async onMessage(m: FromWebview): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        for (const q of this.queue.splice(0)) void this.panel.webview.postMessage(q);
        return;
      case 'cancel':
        this.onCancel?.();
        return;
      case 'save':
        await this.save(m.label, m.what, m.word, m.view ?? 'daam', m.step ?? null);
        return;
      case 'explainSubjects':
        await vscode.commands.executeCommand('heed.explainResult', this.results.get(m.label)?.image.file.path);
        return;
    }
  }

  begin(prompt: string, labels: RunLabel[], subjects: string[]): void {
    this.results.clear();
    this.panelRuns.clear();
    this.post({ type: 'start', prompt, labels, subjects });
  }

  progress(label: RunLabel, ev: ProgressEvent): void {
    this.post({
      type: 'progress',
      label,
      phase: ev.phase,
      step: ev.step,
      total: ev.total,
      ...(ev.etaMs !== undefined ? { etaMs: ev.etaMs } : {}),
      ...(ev.preview ? { preview: `data:image/png;base64,${ev.preview.png}` } : {}),
      ...(ev.loss !== undefined ? { loss: ev.loss } : {}),
      ...(ev.scores ? { scores: ev.scores } : {}),
      ...(ev.iteration !== undefined ? { iteration: ev.iteration } : {}),
    });
  }

  async result(label: RunLabel, run: RunRecord): Promise<void> {
    const r = run.result;
    this.results.set(label, r);
    const image = pngDataUri(await readEngineFile(this.engine, r.image.file.path));
    const maps: PanelMap[] = [];
    const stacks = async (refs: { npy: { path: string } }[] | undefined, what: string, word: string): Promise<PanelMap['steps']> => {
      if (!refs) return undefined;
      const out: NonNullable<PanelMap['steps']> = [];
      for (const ref of refs) {
        try {
          const npy = parseNpyFloat(await readEngineFile(this.engine, ref.npy.path));
          const s: PlaneStack = splitStack(npy.shape, npy.data);
          out.push({ height: s.height, width: s.width, planes: s.planes.map((p) => Array.from(p)) });
        } catch (e) {
          this.engine.log(`${what} maps of '${word}' unreadable (${ref.npy.path}): ${(e as Error).message}`);
        }
      }
      return out;
    };
    for (const m of r.maps) {
      if (!m.npy) continue;
      try {
        const npy = parseNpyFloat(await readEngineFile(this.engine, m.npy.path));
        const [height, width] = npy.shape.length === 2 ? (npy.shape as [number, number]) : [1, npy.data.length];
        const steps = await stacks(m.perStep, 'per-step', m.word);
        const layers = await stacks(m.perLayer, 'per-layer', m.word);
        maps.push({
          word: m.word, tokenIndices: m.tokenIndices, ...(m.maxAttention !== undefined ? { maxAttention: m.maxAttention } : {}),
          daam: { width, height, data: Array.from(npy.data) },
          ...(steps ? { steps } : {}), ...(layers ? { layers } : {}),
        });
      } catch (e) {
        this.engine.log(`map of '${m.word}' unreadable: ${(e as Error).message}`);
      }
    }
    const report = r.report as { seed?: unknown } | undefined;
    const layerGroups: LayerGroup[] = r.layerMaps ?? [];
    this.panelRuns.set(label, { maps, layerGroups, stepGroups: r.stepMaps ?? [] });
    this.post({
      type: 'result', label, image, width: r.image.width, height: r.image.height, maps, lossTrace: run.lossTrace, outDir: r.outDir,
      seed: report?.seed, timingsMs: r.timingsMs, views: viewOptions(layerGroups), layerGroups, stepGroups: r.stepMaps ?? [],
    });
  }

  error(message: string, label?: RunLabel): void {
    this.post({ type: 'error', message, ...(label ? { label } : {}) });
  }

  cancelled(label: RunLabel): void {
    this.post({ type: 'cancelled', label });
  }

  private async save(label: RunLabel, what: 'png' | 'npy' | 'report', word: string | undefined, view: string, step: number | null): Promise<void> {
    const r = this.results.get(label);
    if (!r) return;
    const base = path.join(readConfig().outputFolder, 'saved', r.jobId);
    await mkdir(base, { recursive: true });
    let target: string;
    if (what === 'png') {
      target = path.join(base, `${label}-image.png`);
      await writeFile(target, await readEngineFile(this.engine, r.image.file.path));
    } else if (what === 'report') {
      target = path.join(base, `${label}-report.json`);
      await writeFile(target, JSON.stringify({ report: r.report, excite: r.excite, maps: r.maps.map((m) => ({ word: m.word, tokenIndices: m.tokenIndices, maxAttention: m.maxAttention })) }, null, 2) + '\n');
    } else {
      const m = r.maps.find((x) => x.word === word) ?? r.maps[0];
      if (!m?.npy) {
        void vscode.window.showWarningMessage('Heed: this run has no map to save.');
        return;
      }
      const shown = this.panelRuns.get(label)?.maps.find((x) => x.word === m.word);
      const stem = path.basename(m.npy.path, '.npy');
      if (shown && (view !== 'daam' || step !== null)) {
        // A filtered or per-step map exists only in the panel: write exactly the plane on screen.
        const run = this.panelRuns.get(label)!;
        const sel = selectPlane(shown, view, step, run.layerGroups, run.stepGroups);
        const tag = `${view.replace(/[^a-z0-9]+/gi, '-')}${step !== null ? `-step${step + 1}` : ''}`;
        target = path.join(base, `${label}-${stem}-${tag}.npy`);
        await writeFile(target, encodeNpyFloat32([sel.plane.height, sel.plane.width], sel.plane.data));
      } else {
        target = path.join(base, `${label}-${path.basename(m.npy.path)}`);
        if (readConfig().engineUrl) await writeFile(target, await readEngineFile(this.engine, m.npy.path));
        else await copyFile(m.npy.path, target);
      }
    }
    const open = 'Reveal';
    void vscode.window.showInformationMessage(`Heed: saved ${path.basename(target)} to ${base}`, open).then((c) => {
      if (c === open) void vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(target));
    });
  }

  dispose(): void {
    if (MapsPanel.current === this) MapsPanel.current = undefined;
    this.disposables.forEach((d) => d.dispose());
    this.panel.dispose();
  }
}
