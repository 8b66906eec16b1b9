/**
 * Password mode over HTTP for tests: a users file with groups that a test can rewrite in
 * place (then `gateway.reload()`), the login form posted as a browser posts it, and the
 * login cookie taken from the answer.
 */
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { LOGIN_COOKIE } from '../../src/auth/login-cookie.js';
import { hashPassword } from '../../src/auth/users.js';
import { form, send, type Reply } from './http-client.js';

export interface TestUser {
  password: string;
  groups?: string[];
}

// Hashing costs 19 MiB and a few tens of milliseconds: each password once per test file.
const hashes = new Map<string, Promise<string>>();

/** The text of a users file holding these users. */
export async function usersYaml(users: Record<string, TestUser>): Promise<string> {
  const entries = await Promise.all(
    Object.entries(users).map(async ([name, { password, groups = [] }]) => {
      if (!hashes.has(password)) hashes.set(password, hashPassword(password));
      return [name, { password: await hashes.get(password), groups }] as const;
    }),
  );
  return stringify({ users: Object.fromEntries(entries) });
}

/** Write (or overwrite) a users file holding these users. */
export async function writeUsers(file: string, users: Record<string, TestUser>): Promise<void> {
  await writeFile(file, await usersYaml(users));
}

export interface LoginOptions {
  next?: string;
  origin?: string;
  ca?: Buffer;
  localAddress?: string;
}

/** POST /login with the form fields the login page has. */
export function logIn(baseUrl: string, user: string, password: string, options: LoginOptions = {}): Promise<Reply> {
  const { next, origin, ...rest } = options;
  const { body, headers } = form({ user, password, ...(next === undefined ? {} : { next }) });
  return send(`${baseUrl}/login`, { ...rest, body, headers: { ...headers, ...(origin ? { Origin: origin } : {}) } });
}

/** The login cookie's Set-Cookie header; fails if the answer sets none. */
export function loginSetCookie(reply: Reply): string {
  const header = reply.headers['set-cookie']?.find((c) => c.startsWith(`${LOGIN_COOKIE}=`));
  if (!header) throw new Error(`expected a ${LOGIN_COOKIE} cookie, got HTTP ${reply.status} ${JSON.stringify(reply.headers['set-cookie'])}`);
  return header;
}

/** The Cookie header a browser sends back after this answer. */
export function cookieFrom(reply: Reply): { Cookie: string } {
  return { Cookie: loginSetCookie(reply).split(';', 1)[0] as string };
}

/** Log in and return the Cookie header; fails unless the login succeeds. */
export async function loggedIn(baseUrl: string, user: string, password: string, options: LoginOptions = {}): Promise<{ Cookie: string }> {
  const reply = await logIn(baseUrl, user, password, options);
  if (reply.status !== 303) throw new Error(`login as ${user} answered ${reply.status}`);
  return cookieFrom(reply);
}
