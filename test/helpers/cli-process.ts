/**
 * The built `deskgate` command (dist/cli.js) as a child process: a YAML config written to a
 * temporary directory, an ephemeral loopback port, started once /healthz answers, stopped
 * by its pid. Plus a small HTTP client that can pick its source address on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort, waitFor } from './processes.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface HttpRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Source address on loopback, e.g. 127.0.0.2. */
  localAddress?: string;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface CliGateway {
  readonly child: ChildProcess;
  readonly port: number;
  readonly dir: string;
  readonly origin: string;
  /** The WebSocket URL for a raw query string, e.g. '?desktop=demo'. */
  wsUrl(query: string): string;
  request(path: string, options?: HttpRequest): Promise<HttpResponse>;
  /** Whether the process is still running and answers /healthz with 200. */
  healthy(): Promise<boolean>;
  /** Everything the process wrote so far (its JSON log and any error). */
  output(): string;
  stop(): Promise<void>;
}

/** One plain HTTP/1.1 request to a loopback port, no keep-alive, the path sent as given (`..` too). */
export function httpFetch(port: number, path: string, options: HttpRequest = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const { method = 'GET', headers, localAddress } = options;
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers, localAddress, agent: false });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(options.body);
  });
}

/**
 * Start `node dist/cli.js --config <tmp>/deskgate.yaml`. `config` is written as YAML with
 * `listen` set to a free loopback port (or `port`, when the config must name it in advance);
 * `files` are written next to it, so the config can name them by relative path.
 */
export async function startCli(config: Record<string, unknown>, options: { port?: number; files?: Record<string, string> } = {}): Promise<CliGateway> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-cli-'));
  for (const [name, text] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), text);
  const file = join(dir, 'deskgate.yaml');
  writeFileSync(file, stringify({ listen: `127.0.0.1:${port}`, ...config }));

  const child = spawn(process.execPath, [CLI, '--config', file], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = once(child, 'exit');
  const origin = `http://127.0.0.1:${port}`;
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const healthy = async (): Promise<boolean> => running() && (await httpFetch(port, '/healthz').catch(() => undefined))?.status === 200;

  const gateway: CliGateway = {
    child,
    port,
    dir,
    origin,
    wsUrl: (query) => `ws://127.0.0.1:${port}/websockify${query}`,
    request: (path, requestOptions) => httpFetch(port, path, requestOptions),
    healthy,
    output: () => output,
    async stop() {
      if (running()) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(async () => {
      if (!running()) throw new Error(`deskgate exited with ${child.exitCode ?? child.signalCode} before it was healthy:\n${output}`);
      return healthy();
    }, `deskgate on port ${port} to answer /healthz`);
  } catch (err) {
    await gateway.stop();
    throw err;
  }
  return gateway;
}
