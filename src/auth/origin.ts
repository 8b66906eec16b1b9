/**
 * The Origin check on WebSocket upgrades. Browsers send `Origin` with every WebSocket
 * request, so a page on another site cannot open sessions with the user's network
 * position (cross-site WebSocket hijacking). Non-browser clients send none; they pass
 * unless the operator requires an Origin.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { errors, type GatewayError } from '../errors.js';
import { normalizeOrigin } from '../net/origin.js';
import type { RequestOrigin } from './proxy.js';

export interface OriginPolicy {
  /** Origins besides the gateway's own, e.g. `https://console.example.com`. */
  allowedOrigins: readonly string[];
  requireOrigin: boolean;
}

/** Why the request's Origin is refused, or undefined when it may proceed. */
export function refuseOrigin(req: IncomingMessage, policy: OriginPolicy, from: RequestOrigin): GatewayError | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return policy.requireOrigin ? errors.originRequired() : undefined;
  const normalized = normalizeOrigin(origin);
  if (normalized !== undefined && (normalized === ownOrigin(from) || policy.allowedOrigins.includes(normalized))) return undefined;
  return errors.foreignOrigin(origin.slice(0, 100), ownOrigin(from) ?? 'unknown (no Host header)');
}

/**
 * Form posts (login, logout) come from the gateway's own pages only. Our pages send
 * `Referrer-Policy: no-referrer`, under which browsers post their forms with `Origin: null`;
 * then the browser's `Sec-Fetch-Site` tells whether the form was on this origin.
 */
export function isForeignPost(req: IncomingMessage, from: RequestOrigin): boolean {
  const origin = req.headers.origin;
  if (origin === 'null') return req.headers['sec-fetch-site'] !== 'same-origin';
  return origin !== undefined && normalizeOrigin(origin) !== ownOrigin(from);
}

/** The gateway's own origin as this request shows it: Host, or a trusted proxy's X-Forwarded-Proto and -Host. */
export function ownOrigin(from: RequestOrigin): string | undefined {
  return from.host ? normalizeOrigin(`${from.secure ? 'https' : 'http'}://${from.host}`) : undefined;
}

/**
 * DNS rebinding: a page on another site can point a name of its own at 127.0.0.1, and the
 * browser then counts the gateway as that page's origin, so the Origin check passes. Logins
 * and proxies are bound to our real names; in mode `none` nothing else stands in the way, so
 * there a request must name an address, `localhost`, or the host of `publicUrl`.
 */
export function hostGuard(config: { auth: { mode: string }; publicUrl?: string | undefined }): (from: RequestOrigin) => GatewayError | undefined {
  if (config.auth.mode !== 'none') return () => undefined;
  const ownName = config.publicUrl === undefined ? undefined : new URL(config.publicUrl).hostname;
  return (from) => {
    if (from.host === undefined) return undefined; // not a browser
    const name = hostnameOf(from.host);
    if (name !== undefined && (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost') || name === ownName)) return undefined;
    return errors.foreignHost(from.host.slice(0, 100));
  };
}

function hostnameOf(host: string): string | undefined {
  try {
    return new URL(`http://${host}`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}
