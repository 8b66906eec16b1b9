/**
 * The desktops this gateway offers, and the one address a request may be connected to:
 * a configured desktop by name, or an ad-hoc `host:port` or `unix:/path` inside the
 * operator's rules. Nothing here opens a connection: a refused request never reaches the
 * network (DNS aside, for allowed host names), nor a socket path outside the rules' directories.
 */
import { lookup } from 'node:dns/promises';
import { realpath } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { DesktopRules, Principals } from '../auth/identity.js';
import type { RecordSettings } from '../config/schema.js';
import type { Sharing } from '../coordination/store.js';
import { describeSocketError, errors } from '../errors.js';
import type { ConnectTarget } from '../relay/connector.js';
import type { HostPort } from '../net/host-port.js';
import { formatAddress, socketPathProblem, type VncAddress } from '../net/address.js';
import type { VncSettings } from '../rfb/handshake.js';
import type { TargetPolicy } from './targets.js';

/** A desktop listens on `host` and `port`, or on a Unix `socket`. */
export type Desktop = DesktopFields & VncAddress;

interface DesktopFields extends DesktopRules {
  name: string;
  description?: string | undefined;
  /** Credentials and TLS towards its VNC server; none: the viewer's own handshake over the plain connection. */
  vnc?: VncSettings | undefined;
  /** How its sessions share it; `shared` when unset. */
  sharing?: Sharing | undefined;
  /** Who may take it at once (see Coordinator). */
  takeover?: Principals | undefined;
  /** Record its sessions, and how. */
  record?: RecordSettings | undefined;
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
  async resolveTarget(target: VncAddress, gatewayPort: number): Promise<ConnectTarget> {
    if (!this.#policy.enabled) throw errors.targetsNotEnabled();
    if (target.socket !== undefined) return this.#resolveSocket(target.socket);
    return this.#resolveHost(target, gatewayPort);
  }

  async #resolveHost(target: HostPort, gatewayPort: number): Promise<ConnectTarget> {
    const name = formatAddress(target);
    // Check every address the name resolves to and connect to the one that was checked,
    // so a name cannot be re-pointed between the check and the connection.
    for (const address of await resolveAddresses(target.host, name)) {
      if (this.#policy.allows(address, target.port, gatewayPort)) return { kind: 'target', name, host: address, port: target.port };
    }
    throw errors.targetNotAllowed(name);
  }

  /**
   * A socket path is judged as written first, so one outside every rule's directory is never
   * looked at on disk; then where it really leads, so a symlink cannot leave the directory
   * (itself resolved alike). The real path is the one connected to.
   */
  async #resolveSocket(path: string): Promise<ConnectTarget> {
    const name = formatAddress({ socket: path });
    if (!this.#policy.allowsSocket(path)) throw errors.targetNotAllowed(name);
    const [real, ...directories] = await Promise.all([
      realSocketPath(path, name),
      ...this.#policy.socketDirectories.map((directory) => realpath(directory).catch(() => directory)),
    ]);
    if (!this.#policy.allowsSocket(real, directories)) throw errors.targetNotAllowed(name);
    return { kind: 'target', name, socket: real };
  }
}

async function realSocketPath(path: string, name: string): Promise<string> {
  const real = await realpath(path).catch((err: unknown) => {
    throw errors.unreachable(`Target ${name}`, describeSocketError(err)).causedBy(err);
  });
  // Node would cut a longer one short and connect to another path.
  if (socketPathProblem(real)) throw errors.unreachable(`Target ${name}`, 'its real path is too long for a Unix socket');
  return real;
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
