// Editor features of `.prompt` files: diagnostics, dimming past the token window, hovers with tokens and ids,
// CodeLens (Generate / Generate with Attend-and-Excite / Show maps), per-word attention after a run, and the quick fix
// that adds a neglected word to the block's `excite:` line. The logic lives in core/ (tested without VS Code); this
// file only turns its ranges and messages into VS Code objects.
import * as vscode from 'vscode';
import type { GenerateResult, TokenizeResult } from '../../engine/protocol/index.js';
import { addExciteEdit, blockAtLine, parsePromptFile, useSynGenEdits, positionToTextOffset, type LineRange, type ParsedPromptFile, type Problem, type PromptBlock } from './core/promptFile.js';
import { attentionBadge, exciteSubjectWords, hoverMarkdown, leakageFindings, neglectFindings, reportBindings, overflowFinding, wordAtOffset, wordAttentions } from './core/tokens.js';
import { readConfig } from './config.js';
import type { EngineManager } from './engine.js';

export const LANGUAGE_ID = 'heed-prompt';

const toRange = (r: LineRange): vscode.Range => new vscode.Range(r.line, r.start, r.line, r.end);
const SEVERITY: Record<Problem['severity'], vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error,
  warning: vscode.DiagnosticSeverity.Warning,
  information: vscode.DiagnosticSeverity.Information,
  hint: vscode.DiagnosticSeverity.Hint,
};

function toDiagnostic(p: Problem): vscode.Diagnostic {
  const d = new vscode.Diagnostic(toRange(p.range), p.message, SEVERITY[p.severity]);
  d.source = 'heed';
  d.code = p.code;
  return d;
}

/** A finished run of one prompt, kept so that the editor can show attention and the map panel can be reopened. */
export interface RunRecord {
  promptText: string;
  excite: boolean;
  result: GenerateResult;
  /** A&E loss per denoising step and refinement, collected from progress events. */
  lossTrace: { step: number; iteration?: number; loss: number; scores?: Record<string, number> }[];
}

