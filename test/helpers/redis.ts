/**
 * A real redis-server for tests: on a free loopback port, with nothing saved to disk, stopped
 * by its pid and started again on the same port (a Redis that went away and came back empty).
 * Optionally with a password (--requirepass) or TLS only (rediss://). A missing redis-server
 * is a loud failure, never a skip, and none outlives the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import { freePort, requireCommand, takeAlong, waitFor } from './processes.js';

const STOP_GRACE_MS = 5_000;

export interface RedisServerOptions {
  /** --requirepass: clients must give this password. */
  password?: string;
  /** TLS only, with this certificate (e.g. makeCertificate() from tls.ts): the URL is rediss://. */
  tls?: { cert: Buffer; key: Buffer };
}

export interface RedisServer {
  /** redis://127.0.0.1:PORT, or rediss:// with TLS; never with the password. */
  readonly url: string;
  readonly port: number;
  /** The pid of the process running now. */
  readonly pid: number;
  /** SIGTERM to its pid (SIGKILL after 5 s), then wait for it to exit. Does nothing when it is not running. */
  stop(): Promise<void>;
  /** SIGKILL to its pid, then wait for it to exit. */
  kill(): Promise<void>;
  /** Start it again on the same port, empty. */
  restart(): Promise<void>;
}

let scratch: string | undefined;

/** One directory for every server this process starts (their TLS files), removed when it exits. */
function scratchDir(): string {
  if (scratch) return scratch;
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-redis-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return (scratch = dir);
}

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  requireCommand('redis-server', 'redis-server');
  const port = await freePort();
  const dir = join(scratchDir(), String(port));
  mkdirSync(dir);
  const args = ['--bind', '127.0.0.1', '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', dir];
  if (options.password !== undefined) args.push('--requirepass', options.password);
  if (options.tls) {
    writeFileSync(join(dir, 'cert.pem'), options.tls.cert);
    writeFileSync(join(dir, 'key.pem'), options.tls.key, { mode: 0o600 });
    // The certificate is its own CA; clients are not asked for one.
    const files = ['--tls-cert-file', join(dir, 'cert.pem'), '--tls-key-file', join(dir, 'key.pem'), '--tls-ca-cert-file', join(dir, 'cert.pem')];
    args.push('--port', '0', '--tls-port', String(port), ...files, '--tls-auth-clients', 'no');
  } else {
    args.push('--port', String(port));
  }

  let child = await launch(args, port, options.tls !== undefined);
  const exit = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    process.kill(child.pid as number, signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited.finally(() => clearTimeout(killer));
  };
  return {
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid as number;
    },
    stop: () => exit('SIGTERM'),
    kill: () => exit('SIGKILL'),
    async restart() {
      await exit('SIGTERM');
      child = await launch(args, port, options.tls !== undefined);
    },
  };
}

/** Start redis-server and wait until it answers PING; it dies with the test process. */
async function launch(args: string[], port: number, tls: boolean): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('error', keep);
  takeAlong(child);
  try {
    await waitFor(async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`redis-server exited with ${child.exitCode ?? child.signalCode} before it answered:\n${output}`);
      }
      return answersPing(port, tls);
    }, `redis-server to answer PING on 127.0.0.1:${port}`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return child;
}

/** Whether a server on 127.0.0.1:port answers PING: +PONG, or -NOAUTH when it wants a password first. */
function answersPing(port: number, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = tls ? connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false }) : connectTcp(port, '127.0.0.1');
    const done = (answered: boolean): void => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once(tls ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
    socket.once('data', (reply: Buffer) => done(/^(\+PONG|-NOAUTH)/.test(reply.toString())));
    socket.once('error', () => done(false));
  });
}
