/**
 * Behind a reverse proxy the TCP peer is the proxy. X-Forwarded-For/Proto/Host are
 * believed only when the peer is in `trustProxy`; anyone else could write them.
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
}

export class ProxyTrust {
  readonly #trusted: CidrSet;

  constructor(cidrs: readonly string[]) {
    this.#trusted = new CidrSet(cidrs);
  }

  trusts(address: string): boolean {
    return this.#trusted.has(address);
  }

  describe(req: IncomingMessage): RequestOrigin {
    const peer = normalizeAddress(req.socket.remoteAddress ?? 'unknown');
    const tls = Boolean((req.socket as Partial<TLSSocket>).encrypted);
    if (!this.trusts(peer)) return { address: peer, viaTrustedProxy: false, secure: tls, host: req.headers.host };
    // Walk X-Forwarded-For from the right: each hop was written by the one after it, and
    // only trusted hops are believed about who came before them.
    const hops = headerList(req.headers['x-forwarded-for']);
    let address = peer;
    while (hops.length > 0 && this.trusts(address)) {
      const hop = normalizeAddress(withoutPort(hops.pop() as string));
      if (isIP(hop) === 0) break;
      address = hop;
    }
    const proto = headerList(req.headers['x-forwarded-proto']).at(-1);
    const host = headerList(req.headers['x-forwarded-host']).at(-1) ?? req.headers.host;
    return { address, viaTrustedProxy: true, secure: proto ? proto === 'https' : tls, host };
  }
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
