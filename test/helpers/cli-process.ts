/**
 * The built `deskgate` command (dist/cli.js; npm test builds first) as a child process:
 * spawned with only PATH and the given variables in its environment, its output kept,
 * stopped by its pid. On top: a subcommand run to its exit, and a gateway started from a
 * YAML config in a temporary directory on an ephemeral loopback port, once /healthz answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { send, type Reply, type RequestOptions } from './http-client.js';
import { freePort, waitFor } from './processes.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const STOP_GRACE_MS = 5_000;

export interface SpawnOptions {
  /** Environment variables besides PATH. */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed; without it, stdin is not connected. */
  stdin?: string;
}

export interface DeskgateProcess {
  readonly child: ChildProcess;
  /** Resolves with the exit code (null when a signal ended it) once its output is all read. */
  readonly exited: Promise<number | null>;
  running(): boolean;
  stdout(): string;
  stderr(): string;
  /** stdout and stderr as they came, interleaved. */
  output(): string;
  /** SIGTERM to its pid, SIGKILL after 5 s; resolves once it has exited. Does nothing if it has. */
  stop(): Promise<void>;
  /** How many file descriptors (files, sockets) the process holds open right now. */
  openFiles(): number;
}

/** Start `node dist/cli.js ARGS`; nothing waits for it. */
export function spawnDeskgate(args: string[], options: SpawnOptions = {}): DeskgateProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  child.stdin?.end(options.stdin);
  let [stdout, stderr, both] = ['', '', ''];
  child.stdout?.on('data', (chunk: Buffer) => ((stdout += chunk.toString()), (both += chunk.toString())));
  child.stderr?.on('data', (chunk: Buffer) => ((stderr += chunk.toString()), (both += chunk.toString())));
  // 'close', not 'exit': by then stdout and stderr have been read to their end.
  const exited = once(child, 'close').then(([code]) => code as number | null);
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    child,
    exited,
    running,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => both,
    openFiles: () => readdirSync(`/proc/${child.pid}/fd`).length,
    async stop() {
      if (running()) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited.finally(() => clearTimeout(killer));
      } else {
        await exited;
      }
    },
  };
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `deskgate ARGS` to its exit; killed, and failing, after `timeoutMs`. */
export async function runDeskgate(args: string[], options: SpawnOptions & { timeoutMs?: number } = {}): Promise<Finished> {
  const run = spawnDeskgate(args, options);
  const deadline = setTimeout(() => run.child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const code = await run.exited.finally(() => clearTimeout(deadline));
  if (run.child.signalCode === 'SIGKILL') throw new Error(`deskgate ${args.join(' ')} did not finish:\n${run.output()}`);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** Wait until `url` answers 200; fails at once, with its output, if the process exits first. */
export async function waitHealthy(cli: DeskgateProcess, url: string, options: RequestOptions = {}): Promise<void> {
  await waitFor(async () => {
    if (!cli.running()) throw new Error(`deskgate exited with ${cli.child.exitCode ?? cli.child.signalCode} before ${url} answered:\n${cli.output()}`);
    return (await send(url, options).catch(() => undefined))?.status === 200;
  }, `deskgate to answer ${url}`);
}

export interface CliGateway extends DeskgateProcess {
  readonly port: number;
  /** The temporary directory holding deskgate.yaml and the files given; removed by stop(). */
  readonly dir: string;
  /** http://127.0.0.1:PORT (https:// with `tls`) */
  readonly origin: string;
  /** The WebSocket URL for a raw query string, e.g. '?desktop=demo'. */
  wsUrl(query: string): string;
  /** An HTTP request for a path, sent as given (`..` too). */
  request(path: string, options?: RequestOptions): Promise<Reply>;
  /** Whether the process is still running and answers /healthz with 200. */
  healthy(): Promise<boolean>;
}

export interface CliGatewayOptions {
  /** The port to listen on, when the config must name it in advance; a free one otherwise. */
  port?: number;
  /** Files written next to the config, so that it can name them by relative path. */
  files?: Record<string, string>;
  /** More command-line arguments after `--config FILE`. */
  args?: string[];
  /** Serve HTTPS with this certificate and key (written next to the config); requests trust the certificate. */
  tls?: { cert: Buffer; key: Buffer };
}

/**
 * Start `deskgate --config <tmp>/deskgate.yaml`, `config` written as YAML with `listen`
 * set to a loopback port, and wait until it answers /healthz.
 */
export async function startCli(config: Record<string, unknown>, options: CliGatewayOptions = {}): Promise<CliGateway> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-cli-'));
  for (const [name, text] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), text);
  const { tls } = options;
  if (tls) {
    writeFileSync(join(dir, 'tls-cert.pem'), tls.cert);
    writeFileSync(join(dir, 'tls-key.pem'), tls.key);
  }
  const file = join(dir, 'deskgate.yaml');
  writeFileSync(file, stringify({ listen: `127.0.0.1:${port}`, ...(tls && { tls: { cert: 'tls-cert.pem', key: 'tls-key.pem' } }), ...config }));

  const cli = spawnDeskgate(['--config', file, ...(options.args ?? [])]);
  const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const trust = tls && { ca: tls.cert };
  const gateway: CliGateway = {
    ...cli,
    port,
    dir,
    origin,
    wsUrl: (query) => `ws://127.0.0.1:${port}/websockify${query}`,
    request: (path, requestOptions) => send(`${origin}${path}`, { ...trust, ...requestOptions }),
    healthy: async () => cli.running() && (await send(`${origin}/healthz`, trust).catch(() => undefined))?.status === 200,
    async stop() {
      await cli.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitHealthy(cli, `${origin}/healthz`, trust);
  } catch (err) {
    await gateway.stop();
    throw err;
  }
  return gateway;
}
