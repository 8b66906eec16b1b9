/**
 * The desktops this gateway offers, and the one address a request may be connected to:
 * a configured desktop by name, or an ad-hoc `host:port` inside the operator's rules.
 * Nothing here opens a connection: a refused request never reaches the network (DNS aside,
 * for allowed host names).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DesktopRules, Principals } from '../auth/identity.js';
import type { Sharing } from '../coordination/store.js';
import { describeSocketError, errors } from '../errors.js';
import type { ConnectTarget } from '../relay/connector.js';
import type { HostPort } from '../net/host-port.js';
import type { VncSettings } from '../rfb/handshake.js';
import type { TargetPolicy } from './targets.js';

export interface Desktop extends DesktopRules {
  name: string;
  host: string;
  port: number;
  description?: string | undefined;
  /** Credentials and TLS towards its VNC server; none: the viewer's own handshake over plain TCP. */
  vnc?: VncSettings | undefined;
  /** How its sessions share it; `shared` when unset. */
  sharing?: Sharing | undefined;
  /** Who may take it at once (see Coordinator). */
  takeover?: Principals | undefined;
  /** Left off the dashboard and the desktop list: a token file's desktop, opened by who knows its token. */
  unlisted?: boolean | undefined;
}

export class DesktopDirectory {
  readonly #desktops = new Map<string, Desktop>();
  readonly #policy: TargetPolicy;

  constructor(desktops: readonly Desktop[], policy: TargetPolicy) {
    for (const desktop of desktops) this.#desktops.set(desktop.name, desktop);
    this.#policy = policy;
  }

  /** Add a desktop, or replace the one of that name: sessions already open keep the address they connected to. */
  add(desktop: Desktop): void {
    this.#desktops.set(desktop.name, desktop);
  }

  /** Offer a desktop no more; its open sessions go on. False if there was none of that name. */
  remove(name: string): boolean {
    return this.#desktops.delete(name);
  }

  list(): Desktop[] {
    return [...this.#desktops.values()];
  }

  get(name: string): Desktop | undefined {
    return this.#desktops.get(name);
  }

  /** An ad-hoc target's address, if the rules allow it; `gatewayPort` is the port the request came in on. */
  async resolveTarget(target: HostPort, gatewayPort: number): Promise<ConnectTarget> {
    const name = `${target.host}:${target.port}`;
    if (!this.#policy.enabled) throw errors.targetsNotEnabled();
    // Check every address the name resolves to and connect to the one that was checked,
    // so a name cannot be re-pointed between the check and the connection.
    for (const address of await resolveAddresses(target.host, name)) {
      if (this.#policy.allows(address, target.port, gatewayPort)) return { kind: 'target', name, host: address, port: target.port };
    }
    throw errors.targetNotAllowed(name);
  }
}

async function resolveAddresses(host: string, name: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  try {
    const found = await lookup(host, { all: true, verbatim: true });
    return found.map((entry) => entry.address);
  } catch (err) {
    throw errors.unreachable(`Target ${name}`, describeSocketError(err)).causedBy(err);
  }
}
