/**
 * Behind a reverse proxy the TCP peer is the proxy. X-Forwarded-For/Proto/Host/Prefix, or the
 * standard Forwarded header (RFC 7239) when those are absent, are believed only when the peer
 * is in `trustProxy`; anyone else could write them.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { CidrSet, normalizeAddress } from '../net/cidr.js';

/** What the gateway believes about where a request came from. */
export interface RequestOrigin {
  /** The client's address: the peer, or the first untrusted hop in X-Forwarded-For. */
  readonly address: string;
  /** Whether the request came from a trusted proxy. */
  readonly viaTrustedProxy: boolean;
  /** Whether the browser reached us over TLS (ours, or the proxy's). */
  readonly secure: boolean;
  /** The host the browser asked for. */
  readonly host: string | undefined;
  /**
   * Where the gateway's root is in the browser's URLs ("" at the root of the origin, else like
   * "/desktops"): a trusted proxy's X-Forwarded-Prefix (a prefix it stripped), then the mount
   * point of a host application (Express's `req.baseUrl`), then `basePath`.
   */
  readonly prefix: string;
}

/** A URL path prefix without a trailing slash: "/desktops", "/a/b"; "" for none. */
const PREFIX = /^(?:\/[A-Za-z0-9._~-]+)*$/; // what basePath allows: nothing that could end a cookie attribute

export class ProxyTrust {
  readonly #trusted: CidrSet;
  readonly #basePath: string;

  constructor(cidrs: readonly string[], basePath = '') {
    this.#trusted = new CidrSet(cidrs);
    this.#basePath = basePath;
  }

  trusts(address: string): boolean {
    return this.#trusted.has(address);
  }

  describe(req: IncomingMessage): RequestOrigin {
    const peer = normalizeAddress(req.socket.remoteAddress ?? 'unknown');
    const tls = Boolean((req.socket as Partial<TLSSocket>).encrypted);
    const mount = mountPoint(req);
    if (!this.trusts(peer)) return { address: peer, viaTrustedProxy: false, secure: tls, host: req.headers.host, prefix: mount + this.#basePath };
    // A proxy that writes Forwarded is believed through it alone: X-Forwarded-* beside it could be the client's own.
    const standard = parseForwarded(req.headers.forwarded);
    // Walk the hops from the right: each was written by the one after it, and only trusted
    // hops are believed about who came before them.
    const hops = standard.length > 0 ? standard.map((element) => element.for ?? '') : headerList(req.headers['x-forwarded-for']);
    let address = peer;
    while (hops.length > 0 && this.trusts(address)) {
      const hop = normalizeAddress(withoutPort(hops.pop() as string));
      if (isIP(hop) === 0) break;
      address = hop;
    }
    const last = standard.at(-1);
    const proto = last ? last.proto : headerList(req.headers['x-forwarded-proto']).at(-1);
    const host = (last ? last.host : headerList(req.headers['x-forwarded-host']).at(-1)) ?? req.headers.host;
    const forwarded = headerList(req.headers['x-forwarded-prefix']).at(-1)?.replace(/\/+$/, '') ?? '';
    const prefix = (PREFIX.test(forwarded) ? forwarded : '') + mount + this.#basePath;
    return { address, viaTrustedProxy: true, secure: proto ? proto === 'https' : tls, host, prefix };
  }
}

/** Where a host application mounted the gateway, if it says so (Express sets `req.baseUrl`). */
function mountPoint(req: IncomingMessage): string {
  const baseUrl = (req as { baseUrl?: unknown }).baseUrl;
  return typeof baseUrl === 'string' && PREFIX.test(baseUrl) ? baseUrl : '';
}

type ForwardedElement = Partial<Record<'for' | 'proto' | 'host', string>>;

/** `Forwarded: for=192.0.2.60;proto=https;host=desktops.example.com, for="[2001:db8::7]"`: one element per hop. */
function parseForwarded(value: string | undefined): ForwardedElement[] {
  if (!value) return [];
  return value.split(',').map((element) => {
    const pairs: ForwardedElement = {};
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim().toLowerCase();
      const raw = pair.slice(eq + 1).trim();
      if (eq > 0 && (name === 'for' || name === 'proto' || name === 'host')) pairs[name] = raw.replace(/^"(.*)"$/, '$1');
    }
    return pairs;
  });
}

function headerList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
}

/** Some proxies write a hop as `IP:port` or `[IPv6]:port`. */
function withoutPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed?.[1]) return bracketed[1];
  const v4WithPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop);
  return v4WithPort?.[1] ?? hop;
}
