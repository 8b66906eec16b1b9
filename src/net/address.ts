/**
 * Where a VNC server listens: a TCP host and port, or a Unix socket (websockify's
 * `--unix-target`). Socket paths are checked as the kernel will take them: absolute, no NUL,
 * and short enough for `sun_path`, which Node would otherwise cut short without a word.
 */
import { posix } from 'node:path';
import { parseHostPort, type HostPort } from './host-port.js';

/** One or the other: `socket` set means a Unix socket, and then there is no host or port. */
export type VncAddress = (HostPort & { socket?: undefined }) | { socket: string; host?: undefined; port?: undefined };

/** How a Unix socket is written where a `host:port` could be: `unix:/run/vnc.sock`. */
export const UNIX_PREFIX = 'unix:';

/** The bytes `sun_path` holds on Linux, less the terminating NUL. */
export const SOCKET_PATH_MAX = 107;

/** The address fields alone, for copying an address out of a larger object. */
export function addressOf(address: VncAddress): VncAddress {
  return address.socket !== undefined ? { socket: address.socket } : { host: address.host, port: address.port };
}

/** For logs and names: `unix:/run/vnc.sock` or `host:port`. */
export function formatAddress(address: VncAddress): string {
  return address.socket !== undefined ? `${UNIX_PREFIX}${address.socket}` : `${address.host}:${address.port}`;
}

/** What `net.connect()` and `tls.connect()` take to reach it. */
export function connectOptionsOf(address: VncAddress): { path: string } | HostPort {
  return address.socket !== undefined ? { path: address.socket } : { host: address.host, port: address.port };
}

/** `unix:/PATH` (normalised), `host:port` or `[v6]:port`; undefined for anything else. */
export function parseAddress(text: string): VncAddress | undefined {
  if (!text.startsWith(UNIX_PREFIX)) return parseHostPort(text);
  const socket = normalizePath(text.slice(UNIX_PREFIX.length));
  return socketPathProblem(socket) === undefined ? { socket } : undefined;
}

/** `..`, `.` and repeated or trailing slashes taken out; what the path names is not looked at. */
export function normalizePath(path: string): string {
  return path === '' ? path : posix.normalize(path).replace(/(.)\/$/, '$1');
}

/** What is wrong with a (normalised) socket path, or undefined if the kernel can take it. */
export function socketPathProblem(path: string): string | undefined {
  if (!path.startsWith('/') || path === '/') return 'expected the absolute path of a Unix socket, e.g. /run/vnc/lab.sock';
  if (path.includes('\0')) return 'a Unix socket path cannot hold a NUL byte';
  const bytes = Buffer.byteLength(path);
  if (bytes > SOCKET_PATH_MAX) return `a Unix socket path holds at most ${SOCKET_PATH_MAX} bytes (sun_path); this one has ${bytes}`;
  return undefined;
}

/** Whether `path` lies below `directory` (both absolute and normalised); the directory itself does not. */
export function isInside(path: string, directory: string): boolean {
  return path.startsWith(directory.endsWith('/') ? directory : `${directory}/`);
}
