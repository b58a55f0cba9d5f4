// `heed serve` as a process: --json handshake line, server.json, token file, refusal of a non-loopback bind without a
// chosen token, clean shutdown on SIGTERM (info file removed). Uses the CLI's main.js when it registers `serve`,
// otherwise a two-line commander program around registerServe (the same code path).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HeedClient } from '../engine/server/client.js';

const CLI_JS = fileURLToPath(new URL('../engine/server/cli.js', import.meta.url));
const MAIN_JS = fileURLToPath(new URL('../engine/cli/main.js', import.meta.url));

let entryFile: string | undefined;

function serveArgs(args: string[]): string[] {
  if (existsSync(MAIN_JS) && readFileSync(MAIN_JS, 'utf8').includes('registerServe')) return [MAIN_JS, 'serve', ...args];
  if (!entryFile) {
    // A file, not `node -e`: worker threads inherit execArgv, and an eval'd entry would run again in each worker.
    entryFile = join(mkdtempSync(join(tmpdir(), 'heed-serve-entry-')), 'serve.mjs');
    writeFileSync(entryFile, `import { Command } from ${JSON.stringify(import.meta.resolve('commander'))};
import { registerServe } from ${JSON.stringify(pathToFileURL(CLI_JS).href)};
const p = new Command('heed'); registerServe(p);
p.parseAsync(process.argv).then(() => process.exit(0), (e) => { console.error('heed serve: ' + e.message); process.exit(1); });
`);
  }
  return [entryFile, 'serve', ...args];
}

function run(args: string[]): { child: ChildProcess; firstLine: Promise<string>; exit: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, serveArgs(args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolve(stdout.slice(0, nl));
    });
    child.on('exit', () => reject(new Error(`exited before printing: ${stderr}`)));
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
  return { child, firstLine, exit };
}

describe('server: heed serve command', function () {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'heed-serve-cli-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    if (entryFile) rmSync(join(entryFile, '..'), { recursive: true, force: true });
  });

  it('--json prints {url, token, pid}; the info file matches; SIGTERM shuts down cleanly and removes it', async () => {
    const out = join(dir, 'a');
    const p = run(['--port', '0', '--out', out, '--json']);
    const info = JSON.parse(await p.firstLine) as { url: string; token: string; pid: number; protocol: string };
    assert.match(info.url, /^ws:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(info.pid, p.child.pid);
    assert.equal(info.protocol, 'heed/1');
    const file = JSON.parse(readFileSync(join(out, 'server.json'), 'utf8')) as { token: string; url: string };
    assert.deepEqual([file.url, file.token], [info.url, info.token]);
    const c = await HeedClient.connect(info.url, { token: info.token });
    assert.equal((await c.request({ type: 'status' })).terminal.type, 'result');
    await c.close();
    p.child.kill('SIGTERM');
    const { code } = await p.exit;
    assert.equal(code, 0);
    assert.ok(!existsSync(join(out, 'server.json')), 'server.json removed on shutdown');
  });

  it('--token-file: that token is required, a generated one is not printed', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'a-secret-shared-with-the-client\n');
    const p = run(['--port', '0', '--out', join(dir, 'b'), '--token-file', tokenFile]);
    const line = await p.firstLine;
    const url = /listening on (ws:\S+)/.exec(line)?.[1];
    assert.ok(url, line);
    await assert.rejects(HeedClient.connect(url, { token: 'wrong-token-wrong-token' }), /401/);
    const c = await HeedClient.connect(url, { token: 'a-secret-shared-with-the-client' });
    await c.close();
    p.child.kill('SIGTERM');
    assert.equal((await p.exit).code, 0);
  });

  it('refuses a non-loopback bind without a chosen token, with a message saying what to do', async () => {
    const p = run(['--host', '0.0.0.0', '--port', '0', '--out', join(dir, 'c')]);
    p.firstLine.catch(() => undefined);
    const { code, stderr } = await p.exit;
    assert.notEqual(code, 0);
    assert.match(stderr, /refusing to listen on 0\.0\.0\.0 without a token you chose.*--token-file/s);
  });

  it('--token shorter than 16 characters is a user error: exit 2 naming the fix, not an internal error', async () => {
    const p = run(['--port', '0', '--out', join(dir, 'd'), '--token', 'short']);
    p.firstLine.catch(() => undefined);
    const { code, stderr } = await p.exit;
    assert.equal(code, 2, stderr);
    assert.match(stderr, /at least 16 characters/);
    assert.doesNotMatch(stderr, /internal error/);
  });

  it('--device that cannot open stops `heed serve` before any worker starts: exit 2 naming the fix', async () => {
    const foreign = process.platform === 'darwin' ? 'dml' : 'coreml';
    const p = run(['--port', '0', '--out', join(dir, 'e'), '--device', foreign]);
    p.firstLine.catch(() => undefined);
    const { code, stderr } = await p.exit;
    assert.equal(code, 2, stderr);
    assert.match(stderr, new RegExp(`cannot run on --device ${foreign}.*Fix:`));
  });
});
