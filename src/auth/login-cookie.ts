/**
 * Password mode's login: a signed cookie (HS256 JWT: `sub`, `jti`, `exp`), HttpOnly,
 * SameSite=Strict, Secure under TLS. Logging out revokes its id until it would have
 * expired, so a copied cookie stops working too.
 */
import { createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import type { OneTimeStore } from './one-time.js';

export const LOGIN_COOKIE = 'deskgate_login';

export interface Login {
  readonly user: string;
  readonly id: string;
  readonly expiresAt: number;
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

  /** A Set-Cookie value logging this user in. */
  async issue(user: string, secure: boolean): Promise<string> {
    const expiresAt = Math.floor((Date.now() + this.#ttlMs) / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user)
      .setJti(randomUUID())
      .setExpirationTime(expiresAt)
      .sign(this.#key);
    return serialize(token, Math.floor(this.#ttlMs / 1000), secure);
  }

  /** The login the request's cookie carries, if it is genuine, unexpired and not logged out. */
  async read(req: IncomingMessage): Promise<Login | undefined> {
    const token = readCookie(req.headers.cookie, LOGIN_COOKIE);
    if (!token) return undefined;
    try {
      const { payload } = await jwtVerify(token, this.#key, { algorithms: ['HS256'], requiredClaims: ['sub', 'jti', 'exp'] });
      // A ticket is an HS256 JWT with `sub` too: signed with the same secret, it would pass as a login.
      if ('desk' in payload) return undefined;
      const login = { user: payload.sub as string, id: payload.jti as string, expiresAt: (payload.exp as number) * 1000 };
      return (await this.#revoked.has(`login:${login.id}`)) ? undefined : login;
    } catch {
      return undefined;
    }
  }

  /** Log out: revoke the login and return the Set-Cookie value that clears it. */
  async revoke(login: Login | undefined, secure: boolean): Promise<string> {
    if (login) await this.#revoked.claim(`login:${login.id}`, login.expiresAt);
    return serialize('', 0, secure);
  }
}

function serialize(value: string, maxAgeSeconds: number, secure: boolean): string {
  return `${LOGIN_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** One cookie's value from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