export class PromptFeatures implements vscode.Disposable {
  private readonly diagnostics = vscode.languages.createDiagnosticCollection('heed');
  private readonly dimmed = vscode.window.createTextEditorDecorationType({ opacity: '0.45', textDecoration: 'line-through 1px' });
  private readonly attention = vscode.window.createTextEditorDecorationType({});
  private readonly tokenCache = new Map<string, Promise<TokenizeResult>>();
  /** Last run per prompt text (per document). */
  readonly runs = new Map<string, Map<string, RunRecord>>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly codeLensEmitter = new vscode.EventEmitter<void>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly engine: EngineManager) {
    const selector: vscode.DocumentSelector = { language: LANGUAGE_ID };
    this.disposables.push(
      this.diagnostics,
      this.dimmed,
      this.attention,
      this.codeLensEmitter,
      vscode.languages.registerHoverProvider(selector, { provideHover: (doc, pos) => this.hover(doc, pos) }),
      vscode.languages.registerCodeLensProvider(selector, { provideCodeLenses: (doc) => this.codeLenses(doc), onDidChangeCodeLenses: this.codeLensEmitter.event }),
      vscode.languages.registerCodeActionsProvider(selector, { provideCodeActions: (doc, _r, ctx) => this.codeActions(doc, ctx) }, { providedCodeActionKinds: [vscode.CodeActionKind.QuickFix] }),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document)),
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d)),
      vscode.workspace.onDidCloseTextDocument((d) => this.diagnostics.delete(d.uri)),
      vscode.window.onDidChangeVisibleTextEditors(() => vscode.window.visibleTextEditors.forEach((e) => this.schedule(e.document))),
      engine.onDidChangeState((s) => {
        if (s.kind === 'connected') vscode.workspace.textDocuments.forEach((d) => this.schedule(d));
      }),
    );
    vscode.workspace.textDocuments.forEach((d) => this.schedule(d));
  }

  parse(doc: vscode.TextDocument): ParsedPromptFile {
    return parsePromptFile(doc.getText());
  }

  blockAt(doc: vscode.TextDocument, line: number): PromptBlock | undefined {
    return blockAtLine(this.parse(doc), line);
  }

  /** Tokenizes a prompt with the configured SD model's tokenizer, through the engine; cached by model and text. */
  tokenize(text: string): Promise<TokenizeResult> {
    const model = readConfig().models.sd;
    if (!model) return Promise.reject(new Error('set "heed.models.sd" to a Stable Diffusion ONNX folder to see tokens'));
    const key = `${model}\u0000${text}`;
    let p = this.tokenCache.get(key);
    if (!p) {
      p = this.engine.ensureClient().then((c) => c.tokenize(model, text));
      p.catch(() => this.tokenCache.delete(key));
      if (this.tokenCache.size > 500) this.tokenCache.clear();
      this.tokenCache.set(key, p);
    }
    return p;
  }

  private schedule(doc: vscode.TextDocument): void {
    if (doc.languageId !== LANGUAGE_ID) return;
    const key = doc.uri.toString();
    clearTimeout(this.timers.get(key));
    this.timers.set(key, setTimeout(() => void this.refresh(doc), 250));
  }

  /** Recomputes diagnostics and decorations of one document. */
  async refresh(doc: vscode.TextDocument): Promise<void> {
    if (doc.isClosed) return;
    const version = doc.version;
    const file = this.parse(doc);
    const problems: Problem[] = [...file.problems];
    const dim: vscode.Range[] = [];
    const badges: vscode.DecorationOptions[] = [];
    const runs = this.runs.get(doc.uri.toString());
    const threshold = readConfig().neglectThreshold;
    const neglected: vscode.Diagnostic[] = [];
    for (const block of file.prompts) {
      let tok: TokenizeResult | undefined;
      if (this.engine.state.kind === 'connected' || this.engine.state.kind === 'busy') {
        tok = await this.tokenize(block.text).catch(() => undefined);
      }
      if (tok) {
        const o = overflowFinding(block, tok);
        if (o) {
          problems.push(o.problem);
          dim.push(...o.ranges.map(toRange));
        }
      }
      const run = runs?.get(block.text);
      if (run) {
        const att = wordAttentions(block, run.result.maps, tok);
        for (const a of att) {
          const last = a.ranges[a.ranges.length - 1];
          if (!last) continue;
          badges.push({
            range: toRange(last),
            hoverMessage: new vscode.MarkdownString(`**${a.word}**: max attention ${a.maxAttention.toPrecision(3)} (${(a.relative * 100).toFixed(0)}% of the strongest word) in the last ${run.excite ? 'Attend-and-Excite ' : ''}run`),
            renderOptions: { after: { contentText: ` ${attentionBadge(a.relative)}`, color: new vscode.ThemeColor(a.relative < threshold ? 'editorWarning.foreground' : 'editorCodeLens.foreground'), fontStyle: 'normal', margin: '0 0 0 2px' } },
          });
        }
        for (const p of leakageFindings(block, reportBindings(run.result.report), readConfig().leakageThreshold)) neglected.push(toDiagnostic(p));
        for (const n of neglectFindings(block, att, threshold, exciteSubjectWords(run.result.excite))) {
          const d = toDiagnostic(n.problem);
          if (!n.alreadyExcited) d.code = 'neglected-subject';
          else d.code = 'neglected-excited';
          neglected.push(d);
        }
      }
    }
    if (doc.isClosed || doc.version !== version) return;
    this.diagnostics.set(doc.uri, [...problems.map(toDiagnostic), ...neglected]);
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document !== doc) continue;
      editor.setDecorations(this.dimmed, dim);
      editor.setDecorations(this.attention, badges);
    }
  }

  /** Records a finished run and refreshes the document that holds its prompt. */
  recordRun(doc: vscode.TextDocument, run: RunRecord): void {
    const key = doc.uri.toString();
    const m = this.runs.get(key) ?? new Map<string, RunRecord>();
    m.set(run.promptText, run);
    this.runs.set(key, m);
    this.codeLensEmitter.fire();
    void this.refresh(doc);
  }

  lastRun(doc: vscode.TextDocument, block: PromptBlock): RunRecord | undefined {
    return this.runs.get(doc.uri.toString())?.get(block.text);
  }

  private async hover(doc: vscode.TextDocument, pos: vscode.Position): Promise<vscode.Hover | undefined> {
    const block = this.blockAt(doc, pos.line);
    if (!block) return undefined;
    const offset = positionToTextOffset(block, pos.line, pos.character);
    if (offset === undefined) return undefined;
    let tok: TokenizeResult;
    try {
      tok = await this.tokenize(block.text);
    } catch (e) {
      return new vscode.Hover(new vscode.MarkdownString(`Heed: no tokens — ${(e as Error).message}`));
    }
    const word = wordAtOffset(tok, offset);
    if (!word) return undefined;
    const ranges = [];
    for (const s of block.segments) if (s.line === pos.line) ranges.push(s);
    const seg = ranges[0];
    const range = seg ? new vscode.Range(pos.line, seg.character + (word.start - seg.textStart), pos.line, seg.character + (word.end - seg.textStart)) : undefined;
    const md = new vscode.MarkdownString(hoverMarkdown(tok, word));
    return new vscode.Hover(md, range);
  }

  private codeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    const out: vscode.CodeLens[] = [];
    for (const block of this.parse(doc).prompts) {
      const range = new vscode.Range(block.startLine, 0, block.startLine, 0);
      const args = [doc.uri, block.startLine];
      out.push(new vscode.CodeLens(range, { title: '$(play) Generate', command: 'heed.generate', arguments: args, tooltip: 'Generate this prompt with per-token attention maps' }));
      const method = block.settings.loss === 'syngen' ? 'SynGen' : 'Attend-and-Excite';
      out.push(new vscode.CodeLens(range, { title: `$(zap) Generate with ${method}`, command: 'heed.generateExcite', arguments: args, tooltip: `${method} on ${block.settings.excite?.join(', ') || 'the nouns (auto)'}` }));
      out.push(new vscode.CodeLens(range, { title: '$(symbol-color) Show maps', command: 'heed.showMaps', arguments: args, tooltip: 'Open the map panel for this prompt' }));
    }
    return out;
  }

  private codeActions(doc: vscode.TextDocument, ctx: vscode.CodeActionContext): vscode.CodeAction[] {
    const out: vscode.CodeAction[] = [];
    for (const d of ctx.diagnostics) {
      if (d.source === 'heed' && d.code === 'leaked-binding') {
        const block = this.blockAt(doc, d.range.start.line);
        const nouns = block ? reportBindings(this.lastRun(doc, block)?.result.report).map((b) => b.noun) : [];
        if (!block || nouns.length === 0 || out.some((a) => a.title.startsWith('Use SynGen'))) continue;
        const action = new vscode.CodeAction(`Use SynGen on ${nouns.map((n) => `'${n}'`).join(', ')} (loss: syngen)`, vscode.CodeActionKind.QuickFix);
        action.diagnostics = [d];
        action.edit = new vscode.WorkspaceEdit();
        for (const e of useSynGenEdits(block, nouns, (l) => doc.lineAt(l).text)) action.edit.replace(doc.uri, toRange(e.range), e.newText);
        out.push(action);
        continue;
      }
      if (d.source !== 'heed' || d.code !== 'neglected-subject') continue;
      const block = this.blockAt(doc, d.range.start.line);
      if (!block) continue;
      const word = doc.getText(d.range);
      const edit = addExciteEdit(block, word, (l) => doc.lineAt(l).text);
      const action = new vscode.CodeAction(`Excite '${word}'`, vscode.CodeActionKind.QuickFix);
      action.diagnostics = [d];
      action.isPreferred = true;
      action.edit = new vscode.WorkspaceEdit();
      action.edit.replace(doc.uri, toRange(edit.range), edit.newText);
      out.push(action);
    }
    return out;
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.disposables.forEach((d) => d.dispose());
  }
}
