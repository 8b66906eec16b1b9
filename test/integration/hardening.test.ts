/**
 * Hardening of authentication and tickets against subtler attacks: the failed-login
 * throttle cannot be outrun by concurrent guesses, reset by logging in to one's own account,
 * or dodged by rotating IPv6 addresses within one /64; a login flood from many addresses
 * does not queue password checks without end; `next` cannot leave the gateway through
 * characters browsers strip; a page on another site cannot reach a loopback gateway by DNS
 * rebinding; a ticket is no login cookie even when both share a secret; a ticket link does not
 * tell strangers which desktops exist; a failed reload changes nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Auth } from '../../src/auth/auth.js';
import { MemoryStore } from '../../src/coordination/memory.js';
import type { RequestOrigin } from '../../src/auth/proxy.js';
import { parseConfig } from '../../src/config/schema.js';
import { loggedIn, logIn, writeUsers } from '../helpers/auth.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { startPeer, type Peer } from '../helpers/tcp-peers.js';
import { newApiKey, requestTicket } from '../helpers/tickets.js';
import { makeCertificate } from '../helpers/tls.js';
import { closeOpenedSockets, upgradeStatus } from '../helpers/ws-client.js';

const PASSWORDS = { alice: 'alice-password-1', mallory: 'mallory-password-2' };
const SECRET = 'one secret for cookies and tickets, 32+ characters';

let dir: string;
let usersFile: string;
let canary: Peer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'deskgate-review-'));
  usersFile = join(dir, 'users.yaml');
  await writeUsers(usersFile, { alice: { password: PASSWORDS.alice }, mallory: { password: PASSWORDS.mallory } });
  canary = await startPeer();
});
afterEach(() => closeOpenedSockets());
afterAll(async () => {
  await canary?.close();
  rmSync(dir, { recursive: true, force: true });
});

function from(address: string): RequestOrigin {
  return { address, viaTrustedProxy: false, secure: false, host: undefined, prefix: '' };
}

describe('the failed-login throttle', () => {
  let auth: Auth;
  beforeAll(async () => {
    auth = await Auth.create(parseConfig({ auth: { mode: 'password', usersFile } }), new MemoryStore({ leaseTtlMs: 15_000 }));
  });

  it('counts logins still being checked: a burst of guesses from one address gets no more than 5 checked', async () => {
    const guesses = [...Array.from({ length: 19 }, (_, i) => `guess ${i}`), PASSWORDS.alice];
    const results = await Promise.all(guesses.map((password) => auth.login(from('10.1.0.1'), 'alice', password)));
    expect(results.filter((r) => r.ok)).toEqual([]);
    expect(await auth.retryAfter(from('10.1.0.1'))).toBeGreaterThan(0);
  });

  it('checks a bounded number of passwords at once over all addresses, and answers the rest busy instead of queueing them', async () => {
    const burst = Array.from({ length: 40 }, (_, i) => auth.login(from(`10.2.0.${i + 1}`), 'alice', PASSWORDS.alice));
    const results = await Promise.all(burst);
    expect(results.filter((r) => r.ok)).toHaveLength(32);
    expect(results.filter((r) => !r.ok)).toEqual(Array.from({ length: 8 }, () => ({ ok: false, retryAfter: 1, busy: true })));
    expect((await auth.login(from('10.2.0.1'), 'alice', PASSWORDS.alice)).ok).toBe(true);
  });

  it("is not reset by logging in to an account of one's own between guesses at another", async () => {
    const attacker = from('10.1.0.2');
    for (let i = 0; i < 3; i++) await auth.login(attacker, 'alice', `guess ${i}`);
    expect((await auth.login(attacker, 'mallory', PASSWORDS.mallory)).ok).toBe(true);
    for (let i = 3; i < 5; i++) await auth.login(attacker, 'alice', `guess ${i}`);
    expect(await auth.retryAfter(attacker)).toBeGreaterThan(0); // 5 failures within the window
  });

  it('holds one IPv6 /64 to one budget, and IPv4-mapped addresses to their IPv4 one', async () => {
    for (let i = 1; i <= 5; i++) await auth.login(from(`2001:db8:aa:bb::${i}`), 'alice', `guess ${i}`);
    expect(await auth.retryAfter(from('2001:db8:aa:bb:ffff:1:2:3'))).toBeGreaterThan(0);
    expect((await auth.login(from('2001:db8:aa:bb:1::9'), 'alice', PASSWORDS.alice)).ok).toBe(false);
    expect(await auth.retryAfter(from('2001:db8:aa:bc::1'))).toBe(0); // the next /64 is someone else
    expect((await auth.login(from('2001:db8:aa:bc::1'), 'alice', PASSWORDS.alice)).ok).toBe(true);
    for (let i = 1; i <= 5; i++) await auth.login(from('::ffff:10.1.0.9'), 'alice', `guess ${i}`);
    expect(await auth.retryAfter(from('10.1.0.9'))).toBeGreaterThan(0);
  });

  it('keeps an address blocked however many other addresses fail after it (its table cannot be flushed)', async () => {
    const blocked = from('10.3.0.1');
    for (let i = 1; i <= 5; i++) await auth.login(blocked, 'alice', `guess ${i}`);
    expect(await auth.retryAfter(blocked)).toBeGreaterThan(0);
    // Wrong API keys are cheap to send: one from each of 100,100 other addresses.
    const wrongKey = { headers: { authorization: 'Bearer dgk_wrong' } } as IncomingMessage;
    for (let i = 0; i < 100_100; i++) auth.checkApiKey(wrongKey, from(`10.${4 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`));
    expect(await auth.retryAfter(blocked)).toBeGreaterThan(0);
    expect((await auth.login(blocked, 'alice', PASSWORDS.alice)).ok).toBe(false);
  });
});

describe('pages in password mode', () => {
  let gw: RunningGateway;
  const apiKey = newApiKey();
  beforeAll(async () => {
    gw = await startGateway({
      auth: { mode: 'password', usersFile, secret: SECRET },
      tickets: { secret: SECRET, apiKeys: [apiKey.hash] },
      desktops: [`lab=127.0.0.1:${canary.port}`],
    });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('never sends a login to another site through characters browsers strip from URLs', async () => {
    const loginUrl = `${gw.httpUrl}/login`;
    const onGateway = (location: string | undefined) => new URL(location ?? '', loginUrl).origin === new URL(gw.httpUrl).origin;
    // Old absolute-path forms, and the relative forms next takes now: `\t//evil` must not become `//evil`.
    const stripped = ['\t', '\n', '\r\n', '\u000b'];
    for (const next of [...stripped.map((c) => `/${c}/evil.example`), ...stripped.map((c) => `${c}//evil.example`)]) {
      const reply = await logIn(gw.httpUrl, 'alice', PASSWORDS.alice, { next, localAddress: '127.0.2.1' });
      expect({ status: reply.status, location: reply.headers.location }, JSON.stringify(next)).toEqual({ status: 303, location: './' });
      expect(onGateway(reply.headers.location), JSON.stringify(next)).toBe(true);
    }
    const cookie = await loggedIn(gw.httpUrl, 'alice', PASSWORDS.alice, { localAddress: '127.0.2.1' });
    for (const next of ['%2F%09%2Fevil.example', '%09%2F%2Fevil.example']) {
      const page = await send(`${loginUrl}?next=${next}`, { headers: cookie });
      expect({ status: page.status, location: page.headers.location }, next).toEqual({ status: 303, location: './' });
      expect(onGateway(page.headers.location), next).toBe(true);
    }
  });

  it('does not take a ticket signed with the same secret as a login cookie', async () => {
    const { ticket } = await requestTicket(gw.httpUrl, apiKey, { desktop: 'lab', user: 'alice' });
    const headers = { Cookie: `deskgate_login=${ticket}` };
    const dashboard = await send(`${gw.httpUrl}/`, { headers });
    expect({ status: dashboard.status, location: dashboard.headers.location }).toEqual({ status: 303, location: './login?next=' });
    expect(await upgradeStatus(gw.wsUrl('lab'), { headers })).toBe(401);
    expect(canary.accepted).toBe(0);
  });

  it('answers a bad ticket link alike for desktops that exist and ones that do not', async () => {
    const known = await send(`${gw.httpUrl}/view/lab?ticket=forged`);
    const unknown = await send(`${gw.httpUrl}/view/no-such-desktop?ticket=forged`);
    expect(known.status).toBe(401);
    expect(unknown.status).toBe(known.status);
    expect(unknown.body).not.toContain('no-such-desktop');
  });
});

describe('mode none on loopback', () => {
  let gw: RunningGateway;
  beforeAll(async () => {
    gw = await startGateway({ desktops: [`lab=127.0.0.1:${canary.port}`], publicUrl: 'http://desktops.example.test:6080' });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('refuses pages and upgrades for a host name that only points here (DNS rebinding), and never connects', async () => {
    const host = `rebound.evil.example:${gw.port}`;
    const page = await send(`${gw.httpUrl}/view/lab`, { headers: { Host: host } });
    expect(page.status).toBe(403);
    expect(await upgradeStatus(gw.wsUrl('lab'), { headers: { Host: host }, origin: `http://${host}` })).toBe(403);
    expect(canary.accepted).toBe(0);
  });

  it('still answers loopback names and addresses, and the host of publicUrl', async () => {
    for (const host of [`localhost:${gw.port}`, `127.0.0.1:${gw.port}`, `[::1]:${gw.port}`, 'desktops.example.test:6080']) {
      expect((await send(`${gw.httpUrl}/view/lab`, { headers: { Host: host } })).status, host).toBe(200);
    }
  });
});

describe('reload', () => {
  it('changes nothing when the certificate cannot be read: the users file is not half-applied', async () => {
    const certificate = makeCertificate('ec');
    const [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    writeFileSync(certFile, certificate.cert);
    writeFileSync(keyFile, certificate.key);
    const reloadUsers = join(dir, 'reload-users.yaml');
    await writeUsers(reloadUsers, { alice: { password: PASSWORDS.alice } });
    const gw = await startGateway({ tls: { cert: certFile, key: keyFile }, auth: { mode: 'password', usersFile: reloadUsers } });
    try {
      const cookie = await loggedIn(gw.httpUrl, 'alice', PASSWORDS.alice, { ca: certificate.cert });
      await writeUsers(reloadUsers, { mallory: { password: PASSWORDS.mallory } });
      writeFileSync(keyFile, 'not a key');
      await expect(gw.gateway.reload()).rejects.toThrow();
      expect((await send(`${gw.httpUrl}/`, { headers: cookie, ca: certificate.cert })).status).toBe(200);
    } finally {
      await gw.gateway.destroy();
    }
  });
});
