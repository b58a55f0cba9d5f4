// The explanation panel: an image + a ViT or CLIP model. CLIP: texts → similarity scores and a Chefer relevance
// overlay per text. ViT: top-k classes → rollout, gradient rollout and Chefer per class, head grids, the
// mean-attention-distance plot. All numbers come from the engine's explain.json; the panel only draws them.
import { compareRequestFields, explainMethods, explainOptionFields, type PanelExplainOptions } from './core/explainOptions.js';
import * as vscode from 'vscode';
import * as path from 'node:path';
import { readFile } from 'node:fs/promises';
import type { ExplainMethod } from '../../engine/protocol/index.js';
import { missingModelMessage, readConfig } from './config.js';
import type { EngineManager } from './engine.js';
import { pngDataUri, readEngineFile, webviewHtml } from './webview.js';

type ModelKind = 'clip' | 'vit';

type FromWebview =
  | { type: 'ready' }
  | { type: 'run'; model: ModelKind; texts: string[]; options?: PanelExplainOptions; compare?: boolean }
  | { type: 'pickImage' }
  | { type: 'cancel' };

export class ExplainPanel implements vscode.Disposable {
  private static current: ExplainPanel | undefined;
  private readonly panel: vscode.WebviewPanel;
  private ready = false;
  private queue: unknown[] = [];
  private imagePath: string | undefined;
  private jobId: string | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  /** Opens (or reuses) the panel on `image`; `texts` pre-fills the CLIP texts and `autoRun` runs CLIP at once. */
  static async show(context: vscode.ExtensionContext, engine: EngineManager, image: string | undefined, texts: string[] = [], autoRun = false): Promise<ExplainPanel> {
    const p = ExplainPanel.current ?? new ExplainPanel(context, engine);
    ExplainPanel.current = p;
    p.panel.reveal(vscode.ViewColumn.Beside, false);
    if (image) await p.setImage(image, texts);
    if (autoRun && image) await p.run('clip', texts);
    return p;
  }

  private constructor(
    context: vscode.ExtensionContext,
    private readonly engine: EngineManager,
  ) {
    this.panel = vscode.window.createWebviewPanel('heed.explain', 'Heed Explain', vscode.ViewColumn.Beside, {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'media')],
    });
    this.panel.webview.html = webviewHtml(this.panel.webview, context.extensionUri, 'explain.js', 'Heed Explain', 'heed-explain', ['compare-view.js']);
    this.disposables.push(
      this.panel.onDidDispose(() => this.dispose()),
      this.panel.webview.onDidReceiveMessage((m: FromWebview) => void this.onMessage(m)),
    );
  }

  private post(m: unknown): void {
    if (!this.ready) this.queue.push(m);
    else void this.panel.webview.postMessage(m);
  }

  private async onMessage(m: FromWebview): Promise<void> {
    switch (m.type) {
      case 'ready': {
        this.ready = true;
        const cfg = readConfig();
        void this.panel.webview.postMessage({ type: 'models', clip: cfg.models.clip, vit: cfg.models.vit });
        for (const q of this.queue.splice(0)) void this.panel.webview.postMessage(q);
        return;
      }
      case 'pickImage': {
        const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { Images: ['png', 'jpg', 'jpeg', 'webp'] }, title: 'Image to explain' });
        if (picked?.[0]) await this.setImage(picked[0].fsPath, []);
        return;
      }
      case 'run':
        await this.run(m.model, m.texts, m.options, m.compare === true);
        return;
      case 'cancel':
        if (this.jobId) await (await this.engine.ensureClient()).cancel(this.jobId).catch(() => undefined);
        return;
    }
  }

  async setImage(image: string, texts: string[]): Promise<void> {
    this.imagePath = image;
    const bytes = new Uint8Array(await readFile(image));
    const mime = path.extname(image).toLowerCase() === '.png' ? 'image/png' : path.extname(image).toLowerCase() === '.webp' ? 'image/webp' : 'image/jpeg';
    this.post({ type: 'image', path: image, name: path.basename(image), uri: `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`, texts });
  }

  /** Explains the image; `compare` runs the *Compare methods* view instead (every map method, one class / text, timed). */
  async run(kind: ModelKind, texts: string[], options: PanelExplainOptions = {}, compare = false): Promise<void> {
    const cfg = readConfig();
    const model = kind === 'clip' ? cfg.models.clip : cfg.models.vit;
    if (!this.imagePath) return this.post({ type: 'error', message: 'Choose an image first.' });
    if (!model) return this.post({ type: 'error', message: missingModelMessage(kind) });
    const cleaned = texts.map((t) => t.trim()).filter(Boolean);
    if (kind === 'clip' && cleaned.length === 0) return this.post({ type: 'error', message: 'Type at least one text for CLIP (one per line), e.g. "a photo of a frog".' });
    if (compare && kind === 'clip' && cleaned.length > 1) return this.post({ type: 'error', message: `Compare methods explains one image–text pair: keep one text (there are ${cleaned.length}).` });
    const methods: ExplainMethod[] = explainMethods(kind, options);
    this.post({ type: 'running', kind, texts: cleaned, compare });
    try {
      const client = await this.engine.ensureClient();
      // A remote engine cannot read this machine's files: send the image inline then.
      const image = cfg.engineUrl ? { data: Buffer.from(await readFile(this.imagePath)).toString('base64'), name: path.basename(this.imagePath) } : { path: this.imagePath };
      const fields = compare ? compareRequestFields(kind, options) : { methods, ...explainOptionFields(kind, options) };
      const job = client.explain(
        { model, image, ...(kind === 'clip' ? { texts: cleaned } : {}), ...fields },
        { onAccepted: (a) => (this.jobId = a.id), onProgress: (p) => this.engine.jobProgress(job.id, 'explaining', p.step, p.total) },
      );
      const result = await job.result.finally(() => this.engine.jobDone(job.id));
      const input = result.files.find((f) => path.basename(f.path) === 'input.png');
      const inputUri = input ? pngDataUri(await readEngineFile(this.engine, path.isAbsolute(input.path) ? input.path : path.join(result.outDir, input.path))) : undefined;
      this.post({ type: 'result', kind, explain: result.explain, compare: result.compare === true, input: inputUri, outDir: result.outDir });
    } catch (e) {
      this.post({ type: 'error', message: (e as Error).message });
    } finally {
      this.jobId = undefined;
    }
  }

  dispose(): void {
    if (ExplainPanel.current === this) ExplainPanel.current = undefined;
    this.disposables.forEach((d) => d.dispose());
    this.panel.dispose();
  }
}
