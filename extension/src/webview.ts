// Shared webview plumbing: the strict CSP page shell and reading engine files (locally, or through `fetch` when the
// engine is on another machine).
import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readConfig } from './config.js';
import type { EngineManager } from './engine.js';

/** The HTML of a webview: no inline script or style, scripts only with a per-load nonce, images from data: URIs. */
export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, script: string, title: string, bodyId: string, libraries: readonly string[] = []): string {
  const nonce = randomBytes(16).toString('base64');
  const media = (f: string): vscode.Uri => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', f));
  const csp = [`default-src 'none'`, `img-src ${webview.cspSource} data: blob:`, `style-src ${webview.cspSource}`, `script-src 'nonce-${nonce}'`, `font-src ${webview.cspSource}`].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${media('panel.css')}">
<title>${title}</title>
</head>
<body id="${bodyId}">
<main id="app" aria-live="polite"><p class="muted">Loading…</p></main>
<script nonce="${nonce}" src="${media('common.js')}"></script>
${libraries.map((l) => `<script nonce="${nonce}" src="${media(l)}"></script>\n`).join('')}<script nonce="${nonce}" src="${media(script)}"></script>
</body>
</html>`;
}

/** Bytes of a file the engine wrote: read directly for a local engine, fetched over the protocol for a remote one. */
export async function readEngineFile(engine: EngineManager, path: string): Promise<Uint8Array> {
  if (!readConfig().engineUrl) return new Uint8Array(await readFile(path));
  const client = await engine.ensureClient();
  return client.fetchFile(path);
}

export function pngDataUri(bytes: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`;
}
