/**
 * A real TigerVNC server for tests: Xvnc on a display it picks itself (-displayfd) and an
 * ephemeral loopback port (or a Unix socket), security type None unless told otherwise (VncAuth with a
 * password file, X509 types with a certificate). Stopped by its pid. A missing Xvnc is a
 * loud failure, never a skip.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { formatAddress } from '../../src/net/address.js';
import { probeRfb } from '../../src/rfb/probe.js';
import { freePort, requireCommand, waitFor } from './processes.js';

export interface Xvnc {
  readonly display: number;
  /** Its TCP port; 0 when it listens on a Unix socket instead. */
  readonly port: number;
  readonly process: ChildProcess;
  /** Paint the root window, e.g. '#ff0000'. */
  paint(colour: string): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Write `password` to `path` as `vncpasswd -f` does: the file Xvnc's -PasswordFile reads. */
export function writeVncPasswdFile(path: string, password: string): void {
  requireCommand('vncpasswd', 'tigervnc-tools');
  writeFileSync(path, execFileSync('vncpasswd', ['-f'], { input: `${password}\n${password}\n` }), { mode: 0o600 });
}

export interface XvncOptions {
  width?: number;
  height?: number;
  /** -SecurityTypes, e.g. ['VncAuth'] or ['X509Vnc']; default ['None']. */
  securityTypes?: string[];
  /** -PasswordFile: a file written by `vncpasswd -f`. */
  passwordFile?: string;
  /** -X509Cert and -X509Key, for the X509* types. */
  x509?: { cert: string; key: string };
  /** -AlwaysShared (default true): false lets a client that asks for exclusive access disconnect the others. */
  alwaysShared?: boolean;
  /** -rfbunixpath: listen on this Unix socket instead of a TCP port. */
  unixSocket?: string;
}

export async function startXvnc(options: XvncOptions = {}): Promise<Xvnc> {
  requireCommand('Xvnc', 'tigervnc-standalone-server');
  requireCommand('xsetroot', 'x11-xserver-utils');
  const port = options.unixSocket === undefined ? await freePort() : 0;
  const listen = options.unixSocket === undefined ? ['-rfbport', String(port), '-localhost'] : ['-rfbport', '-1', '-rfbunixpath', options.unixSocket];
  const geometry = `${options.width ?? 320}x${options.height ?? 240}`;
  const child = spawn(
    'Xvnc',
    [
      '-displayfd',
      '3',
      ...listen,
      '-SecurityTypes',
      (options.securityTypes ?? ['None']).join(','),
      ...(options.passwordFile ? ['-PasswordFile', options.passwordFile] : []),
      ...(options.x509 ? ['-X509Cert', options.x509.cert, '-X509Key', options.x509.key] : []),
      ...(options.alwaysShared === false ? [] : ['-AlwaysShared']),
      '-geometry',
      geometry,
      '-depth',
      '24',
      '-nolisten',
      'tcp',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const displayText = await new Promise<string>((resolve, reject) => {
    let text = '';
    const fd = child.stdio[3] as NodeJS.ReadableStream;
    fd.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text.trim());
    });
    child.once('exit', (code) => reject(new Error(`Xvnc exited with ${code} before it was ready:\n${log}`)));
    child.once('error', reject);
  });
  const display = Number(displayText);
  const address = options.unixSocket === undefined ? { host: '127.0.0.1', port } : { socket: options.unixSocket };
  await waitFor(async () => (await probeRfb(address, 500)).status === 'up', `Xvnc :${display} on ${formatAddress(address)}`);

  return {
    display,
    port,
    process: child,
    async paint(colour) {
      const painter = spawn('xsetroot', ['-display', `:${display}`, '-solid', colour], { stdio: 'inherit' });
      const [code] = (await once(painter, 'exit')) as [number | null];
      if (code !== 0) throw new Error(`xsetroot -solid ${colour} on :${display} exited with ${code}`);
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
  };
}
