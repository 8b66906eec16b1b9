/**
 * Authentication, one object per gateway: it decides who a request comes from (login
 * cookie, trusted proxy headers, or nobody in mode `none`), runs logins with throttling,
 * checks API keys, and holds the ticket authority.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/schema.js';
import { PRINCIPAL_NAME } from '../config/names.js';
import type { CoordinationStore } from '../coordination/store.js';
import { clientKey } from '../net/cidr.js';
import { ANONYMOUS, type Identity } from './identity.js';
import { LoginCookies, type Login } from './login-cookie.js';
import { ProxyTrust, type RequestOrigin } from './proxy.js';
import { LoginThrottle } from './throttle.js';
import { TicketAuthority } from './tickets.js';
import { UserDirectory, type User } from './users.js';

/** `busy`: too many passwords are being checked gateway-wide; try again in a moment. */
export type LoginResult = { ok: true; setCookie: string } | { ok: false; retryAfter: number; busy?: true };

/**
 * Password checks under way at once, over all addresses. Each costs ~50 ms of CPU and 19 MiB
 * on libuv's thread pool, which file reads and DNS lookups share: a flood of logins from many
 * addresses must not queue there without end.
 */
const MAX_CONCURRENT_CHECKS = 32;

export class Auth {
  readonly mode: Config['auth']['mode'];
  readonly proxy: ProxyTrust;
  readonly tickets: TicketAuthority | undefined;
  readonly #config: Config['auth'];
  readonly #users: UserDirectory | undefined;
  readonly #cookies: LoginCookies;
  readonly #throttle: LoginThrottle;
  readonly #apiKeys: Buffer[];
  /** Shares used tickets, logouts and (across nodes) failed logins. */
  readonly #store: CoordinationStore;
  #checking = 0;

  private constructor(config: Config, users: UserDirectory | undefined, store: CoordinationStore) {
    const used = store.oneTime;
    this.#store = store;
    this.mode = config.auth.mode;
    this.#config = config.auth;
    this.#users = users;
    this.proxy = new ProxyTrust(config.trustProxy, config.basePath);
    this.tickets = TicketAuthority.from(config.tickets, used);
    this.#cookies = new LoginCookies(config.auth.secret, config.auth.sessionTtlMs, used);
    this.#throttle = new LoginThrottle({
      maxFailures: config.auth.maxFailedLogins,
      windowMs: config.auth.failedLoginWindowMs,
      blockMs: config.auth.failedLoginBlockMs,
    });
    this.#apiKeys = config.tickets.apiKeys.map((hash) => Buffer.from(hash.slice('sha256:'.length), 'hex'));
  }

  /** Reads the users file (mode `password`) and the ticket keys; throws with the reason if one is bad. */
  static async create(config: Config, store: CoordinationStore): Promise<Auth> {
    const users = config.auth.mode === 'password' ? await UserDirectory.load(config.auth.usersFile as string) : undefined;
    return new Auth(config, users, store);
  }

  /** Re-read the users file (SIGHUP); on error the current users stay. */
  async reload(): Promise<void> {
    await this.#users?.reload();
  }

  /** Who the request comes from, or undefined if it is not authenticated. */
  async identify(req: IncomingMessage, origin: RequestOrigin): Promise<Identity | undefined> {
    switch (this.mode) {
      case 'none':
        return ANONYMOUS;
      case 'header':
        return origin.viaTrustedProxy ? this.#fromHeaders(req) : undefined;
      case 'password': {
        const login = await this.#cookies.read(req);
        const user = login && this.#users?.get(login.user);
        if (!user || !login || login.credential !== this.#cookies.credentialTag(user.passwordHash)) return undefined;
        return { user: user.name, groups: user.groups, via: 'password', login: login.id, credential: login.credential };
      }
    }
  }

  #fromHeaders(req: IncomingMessage): Identity | undefined {
    const user = single(req.headers[this.#config.userHeader]);
    if (!user || !PRINCIPAL_NAME.test(user)) return undefined;
    const groups = (single(req.headers[this.#config.groupsHeader]) ?? '')
      .split(',')
      .map((g) => g.trim())
      .filter((g) => PRINCIPAL_NAME.test(g));
    return { user, groups, via: 'header' };
  }

  /**
   * Seconds until this address may try a password or API key again; 0 if it may now. The
   * node's own throttle counts every attempt, including those still being checked; in a
   * cluster the store also counts failures on every node, so moving between nodes gains nothing.
   */
  async retryAfter(origin: RequestOrigin): Promise<number> {
    const own = this.#throttle.retryAfter(origin.address);
    if (!this.#store.shared) return own;
    return Math.max(own, Math.ceil((await this.#store.loginBlockedFor(clientKey(origin.address))) / 1000));
  }

  /** In a cluster, count a failure for every node too (the node's own throttle has counted it already). */
  async #failed(origin: RequestOrigin): Promise<void> {
    if (!this.#store.shared) return;
    const { maxFailedLogins: maxFailures, failedLoginWindowMs: windowMs, failedLoginBlockMs: blockMs } = this.#config;
    await this.#store.loginFailed(clientKey(origin.address), { maxFailures, windowMs, blockMs }).catch(() => {}); // the node's own count stands meanwhile
  }

  async login(origin: RequestOrigin, user: string, password: string): Promise<LoginResult> {
    const blocked = await this.retryAfter(origin);
    if (blocked > 0) return { ok: false, retryAfter: blocked };
    if (this.#checking >= MAX_CONCURRENT_CHECKS) return { ok: false, retryAfter: 1, busy: true };
    // Counted while being checked: a burst of concurrent guesses would otherwise all pass the test above.
    if (!this.#throttle.begin(origin.address)) return { ok: false, retryAfter: 1 };
    let found: User | undefined;
    this.#checking += 1;
    try {
      found = await this.#users?.verify(user, password);
    } finally {
      this.#checking -= 1;
      // A success leaves the address's failures as they are: logging in to one's own
      // account between guesses at another must not reset the count.
      this.#throttle.end(origin.address, found ? 'succeeded' : 'failed');
    }
    if (!found) {
      await this.#failed(origin);
      return { ok: false, retryAfter: await this.retryAfter(origin) };
    }
    return { ok: true, setCookie: await this.#cookies.issue(found, origin) };
  }

  /** Revoke the request's login; returns it, and the Set-Cookie value that clears the cookie. */
  async logout(req: IncomingMessage, origin: RequestOrigin): Promise<{ login: Login | undefined; setCookie: string }> {
    const login = await this.#cookies.read(req);
    return { login, setCookie: await this.#cookies.revoke(login, origin) };
  }

  /** Whether a password-mode identity still has its user, with the same password, in the users file. */
  stillKnows(identity: Identity): boolean {
    if (identity.via !== 'password') return true;
    const user = this.#users?.get(identity.user);
    return user !== undefined && identity.credential === this.#cookies.credentialTag(user.passwordHash);
  }

  /** Whether the request carries one of the configured API keys; failures count like failed logins. */
  checkApiKey(req: IncomingMessage, origin: RequestOrigin): boolean {
    const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(req.headers.authorization ?? '');
    const digest = match?.[1] ? createHash('sha256').update(match[1]).digest() : undefined;
    const ok = digest !== undefined && this.#apiKeys.some((key) => timingSafeEqual(key, digest));
    if (!ok) {
      this.#throttle.failed(origin.address);
      void this.#failed(origin);
    }
    return ok;
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value?.trim();
}

/** The hash of an API key, as `tickets.apiKeys` holds it. */
export function hashApiKey(key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('hex')}`;
}
