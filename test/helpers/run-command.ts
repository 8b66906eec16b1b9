/**
 * The built `deskgate` command (dist/cli.js) run by a test: a one-shot subcommand to its
 * exit with stdin given, or a gateway left running until the test stops it by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Running {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
}

function spawnCli(args: string[], env: Record<string, string>, stdin: 'pipe' | 'ignore'): Running & { stdout(): string; stderr(): string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: [stdin, 'pipe', 'pipe'] });
  let [stdout, stderr, both] = ['', '', ''];
  child.stdout?.on('data', (d: Buffer) => ((stdout += d.toString()), (both += d.toString())));
  child.stderr?.on('data', (d: Buffer) => ((stderr += d.toString()), (both += d.toString())));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, exited, output: () => both, stdout: () => stdout, stderr: () => stderr };
}

/** Run `deskgate ARGS` to its exit; killed, and failing, after `timeoutMs`. */
export async function runDeskgate(args: string[], options: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Finished> {
  const run = spawnCli(args, options.env ?? {}, options.stdin === undefined ? 'ignore' : 'pipe');
  run.child.stdin?.end(options.stdin);
  const deadline = setTimeout(() => run.child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const code = await run.exited.finally(() => clearTimeout(deadline));
  if (run.child.signalCode === 'SIGKILL') throw new Error(`deskgate ${args.join(' ')} did not finish:\n${run.output()}`);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** Start `deskgate ARGS` as a gateway; `stop()` sends SIGTERM (SIGKILL after 5 s) to its pid. */
export function startDeskgate(args: string[], env: Record<string, string> = {}): Running & { stop(): Promise<void> } {
  const run = spawnCli(args, env, 'ignore');
  return {
    ...run,
    async stop() {
      if (run.child.exitCode !== null || run.child.signalCode !== null) return;
      run.child.kill('SIGTERM');
      const killer = setTimeout(() => run.child.kill('SIGKILL'), 5_000);
      await run.exited.finally(() => clearTimeout(killer));
    },
  };
}
