/**
 * Real reverse proxies from Debian for tests: nginx, Caddy and HAProxy, each started in the
 * foreground with a configuration written into a temporary directory (which also holds its
 * pid file, logs and temporary files), listening on a free loopback port, stopped by its pid.
 * A test gives the site part of the configuration, as an operator would write it; the
 * process-wide part (where files go, no daemon, no admin API) is this module's. A missing
 * binary is a loud failure, never a skip. `stopProxies()` stops every one still running (for a
 * suite whose setup failed half-way), and none outlives the test process.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, requireCommand, takeAlong, waitFor } from './processes.js';

const STOP_GRACE_MS = 5_000;

/** Every proxy started here and not stopped yet. */
const running = new Set<RunningProxy>();

/** Stop every proxy this module started that is still running. */
export async function stopProxies(): Promise<void> {
  await Promise.all([...running].map((proxy) => proxy.stop()));
}

export interface ProxySite {
  /** The loopback port the proxy listens on. */
  port: number;
  /** The proxy's temporary directory, where `files` were written. */
  dir: string;
}

export interface ProxyOptions {
  /** Files written into the proxy's directory before it starts, e.g. a certificate. */
  files?: Record<string, string | Buffer>;
  /** The scheme browsers use to reach it (its site then terminates TLS); default http. */
  scheme?: 'http' | 'https';
}

export interface RunningProxy {
  readonly name: string;
  readonly port: number;
  readonly dir: string;
  /** http://127.0.0.1:PORT, or https:// when it terminates TLS. */
  readonly origin: string;
  /** The configuration file as written. */
  readonly config: string;
  /** What it wrote to stdout, stderr and its error log so far. */
  log(): string;
  /** SIGTERM to its pid (SIGKILL after 5 s), then its directory removed. Does nothing twice. */
  stop(): Promise<void>;
}

/**
 * nginx with `http { SITE }`: `site` is what goes inside the http block (upstream, map,
 * server). The server block listens on `127.0.0.1:${port}`.
 */
export function startNginx(site: (where: ProxySite) => string, options: ProxyOptions = {}): Promise<RunningProxy> {
  requireCommand('nginx', 'nginx');
  return startProxy('nginx', 'nginx.conf', options, (where, file) => ({
    config: [
      // The worker must reach this root-only temporary directory.
      ...(process.getuid?.() === 0 ? ['user root;'] : []),
      'daemon off;',
      'worker_processes 1;',
      `pid ${where.dir}/nginx.pid;`,
      `error_log ${where.dir}/error.log info;`,
      'events { worker_connections 256; }',
      'http {',
      `  access_log ${where.dir}/access.log;`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${where.dir}/${kind}_temp;`),
      site(where),
      '}',
      '',
    ].join('\n'),
    // -e: the log for errors before the configuration is read (Debian's default is stderr).
    args: ['-p', `${where.dir}/`, '-e', `${where.dir}/error.log`, '-c', file],
    logFile: join(where.dir, 'error.log'),
  }));
}

/**
 * Caddy with a Caddyfile: global options that keep it to this test (no admin endpoint, no
 * automatic HTTPS or certificates, storage in the temporary directory), then `site`.
 */
export function startCaddy(site: (where: ProxySite) => string, options: ProxyOptions = {}): Promise<RunningProxy> {
  requireCommand('caddy', 'caddy');
  return startProxy('caddy', 'Caddyfile', options, (where, file) => ({
    config: ['{', '  admin off', '  auto_https off', `  storage file_system ${where.dir}/data`, '}', site(where), ''].join('\n'),
    args: ['run', '--config', file, '--adapter', 'caddyfile'],
    env: { HOME: where.dir, XDG_CONFIG_HOME: `${where.dir}/config`, XDG_DATA_HOME: `${where.dir}/data` },
  }));
}

/** HAProxy in the foreground (-db) with `site` as its whole configuration (global, defaults, frontend, backend). */
export function startHaproxy(site: (where: ProxySite) => string, options: ProxyOptions = {}): Promise<RunningProxy> {
  requireCommand('haproxy', 'haproxy');
  return startProxy('haproxy', 'haproxy.cfg', options, (where, file) => ({
    config: `${site(where)}\n`,
    args: ['-db', '-f', file],
  }));
}

interface Launch {
  config: string;
  args: string[];
  env?: Record<string, string>;
  /** A log file to read besides stdout and stderr. */
  logFile?: string;
}

async function startProxy(name: string, configName: string, options: ProxyOptions, launch: (where: ProxySite, file: string) => Launch): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), `deskgate-${name}-`));
  const port = await freePort();
  for (const [file, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, file), content, { mode: 0o600 });
  const file = join(dir, configName);
  const { config, args, env, logFile } = launch({ port, dir }, file);
  writeFileSync(file, config);

  const child = spawn(name, args, { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('error', keep);
  const exited = once(child, 'close');
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  takeAlong(child);
  const log = (): string => {
    let fromFile = '';
    try {
      fromFile = logFile ? readFileSync(logFile, 'utf8').slice(-20_000) : '';
    } catch {
      // not written yet
    }
    return output + fromFile;
  };
  let stopped: Promise<void> | undefined;
  const proxy: RunningProxy = {
    name,
    port,
    dir,
    origin: `${options.scheme ?? 'http'}://127.0.0.1:${port}`,
    config,
    log,
    stop() {
      stopped ??= (async () => {
        if (alive()) {
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exited.finally(() => clearTimeout(killer));
        }
        running.delete(proxy);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  running.add(proxy);
  try {
    await waitFor(async () => {
      if (!alive()) throw new Error(`${name} exited with ${child.exitCode ?? child.signalCode} before it listened:\n${log()}\n--- ${file}\n${config}`);
      return accepts(port);
    }, `${name} to listen on 127.0.0.1:${port}`);
  } catch (err) {
    await proxy.stop();
    throw err;
  }
  return proxy;
}

/** Whether a TCP connection to 127.0.0.1:port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
