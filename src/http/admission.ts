/**
 * The one access decision, for viewer pages and WebSocket upgrades alike: who is asking (a
 * ticket, a login, trusted headers, or nobody in mode `none`), whether they may open what
 * they ask for, and how (full control or view-only). It answers with a grant, or throws the
 * catalogue error that refuses the request. Limits and using up a ticket belong to the
 * upgrade alone (see upgrade.ts): a page opens no session.
 */
import type { IncomingMessage } from 'node:http';
import type { Auth } from '../auth/auth.js';
import { accessTo, type Identity } from '../auth/identity.js';
import type { RequestOrigin } from '../auth/proxy.js';
import type { DesktopDirectory } from '../desktops/directory.js';
import { errors, GatewayError } from '../errors.js';
import { addressOf } from '../net/address.js';
import type { ConnectTarget } from '../relay/connector.js';
import type { Grant } from '../sessions/session-manager.js';
import type { SessionRequest } from './session-request.js';

export class Admission {
  readonly #auth: Auth;
  readonly #directory: DesktopDirectory;

  constructor(auth: Auth, directory: DesktopDirectory) {
    this.#auth = auth;
    this.#directory = directory;
  }

  /** `gatewayPort`: the port the request came in on, which ad-hoc targets may never be. */
  async decide(req: IncomingMessage, from: RequestOrigin, request: SessionRequest, gatewayPort: number): Promise<Grant> {
    const { wanted, ticket: token } = request;
    if (token !== undefined && wanted.kind === 'desktop') {
      // The ticket first: without one, a stranger must not learn which desktop names exist.
      if (!this.#auth.tickets) throw errors.ticketsNotEnabled();
      const ticket = await this.#auth.tickets.check(token, wanted.name);
      const identity: Identity = { user: ticket.user, groups: [], via: 'ticket' };
      return { address: from.address, identity, viewOnly: ticket.viewOnly, target: this.#desktop(wanted.name, identity).target, ticket };
    }
    const identity = await this.#auth.identify(req, from);
    if (!identity) throw this.#auth.mode === 'password' ? errors.logInFirst() : errors.authenticationRequired();
    if (wanted.kind === 'target') {
      const target = await this.#directory.resolveTarget(wanted, gatewayPort).catch((err: unknown) => {
        throw err instanceof GatewayError ? err.of(identity.user) : err;
      });
      return { address: from.address, identity, viewOnly: false, target };
    }
    const { target, viewOnly } = this.#desktop(wanted.name, identity);
    return { address: from.address, identity, viewOnly, target };
  }

  /** A configured desktop and how this identity may use it; a ticket's own rules come from the ticket. */
  #desktop(name: string, identity: Identity): { target: ConnectTarget; viewOnly: boolean } {
    const desktop = this.#directory.get(name);
    if (!desktop) throw errors.unknownDesktop(name).of(identity.user);
    const access = identity.via === 'ticket' ? 'full' : accessTo(desktop, identity);
    if (access === 'none') throw errors.notAllowed(identity.user, name).of(identity.user);
    return { target: { kind: 'desktop', name, ...addressOf(desktop), vnc: desktop.vnc, record: desktop.record }, viewOnly: access === 'view' };
  }
}
