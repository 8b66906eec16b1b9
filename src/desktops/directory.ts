/**
 * Resolves what a WebSocket asks for (`?desktop=NAME` or `?target=host:port`) to the one
 * address the gateway may connect to, or refuses with the documented error. Nothing here
 * opens a connection: a refused request never reaches the network (DNS aside, for
 * allowed host names).
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DesktopRules } from '../auth/identity.js';
import type { DesktopConfig } from '../config/schema.js';
import { describeSocketError, GatewayError } from '../errors.js';
import type { ConnectTarget } from '../relay/connector.js';
import { parseHostPort, type TargetPolicy } from './targets.js';

export interface Desktop extends DesktopRules {
  name: string;
  host: string;
  port: number;
  description?: string | undefined;
}

/** How desktops may be named: they appear in URLs and close reasons. */
export const DESKTOP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class DesktopDirectory {
  readonly #desktops = new Map<string, Desktop>();
  readonly #policy: TargetPolicy;

  constructor(desktops: readonly DesktopConfig[], policy: TargetPolicy) {
    for (const desktop of desktops) this.#desktops.set(desktop.name, desktop);
    this.#policy = policy;
  }

  add(desktop: Desktop): void {
    this.#desktops.set(desktop.name, desktop);
  }

  list(): Desktop[] {
    return [...this.#desktops.values()];
  }

  get(name: string): Desktop | undefined {
    return this.#desktops.get(name);
  }

  /** The target of a WebSocket request, from its query parameters and the port it came in on. */
  async resolve(query: URLSearchParams, gatewayPort: number): Promise<ConnectTarget> {
    const desktops = query.getAll('desktop');
    const targets = query.getAll('target');
    if (desktops.length + targets.length !== 1) {
      throw new GatewayError('DG_ERR_BAD_REQUEST', 'Name exactly one desktop (?desktop=NAME) or one target (?target=HOST:PORT)');
    }
    return desktops[0] !== undefined ? this.#resolveDesktop(desktops[0]) : this.#resolveTarget(targets[0] ?? '', gatewayPort);
  }

  #resolveDesktop(name: string): ConnectTarget {
    if (!DESKTOP_NAME.test(name)) {
      throw new GatewayError('DG_ERR_BAD_REQUEST', 'Malformed desktop name: use letters, digits, ".", "_" and "-"');
    }
    const desktop = this.#desktops.get(name);
    if (!desktop) throw new GatewayError('DG_ERR_UNKNOWN_DESKTOP', `There is no desktop named '${name}'`);
    return { kind: 'desktop', name: desktop.name, host: desktop.host, port: desktop.port };
  }

  async #resolveTarget(text: string, gatewayPort: number): Promise<ConnectTarget> {
    const parsed = parseHostPort(text);
    if (!parsed) throw new GatewayError('DG_ERR_BAD_REQUEST', 'Malformed target: expected HOST:PORT or [IPv6]:PORT');
    const name = `${parsed.host}:${parsed.port}`;
    if (!this.#policy.enabled) throw new GatewayError('DG_ERR_FORBIDDEN', 'Ad-hoc targets are not enabled on this gateway');
    // Check every address the name resolves to and connect to the one that was checked,
    // so a name cannot be re-pointed between the check and the connection.
    for (const address of await resolveAddresses(parsed.host, name)) {
      if (this.#policy.allows(address, parsed.port, gatewayPort)) return { kind: 'target', name, host: address, port: parsed.port };
    }
    throw new GatewayError('DG_ERR_FORBIDDEN', `Target ${name} is not allowed by this gateway's rules`);
  }
}

async function resolveAddresses(host: string, name: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  try {
    const found = await lookup(host, { all: true, verbatim: true });
    return found.map((entry) => entry.address);
  } catch (err) {
    throw new GatewayError('DG_ERR_CONNECT_FAILED', `Target ${name} is not reachable (${describeSocketError(err)})`, { cause: err });
  }
}
