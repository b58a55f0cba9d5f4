#!/usr/bin/env node
// The `heed` command line: generate, explain, tokenize, demo, eval, serve. Every subcommand is a thin layer over the
// engine API (the same one the server uses). Exit codes: 0 ok, 2 user error (one line: cause and fix),
// 1 internal error (stack with --verbose), 130 interrupted.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { classifyError, EXIT_OK } from './errors.js';
import { registerGenerate } from './generate.js';
import { registerExplain } from './explain.js';
import { registerTokenize } from './tokenize.js';
import { registerDemo } from './demo.js';
import { registerEval } from './eval.js';
import { EVAL_EXPLAIN_COMMAND, evalExplain, registerEvalExplain } from './eval-explain.js';

export const VERSION = '0.1.0';

/** Hook for commands that live elsewhere (the server registers `serve`). */
export type CommandRegistrar = (program: Command) => unknown;

/** Builds the program. `extra` registrars run after the built-in commands. */
export function buildProgram(extra: readonly CommandRegistrar[] = []): Command {
  const program = new Command('heed')
    .description('Heed: attention lens and guidance for Stable Diffusion, explanations for vision transformers (ONNX, CPU)')
    .version(VERSION, '-V, --version')
    .option('--verbose', 'show stack traces of internal errors')
    .exitOverride()
    .configureOutput({ outputError: () => {} }); // errors are printed once, by run(), as one line
  registerGenerate(program);
  registerExplain(program);
  registerTokenize(program);
  registerDemo(program);
  // `heed eval explain` (explanation methods) is listed under `heed eval` (diffusion) but runs as a hidden top-level
  // command (see EVAL_EXPLAIN_COMMAND), so that eval's flags cannot swallow explain's.
  evalExplain(registerEval(program));
  registerEvalExplain(program);
  for (const r of extra) r(program);
  // Subcommands (and their sub-modes, e.g. `eval explain`) inherit the error behaviour: throw instead of exiting,
  // print nothing themselves.
  const quiet = (cmd: Command): void => {
    for (const c of cmd.commands) {
      c.exitOverride().configureOutput({ outputError: () => {} });
      quiet(c);
    }
  };
  quiet(program);
  return program;
}

/** `heed serve` lives in engine/server; loaded lazily so a problem there cannot break the other commands. */
async function serveRegistrar(): Promise<CommandRegistrar[]> {
  try {
    const mod = await import('../server/cli.js');
    return [mod.registerServe];
  } catch (e) {
    return [(program: Command) => program.command('serve').description('(unavailable)').action(() => {
      throw new Error(`the server module failed to load: ${(e as Error).message}`);
    })];
  }
}

/** Commander phrases a bad option value as "option '--x <v>' argument 'v' is invalid. <our message>": keep ours. */
function tidyCommanderMessage(e: CommanderError): string {
  return e.message.replace(/^error:\s*/i, '').replace(/^option '[^']*' argument '[^']*' is invalid\.\s*/, '');
}

/** Runs the CLI and returns the exit code (does not call process.exit, so tests and embedders can use it). */
export async function run(argv: readonly string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  // The server module (ws, zod schemas) costs ~0.4 s to load: only when `serve` is run or the help lists commands.
  if (argv[2] === 'eval' && argv[3] === 'explain') argv = [argv[0]!, argv[1]!, EVAL_EXPLAIN_COMMAND, ...argv.slice(4)];
  const args = argv.slice(2);
  const wantsServe = args.length === 0 || args.some((a) => a === 'serve' || a === 'help' || a === '--help' || a === '-h');
  const program = buildProgram(wantsServe ? await serveRegistrar() : []);
  try {
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT_OK;
      if (e.code === 'commander.executeSubCommandAsync') return e.exitCode;
      const msg = tidyCommanderMessage(e);
      const fix = e.code === 'commander.unknownCommand' || e.code === 'commander.unknownOption' || e.code === 'commander.missingMandatoryOptionValue' || e.code === 'commander.missingArgument'
        ? ' (see heed --help)' : '';
      process.stderr.write(`heed: ${msg.replace(/\s*\n\s*/g, ' ').trim()}${fix}\n`);
      return 2;
    }
    const c = classifyError(e, verbose);
    process.stderr.write(c.message + '\n');
    return c.exitCode;
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  const code = await run(process.argv);
  // Let stdout drain, then exit explicitly: ORT's thread pools can keep the event loop alive otherwise.
  process.stdout.write('', () => process.exit(code));
}
