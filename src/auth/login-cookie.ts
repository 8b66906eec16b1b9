/**
 * Password mode's login: a signed cookie (HS256 JWT: `sub`, `jti`, `iat`, `exp`, `cred`),
 * HttpOnly, SameSite=Strict, Secure under TLS. Logging out revokes its id until it would
 * have expired, so a copied cookie stops working too; a login older than the revocation
 * store's memory is refused (see one-time.ts). `cred` binds the login to the password it
 * was made with: a new password in the users file ends it.
 */
import { createHmac, createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import type { OneTimeStore } from './one-time.js';

export const LOGIN_COOKIE = 'deskgate_login';

export interface Login {
  readonly user: string;
  readonly id: string;
  readonly expiresAt: number;
  /** The tag of the password hash the login was made with (see credentialTag). */
  readonly credential: string;
}

export class LoginCookies {
  readonly #key: KeyObject;
  readonly #ttlMs: number;
  readonly #revoked: OneTimeStore;

  /** Without a secret, a random key: logins then last until the process restarts. */
  constructor(secret: string | undefined, ttlMs: number, revoked: OneTimeStore) {
    this.#key = createSecretKey(secret ? Buffer.from(secret) : randomBytes(32));
    this.#ttlMs = ttlMs;
    this.#revoked = revoked;
  }

  /** A Set-Cookie value logging this user in, bound to the password hash they logged in with. */
  async issue(user: { name: string; passwordHash: string }, where: CookieScope): Promise<string> {
    const now = Date.now();
    const token = await new SignJWT({ cred: this.credentialTag(user.passwordHash) })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.name)
      .setJti(randomUUID())
      .setIssuedAt(now / 1000) // to the millisecond: compared with the moment the revocation store began
      .setExpirationTime(Math.floor((now + this.#ttlMs) / 1000))
      .sign(this.#key);
    return serialize(token, Math.floor(this.#ttlMs / 1000), where);
  }

  /** The login the request's cookie carries, if it is genuine, unexpired and not logged out. */
  async read(req: IncomingMessage): Promise<Login | undefined> {
    const token = readCookie(req.headers.cookie, LOGIN_COOKIE);
    if (!token) return undefined;
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#key, { algorithms: ['HS256'], requiredClaims: ['sub', 'jti', 'iat', 'exp'] }));
    } catch {
      return undefined;
    }
    // A ticket is an HS256 JWT with `sub` too: signed with the same secret, it would pass as a login.
    if ('desk' in payload || typeof payload.cred !== 'string') return undefined;
    if ((payload.iat as number) * 1000 < this.#revoked.since) return undefined;
    const login = { user: payload.sub as string, id: payload.jti as string, expiresAt: (payload.exp as number) * 1000, credential: payload.cred };
    // A revocation store that cannot be reached throws (StoreUnavailable): the request is refused with 503, not taken as logged out.
    return (await this.#revoked.has(`login:${login.id}`)) ? undefined : login;
  }

  /** A keyed digest of a password hash: it tells one password from another, and nothing about either. */
  credentialTag(passwordHash: string): string {
    return createHmac('sha256', this.#key).update(passwordHash).digest('base64url').slice(0, 22);
  }

  /** Log out: revoke the login and return the Set-Cookie value that clears it. */
  async revoke(login: Login | undefined, where: CookieScope): Promise<string> {
    if (login) await this.#revoked.claim(`login:${login.id}`, login.expiresAt);
    return serialize('', 0, where);
  }
}

/** Where the cookie goes: over TLS only, when the browser came over TLS; below the gateway's prefix only. */
export interface CookieScope {
  readonly secure: boolean;
  /** The gateway's root in the browser's URLs ("" at the root of the origin). */
  readonly prefix: string;
}

function serialize(value: string, maxAgeSeconds: number, { secure, prefix }: CookieScope): string {
  return `${LOGIN_COOKIE}=${value}; Path=${prefix || '/'}; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** One cookie's value from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
