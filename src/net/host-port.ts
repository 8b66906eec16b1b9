/**
 * Host and port as operators and users write them: strict parsing, so that what is checked
 * against the rules is exactly what is connected to, and which hosts are this machine only.
 */
import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
/** A last label that is all digits or hex: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`. */
const NUMERIC_LAST_LABEL = /(^|\.)(0x[0-9a-f]*|\d+)\.?$/i;

/**
 * A host name or canonical IP literal. Numeric spellings that resolvers would quietly turn
 * into addresses (decimal, octal, hex, shortened dotted forms) are rejected, so what is
 * checked against the rules is exactly what is connected to.
 */
export function isValidHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  return DNS_NAME.test(host) && !NUMERIC_LAST_LABEL.test(host);
}

/** Parse `host:port` or `[v6]:port`. Returns undefined for anything else. */
export function parseHostPort(text: string, options: { allowPortZero?: boolean } = {}): HostPort | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  if (match[1] !== undefined && isIP(host) !== 6) return undefined;
  if (!isValidHost(host)) return undefined;
  if (port > 65535 || (port === 0 && !options.allowPortZero)) return undefined;
  return { host, port };
}

/**
 * websockify's `host:port`, as its token files and command line take it: split at the last
 * colon, so an IPv6 address may come with brackets or without. Undefined for anything else.
 */
export function parseWebsockifyHostPort(text: string): HostPort | undefined {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const host = text.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return parseHostPort(`${isIP(host) === 6 ? `[${host}]` : host}${text.slice(colon)}`);
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|::1)$/i;

/** Whether a listen host only takes connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOST.test(host);
}
