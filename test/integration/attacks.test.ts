/**
 * The attack suite: the real `deskgate` command (dist/cli.js, spawned) under attack from
 * loopback. Every case asserts the documented HTTP status or close code and reason; and,
 * through `attack()`, that the process stays up and answers /healthz, that a legitimate
 * session opened before the attack still answers after it, that a new one opens, and that
 * the canary — the VNC server behind desktop `lab`, which no attack may reach — never
 * accepted a connection.
 *
 * Three gateways: `main` (password mode, tickets, ad-hoc targets, small limits), `strict`
 * (the same with requireOrigin) and `sso` (header mode; it trusts only the proxy at
 * 127.0.0.2, so 127.0.0.1 and the attackers are untrusted peers). Legitimate users come
 * from 127.0.0.1 (on `sso`: through the proxy, 127.0.0.2); each case attacks from a loopback
 * address of its own (127.0.1.N), so per-address throttles and limits cannot leak from one
 * case into the next.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { errors } from '../../src/errors.js';
import { loggedIn, logIn, usersYaml } from '../helpers/auth.js';
import { startCli, type CliGateway } from '../helpers/cli-process.js';
import type { Reply, RequestOptions } from '../helpers/http-client.js';
import { freePort, waitFor, within } from '../helpers/processes.js';
import type { RfbClient } from '../helpers/rfb-client.js';
import { openRaw, rfbServer, startPeer, type Peer, type RawClient } from '../helpers/tcp-peers.js';
import { makeCertificate } from '../helpers/tls.js';
import { newApiKey, requestTicket } from '../helpers/tickets.js';
import { startRfb, tryUpgrade, viewerHandshake, type TestClient, type Upgrade, type UpgradeOptions } from '../helpers/ws-client.js';

const AUTH_SECRET = randomBytes(32).toString('base64url');
const TICKET_SECRET = randomBytes(32).toString('base64url');
const API_KEY = newApiKey();
const PASSWORDS = { alice: 'correct horse battery staple', mallory: 'mallory knows her own password' };
const TRUSTED_PROXY = '127.0.0.2';
const MAX_MESSAGE_BYTES = 2048;
const LIMITS = { maxSessionsPerAddress: 5, maxSessionsPerUser: 8 };
const IDLE_TIMEOUT_MS = 2000;

// Documented refusals (src/errors.ts, the upgrade path in src/gateway.ts).
const MALFORMED_NAME = 'Malformed desktop name: use letters, digits, ".", "_" and "-"';
const MALFORMED_TARGET = 'Malformed target: expected HOST:PORT or [IPv6]:PORT';
const ONE_TARGET = 'Name exactly one desktop (?desktop=NAME or ?token=TOKEN) or one target (?target=HOST:PORT)';
const NOT_ALLOWED = (target: string): string => `Target ${target} is not allowed by this gateway's rules`;
const INVALID_TICKET = 'The ticket is not valid';
const ONE_DESKTOP_TICKET = 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET';
const NOT_FOUND = 'Not found\n';

interface Subject {
  gw: CliGateway;
  /** How a legitimate user (alice, in a browser) asks for a WebSocket here. */
  user: UpgradeOptions;
}

let canary: Peer;
let echo: Peer;
/** Alice's password hash in the users file, for cookies made by hand. */
let aliceHash: string;
const subjects = {} as Record<'main' | 'strict' | 'sso', Subject>;
/** An authenticated attacker on main and strict: mallory's login cookie, no Origin (a script). */
let mallory: UpgradeOptions;

beforeAll(async () => {
  canary = await startPeer();
  echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
  const usersFile = await usersYaml({
    alice: { password: PASSWORDS.alice, groups: ['staff'] },
    mallory: { password: PASSWORDS.mallory },
  });
  aliceHash = (parse(usersFile) as { users: { alice: { password: string } } }).users.alice.password;
  const [mainPort, strictPort] = await Promise.all([freePort(), freePort()]);
  const passwordGateway = (port: number, extra: Record<string, unknown> = {}) =>
    startCli(
      {
        auth: { mode: 'password', usersFile: 'users.yaml', secret: AUTH_SECRET },
        tickets: { secret: TICKET_SECRET, apiKeys: [API_KEY.hash] },
        desktops: [
          { name: 'lab', host: '127.0.0.1', port: canary.port, allow: { users: ['alice'] } },
          { name: 'echo', host: '127.0.0.1', port: echo.port },
        ],
        demo: true,
        targets: {
          allow: [
            { cidr: '127.0.0.1/32', ports: echo.port },
            { cidr: '::/0', ports: echo.port }, // all of IPv6, none of IPv4
            // Deliberately broad, on the gateway's own port: only the built-in guards (own
            // port, link-local, 0.0.0.0) stand between these addresses and a connection.
            { cidr: '0.0.0.0/0', ports: port },
          ],
        },
        limits: LIMITS,
        http: { headersTimeoutMs: 1000, idleTimeoutMs: IDLE_TIMEOUT_MS, maxHeaderBytes: 4096 },
        session: { maxMessageBytes: MAX_MESSAGE_BYTES },
        log: { level: 'warn' },
        ...extra,
      },
      { port, files: { 'users.yaml': usersFile } },
    );
  const [main, strict, sso] = await Promise.all([
    passwordGateway(mainPort),
    passwordGateway(strictPort, { requireOrigin: true }),
    startCli({
      auth: { mode: 'header' },
      trustProxy: [`${TRUSTED_PROXY}/32`],
      desktops: [{ name: 'lab', host: '127.0.0.1', port: canary.port }],
      demo: true,
      log: { level: 'warn' },
    }),
  ]);
  subjects.main = { gw: main, user: { headers: await cookieFor(main, 'alice'), origin: main.origin } };
  subjects.strict = { gw: strict, user: { headers: await cookieFor(strict, 'alice'), origin: strict.origin } };
  subjects.sso = { gw: sso, user: { headers: { 'x-forwarded-user': 'alice' }, localAddress: TRUSTED_PROXY, origin: sso.origin } };
  mallory = { headers: await cookieFor(main, 'mallory') };
});

afterAll(async () => {
  await Promise.all(Object.values(subjects).map((s) => s.gw.stop()));
  await canary?.close();
  await echo?.close();
});

/** Log in through the form (from 127.0.0.1 unless `localAddress` says otherwise); resolves with the Cookie header. */
function cookieFor(gw: CliGateway, user: keyof typeof PASSWORDS, localAddress?: string): Promise<{ Cookie: string }> {
  return loggedIn(gw.origin, user, PASSWORDS[user], { localAddress });
}

/** A genuine ticket from POST /api/tickets, asked for by the management console on 127.0.0.1. */
async function issueTicket(desktop: string): Promise<string> {
  return (await requestTicket(subjects.main.gw.origin, API_KEY, { desktop, user: 'alice' })).ticket;
}

/** A JWT built by hand: any header and claims, signed with HMAC (`hash`) under `key`, or unsigned. */
function handMadeJwt(header: object, claims: object, key?: string, hash = 'sha256'): string {
  const encode = (part: object): string => Buffer.from(JSON.stringify(part)).toString('base64url');
  const input = `${encode(header)}.${encode(claims)}`;
  return `${input}.${key === undefined ? '' : createHmac(hash, key).update(input).digest('base64url')}`;
}

/** Claims valid for a minute, with `overrides` applied (undefined removes a claim). */
function claims(overrides: Record<string, unknown>): Record<string, unknown> {
  const now = Date.now() / 1000; // iat to the millisecond: the gateways under attack may have started within this second
  return { sub: 'alice', jti: randomUUID(), iat: now, exp: Math.floor(now) + 60, ...overrides };
}

const HS256 = { alg: 'HS256', typ: 'JWT' };

// ---- the invariants every attack is checked against ----

let addresses = 0;

interface Attacker {
  /** This case's own source address. */
  from: string;
  /** Ask the gateway under attack for a WebSocket from this case's address. */
  upgrade(query: string, options?: UpgradeOptions): Promise<Upgrade>;
  request(path: string, options?: RequestOptions): Promise<Reply>;
  /** Each upgrade in turn, with how it ended: for comparing with a table of expectations. */
  outcomes(cases: ReadonlyArray<readonly [string, Outcome]>, options?: UpgradeOptions): Promise<Array<[string, Outcome]>>;
}

/**
 * One attack on one gateway: `run` makes it and asserts the refusal; around it, the
 * invariants of the suite are checked.
 */
function attack(name: string, target: keyof typeof subjects, run: (attacker: Attacker) => Promise<void>): void {
  it(name, async () => {
    const { gw, user } = subjects[target];
    const before = await openLegitSession(gw, user);
    const reached = canary.accepted;
    try {
      addresses += 1;
      const from = `127.0.1.${addresses}`;
      const upgrade = (query: string, options: UpgradeOptions = {}): Promise<Upgrade> => tryUpgrade(gw.wsUrl(query), { localAddress: from, ...options });
      await run({
        from,
        upgrade,
        request: (path, options = {}) => gw.request(path, { localAddress: from, ...options }),
        async outcomes(cases, options) {
          const seen: Array<[string, Outcome]> = [];
          for (const [query] of cases) seen.push([query, await outcome(upgrade(query, options))]);
          return seen;
        },
      });

      expect(gw.child.exitCode).toBe(null);
      expect(await gw.healthy()).toBe(true);
      await expectAnswers(before.rfb); // the session opened before the attack is still served
      const after = await openLegitSession(gw, user); // and a new one opens
      await closeClient(after.client);
      expect(canary.accepted - reached, 'connections that reached the canary').toBe(0);
    } finally {
      await closeClient(before.client);
    }
  });
}

/** Alice on the demo desktop: upgraded, bridged, RFB handshake done, one update answered. */
async function openLegitSession(gw: CliGateway, user: UpgradeOptions): Promise<{ client: TestClient; rfb: RfbClient }> {
  const upgrade = await tryUpgrade(gw.wsUrl('?desktop=demo'), user);
  if (!('client' in upgrade)) throw new Error(`legitimate session refused: HTTP ${upgrade.status} ${upgrade.body}`);
  try {
    const { rfb } = await within(5_000, 'the demo desktop to greet', startRfb(upgrade.client));
    await expectAnswers(rfb);
    return { client: upgrade.client, rfb };
  } catch (err) {
    upgrade.client.ws.terminate(); // a half-open session would count against the limits of the cases after it
    throw err;
  }
}

async function expectAnswers(rfb: RfbClient): Promise<void> {
  rfb.requestUpdate(false, { x: 0, y: 0, width: 1, height: 1 });
  const rects = await within(5_000, 'an answer to a FramebufferUpdateRequest', rfb.readUpdate());
  expect(rects.map(({ x, y, width, height }) => ({ x, y, width, height }))).toContainEqual({ x: 0, y: 0, width: 1, height: 1 });
}

/** The control: this upgrade opens (101); it is closed again. */
async function expectOpens(pending: Promise<Upgrade>): Promise<void> {
  const upgrade = await pending;
  expect(upgrade.status).toBe(101);
  if ('client' in upgrade) await closeClient(upgrade.client);
}

async function closeClient(client: TestClient): Promise<void> {
  client.ws.close();
  await within(5_000, 'the WebSocket to close', client.closed);
}

/** An upgrade's fate: refused with an HTTP status and body, or opened and then closed with a code. */
type Outcome = { status: number; body: string } | { status: 101; code: number; reason: string };

const refusedWith = (status: number, message: string): Outcome => ({ status, body: `${message}\n` });

async function outcome(pending: Promise<Upgrade>): Promise<Outcome> {
  const upgrade = await pending;
  if (!('client' in upgrade)) return { status: upgrade.status, body: upgrade.body };
  const end = await within(3_000, 'close', upgrade.client.closed).catch(() => undefined);
  upgrade.client.ws.terminate();
  return end ? { status: 101, ...end } : { status: 101, code: -1, reason: 'still open after 3 s' };
}

// ---- the attacks ----

describe('SSRF through the desktop and target parameters', () => {
  attack('refuses other hosts, other ports, cloud metadata, the gateway itself and IPv6 forms of them with 4403', 'main', async (a) => {
    const { port } = subjects.main.gw;
    const targets = [
      '10.255.255.1:5900', // another host
      `192.0.2.1:${echo.port}`, // another host on the allowed port
      `127.0.0.2:${echo.port}`, // another loopback address on the allowed port
      `127.0.0.1:${canary.port}`, // another port
      '169.254.169.254:80',
      `169.254.169.254:${port}`, // a rule names the port, link-local stays closed
      `127.0.0.1:${port}`, // the gateway's own port
      `0.0.0.0:${port}`,
      `localhost:${port}`,
      `localhost:${canary.port}`, // a name resolving to loopback, on a port no rule allows
    ];
    const ipv6 = [
      [`[::1]:${canary.port}`, `::1:${canary.port}`],
      [`[::ffff:127.0.0.1]:${canary.port}`, `::ffff:127.0.0.1:${canary.port}`],
      [`[::ffff:7f00:1]:${canary.port}`, `::ffff:7f00:1:${canary.port}`],
      [`[::ffff:127.0.0.1]:${port}`, `::ffff:127.0.0.1:${port}`],
      [`[::ffff:169.254.169.254]:${port}`, `::ffff:169.254.169.254:${port}`],
      [`[::ffff:a9fe:a9fe]:${port}`, `::ffff:a9fe:a9fe:${port}`],
      [`[::ffff:0.0.0.0]:${port}`, `::ffff:0.0.0.0:${port}`],
      [`[::]:${port}`, `:::${port}`],
    ];
    const cases = [
      ...targets.map((t) => [`?target=${t}`, refusedWith(403, NOT_ALLOWED(t))] as const),
      ...ipv6.map(([t, name]) => [`?target=${t}`, refusedWith(403, NOT_ALLOWED(name as string))] as const),
      // percent-encoded, it is the same address and meets the same rules
      [`?target=%31%32%37%2e0.0.1%3a${canary.port}`, refusedWith(403, NOT_ALLOWED(`127.0.0.1:${canary.port}`))] as const,
    ];
    expect(await a.outcomes(cases, mallory)).toEqual(cases);
  });

  attack('refuses IPv4 addresses, IPv4-mapped ones included, that only an IPv6 rule (::/0) would cover, with 4403', 'main', async (a) => {
    const cases = [
      [`?target=127.0.0.9:${echo.port}`, refusedWith(403, NOT_ALLOWED(`127.0.0.9:${echo.port}`))],
      [`?target=[::ffff:127.0.0.9]:${echo.port}`, refusedWith(403, NOT_ALLOWED(`::ffff:127.0.0.9:${echo.port}`))],
      [`?target=[0:0:0:0:0:ffff:7f00:9]:${echo.port}`, refusedWith(403, NOT_ALLOWED(`0:0:0:0:0:ffff:7f00:9:${echo.port}`))],
    ] as const;
    expect(await a.outcomes(cases, mallory)).toEqual(cases);
  });

  attack('refuses decimal, octal, hex, short and other odd spellings of loopback with 4400', 'main', async (a) => {
    const spellings = [
      '2130706433',
      '0177.0.0.1',
      '0x7f.0.0.1',
      '0x7f000001',
      '017700000001',
      '127.1',
      '127.0.1',
      '127.0.0.1.',
      '[127.0.0.1]',
      'user@127.0.0.1',
      'http://127.0.0.1',
    ];
    const cases = [
      ...spellings.map((host) => [`?target=${encodeURIComponent(`${host}:${canary.port}`)}`, refusedWith(400, MALFORMED_TARGET)] as const),
      [`?target=127.0.0.1:${canary.port + 65536}`, refusedWith(400, MALFORMED_TARGET)] as const, // a port that would wrap to the canary's
      [`?target=127.0.0.1%00:${canary.port}`, refusedWith(400, MALFORMED_TARGET)] as const,
      [`?target=127.0.0.1:${canary.port}%0d%0a`, refusedWith(400, MALFORMED_TARGET)] as const,
      ['?target=127.0.0.1', refusedWith(400, MALFORMED_TARGET)] as const,
    ];
    expect(await a.outcomes(cases, mallory)).toEqual(cases);
  });

  attack('refuses desktop names with traversal or encoded characters, and applies the rules to decoded names', 'main', async (a) => {
    const cases = [
      ...['../lab', '..%2Flab', '%2e%2e%2flab', 'lab%2F..%2Fecho', 'lab%00', 'lab%0d%0aX-Injected:%201', '%2e', `127.0.0.1:${canary.port}`, 'lab/', ' lab'].map(
        (name) => [`?desktop=${name}`, refusedWith(400, MALFORMED_NAME)] as const,
      ),
      ['?desktop=LAB', refusedWith(404, "There is no desktop named 'LAB'")] as const,
      ['?desktop=lab.', refusedWith(404, "There is no desktop named 'lab.'")] as const,
      ['?desktop=lab', refusedWith(403, "mallory may not open desktop 'lab'")] as const,
      ['?desktop=%6cab', refusedWith(403, "mallory may not open desktop 'lab'")] as const, // %6c is "l"
    ];
    expect(await a.outcomes(cases, mallory)).toEqual(cases);
  });
});

describe('forged and misused tickets', () => {
  attack('refuses forged, expired, wrong-key, unsigned and over-long tickets with 401', 'main', async (a) => {
    const genuine = await issueTicket('demo');
    const [header, payload, signature] = genuine.split('.') as [string, string, string];
    const forgedClaims = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), desk: 'lab' })).toString('base64url');
    const flipped = `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`; // the first character: every bit of it counts
    const now = Math.floor(Date.now() / 1000);
    const tickets = [
      ['claims changed, signature kept', `${header}.${forgedClaims}.${signature}`, INVALID_TICKET],
      ['signature changed', `${header}.${payload}.${flipped}`, INVALID_TICKET],
      ['signed with another secret', handMadeJwt(HS256, claims({ desk: 'lab' }), randomBytes(32).toString('base64url')), INVALID_TICKET],
      ['alg none, unsigned', handMadeJwt({ alg: 'none', typ: 'JWT' }, claims({ desk: 'lab' })), INVALID_TICKET],
      ['HS256 header, no signature', handMadeJwt(HS256, claims({ desk: 'lab' })), INVALID_TICKET],
      ['HS512 with the right secret', handMadeJwt({ alg: 'HS512', typ: 'JWT' }, claims({ desk: 'lab' }), TICKET_SECRET, 'sha512'), INVALID_TICKET],
      ['no jti', handMadeJwt(HS256, claims({ desk: 'lab', jti: undefined }), TICKET_SECRET), INVALID_TICKET],
      ['desk not a string', handMadeJwt(HS256, claims({ desk: ['lab'] }), TICKET_SECRET), INVALID_TICKET],
      ['not a JWT', 'not-a-jwt', INVALID_TICKET],
      ['expired a minute ago', handMadeJwt(HS256, claims({ desk: 'lab', exp: now - 60 }), TICKET_SECRET), 'The ticket has expired: ask for a new one'],
      [
        'living an hour',
        handMadeJwt(HS256, claims({ desk: 'lab', exp: now + 3600 }), TICKET_SECRET),
        'The ticket lives longer than this gateway allows (300 s)',
      ],
      [
        'issued before the gateway started',
        handMadeJwt(HS256, claims({ desk: 'lab', iat: now - 120 }), TICKET_SECRET),
        'The ticket was issued before the gateway last started: ask for a new one',
      ],
    ] as const;
    const cases = tickets.map(([, token, reason]) => [`?desktop=lab&ticket=${encodeURIComponent(token)}`, refusedWith(401, reason)] as const);
    expect(await a.outcomes(cases)).toEqual(cases);

    // The control: the same hand-made construction with the right secret opens.
    await expectOpens(a.upgrade(`?desktop=demo&ticket=${handMadeJwt(HS256, claims({ desk: 'demo' }), TICKET_SECRET)}`));
  });

  attack('refuses a ticket for another desktop with 403, and one that does not name exactly one desktop with 400', 'main', async (a) => {
    const ticket = await issueTicket('demo');
    const cases = [
      [`?desktop=lab&ticket=${ticket}`, refusedWith(403, 'The ticket is for another desktop')],
      [`?desktop=demo&desktop=lab&ticket=${ticket}`, refusedWith(400, ONE_DESKTOP_TICKET)],
      [`?target=127.0.0.1:${canary.port}&ticket=${ticket}`, refusedWith(400, ONE_DESKTOP_TICKET)],
      [`?desktop=lab&target=127.0.0.1:${canary.port}&ticket=${ticket}`, refusedWith(400, ONE_DESKTOP_TICKET)],
      [`?desktop=demo&ticket=${ticket}&ticket=${ticket}`, refusedWith(400, ONE_DESKTOP_TICKET)],
    ] as const;
    expect(await a.outcomes(cases)).toEqual(cases);
  });

  attack('refuses a replayed ticket with 401, on the WebSocket and on the viewer page, even when replayed at once', 'main', async (a) => {
    const ticket = await issueTicket('demo');
    expect((await a.request(`/view/demo?ticket=${ticket}`)).status).toBe(200); // the page does not use it up
    await expectOpens(a.upgrade(`?desktop=demo&ticket=${ticket}`));
    const used = 'The ticket has already been used: ask for a new one';
    expect(await outcome(a.upgrade(`?desktop=demo&ticket=${ticket}`))).toEqual(refusedWith(401, used));
    const page = await a.request(`/view/demo?ticket=${ticket}`);
    expect(page.status).toBe(401);
    expect(page.body).toContain(used);

    const racing = await issueTicket('demo');
    const attempts = await Promise.all([1, 2, 3, 4].map(() => a.upgrade(`?desktop=demo&ticket=${racing}`)));
    expect(attempts.map((u) => u.status).sort()).toEqual([101, 401, 401, 401]);
    await Promise.all(attempts.map((u) => ('client' in u ? closeClient(u.client) : undefined)));
  });

  attack('refuses tickets with 401 where tickets are not enabled', 'sso', async (a) => {
    const ticket = handMadeJwt(HS256, claims({ desk: 'lab' }), TICKET_SECRET);
    expect(await outcome(a.upgrade(`?desktop=lab&ticket=${ticket}`))).toEqual(refusedWith(401, 'Tickets are not enabled on this gateway'));
  });
});

describe('foreign and missing Origin', () => {
  attack('refuses a foreign Origin with 403 on the upgrade and on the login and logout forms', 'main', async (a) => {
    const { port } = subjects.main.gw;
    const foreign = [
      'https://evil.example',
      'null',
      `http://127.0.0.1:${port}.evil.example`,
      `https://127.0.0.1:${port}`,
      `http://127.0.0.1:${port + 1}`,
      `http://localhost:${port}`,
    ];
    for (const origin of foreign) {
      const own = `http://127.0.0.1:${port}`;
      expect(await outcome(a.upgrade('?desktop=lab', { ...mallory, origin })), origin).toEqual(refusedWith(403, errors.foreignOrigin(origin, own).message));
      expect(errors.foreignOrigin(origin, own).message).toMatch(
        new RegExp(`^Origin ${origin.replace(/[.]/g, '\\.')} is not allowed: this gateway takes itself for ${own.replace(/[.]/g, '\\.')}\\. `),
      );
    }
    const form = {
      method: 'POST',
      body: 'user=mallory&password=x',
      headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
    };
    for (const path of ['/login', '/logout']) {
      const res = await a.request(path, form);
      expect({ status: res.status, body: res.body }).toEqual(refusedWith(403, 'Cross-site form posts are not accepted'));
    }
  });

  attack('refuses an upgrade without Origin with 403 under requireOrigin', 'strict', async (a) => {
    const strictMallory = { headers: await cookieFor(subjects.strict.gw, 'mallory', a.from) };
    expect(await outcome(a.upgrade('?desktop=lab', strictMallory))).toEqual(refusedWith(403, 'An Origin header is required'));
    expect(await outcome(a.upgrade('?desktop=lab'))).toEqual(refusedWith(403, 'An Origin header is required'));
  });
});

describe('missing, wrong and stolen credentials', () => {
  attack('redirects pages to /login with 303 without a valid login', 'main', async (a) => {
    const pages = [
      ['/', undefined, './login?next='],
      ['/view/lab', undefined, '../login?next=view%2Flab'],
      ['/view/demo', 'deskgate_login=garbage', '../login?next=view%2Fdemo'],
      ['/view/demo', `deskgate_login=${handMadeJwt({ alg: 'none' }, claims({}))}`, '../login?next=view%2Fdemo'],
    ] as const;
    for (const [path, cookie, location] of pages) {
      const res = await a.request(path, { headers: cookie ? { cookie } : {} });
      expect({ path, status: res.status, location: res.headers.location }).toEqual({ path, status: 303, location });
    }
  });

  attack('refuses the ticket API with 401 and WWW-Authenticate without the right API key', 'main', async (a) => {
    const unauthenticated = { error: 'DG_ERR_UNAUTHENTICATED', message: 'Send a valid API key as Authorization: Bearer KEY' };
    for (const authorization of [undefined, 'Bearer dgk_guessed', `Basic ${Buffer.from(`x:${API_KEY.key}`).toString('base64')}`]) {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...(authorization && { authorization }) };
      const res = await a.request('/api/tickets', { method: 'POST', headers, body: JSON.stringify({ desktop: 'lab', user: 'mallory' }) });
      expect({ status: res.status, challenge: res.headers['www-authenticate'], body: JSON.parse(res.body) as unknown }).toEqual({
        status: 401,
        challenge: 'Bearer',
        body: unauthenticated,
      });
    }
  });

  attack('refuses upgrades without a genuine, current login cookie with 401', 'main', async (a) => {
    const now = Math.floor(Date.now() / 1000);
    const cookie = (token: string): UpgradeOptions => ({ headers: { cookie: `deskgate_login=${token}` } });
    // What a genuine login holds: alice's password tag, and an issue time after the gateway started.
    const genuine = { cred: createHmac('sha256', AUTH_SECRET).update(aliceHash).digest('base64url').slice(0, 22) };
    const cookies = [
      {},
      cookie(''),
      cookie('garbage'),
      cookie(handMadeJwt({ alg: 'HS256' }, claims({}), randomBytes(32).toString('base64url'))), // another secret
      cookie(handMadeJwt({ alg: 'none' }, claims({}))),
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, sub: 'eve' }), AUTH_SECRET)), // the real key, a user not in the file
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, exp: now - 60 }), AUTH_SECRET)), // expired
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, cred: undefined }), AUTH_SECRET)), // bound to no password
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, cred: 'another-password-tag00' }), AUTH_SECRET)), // to another password
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, iat: now - 3600 }), AUTH_SECRET)), // issued before the gateway started
      cookie(handMadeJwt({ alg: 'HS256' }, claims({ ...genuine, iat: undefined }), AUTH_SECRET)), // issued who knows when
      { headers: { cookie: `other=1; deskgate_login_x=${handMadeJwt({ alg: 'HS256' }, claims({}), AUTH_SECRET)}` } }, // not the cookie's name
    ];
    for (const options of cookies) {
      expect(await outcome(a.upgrade('?desktop=lab', options)), JSON.stringify(options)).toEqual(refusedWith(401, 'Log in first'));
    }
    // The control: the same construction with the real key and a real user is a login.
    await expectOpens(a.upgrade('?desktop=demo', cookie(handMadeJwt({ alg: 'HS256' }, claims(genuine), AUTH_SECRET))));
  });

  attack('refuses a logged-out cookie with 401, even when replayed', 'main', async (a) => {
    const stolen = await cookieFor(subjects.main.gw, 'mallory', a.from);
    const logout = await a.request('/logout', { method: 'POST', headers: stolen });
    expect(logout.status).toBe(303);
    expect(await outcome(a.upgrade('?desktop=lab', { headers: stolen }))).toEqual(refusedWith(401, 'Log in first'));
    expect((await a.request('/', { headers: stolen })).status).toBe(303);
  });

  attack('refuses a logged-in user a desktop whose allow list leaves them out with 403, on the upgrade and the page', 'main', async (a) => {
    expect(await outcome(a.upgrade('?desktop=lab', mallory))).toEqual(refusedWith(403, "mallory may not open desktop 'lab'"));
    expect((await a.request('/view/lab', mallory)).status).toBe(403);
  });
});

describe('header-mode identity headers', () => {
  const alice = { 'x-forwarded-user': 'alice', 'x-forwarded-groups': 'staff,admins' };

  attack('refuses identity headers from an untrusted address with 401, pages and upgrade alike', 'sso', async (a) => {
    const authRequired = refusedWith(401, 'Authentication required');
    expect(await outcome(a.upgrade('?desktop=lab', { headers: alice }))).toEqual(authRequired);
    expect(await outcome(a.upgrade('?desktop=lab', { headers: { ...alice, 'x-forwarded-for': TRUSTED_PROXY } }))).toEqual(authRequired);
    expect(await outcome(a.upgrade('?desktop=lab', { headers: alice, localAddress: '127.0.0.1' }))).toEqual(authRequired);
    for (const path of ['/', '/view/lab']) {
      const res = await a.request(path, { headers: alice });
      expect({ status: res.status, body: res.body }).toEqual(refusedWith(401, "Authentication required: sign in through your organisation's single sign-on"));
    }
  });

  attack('believes the trusted proxy only for a well-formed user name (positive control: it does believe it)', 'sso', async (a) => {
    const viaProxy = { localAddress: TRUSTED_PROXY };
    expect(await outcome(a.upgrade('?desktop=lab', { ...viaProxy, headers: {} }))).toEqual(refusedWith(401, 'Authentication required'));
    expect(await outcome(a.upgrade('?desktop=lab', { ...viaProxy, headers: { 'x-forwarded-user': 'alice, mallory' } }))).toEqual(
      refusedWith(401, 'Authentication required'),
    );
    await expectOpens(a.upgrade('?desktop=demo', { ...viaProxy, headers: alice }));
  });
});

describe('brute force', () => {
  attack('blocks an address with 429 and Retry-After from the 5th wrong password on, the right one included', 'main', async (a) => {
    const { gw } = subjects.main;
    const blocked = 'Too many failed logins from your address: try again in 5 minutes';
    const answers = [];
    for (const password of ['guess 1', 'guess 2', 'guess 3', 'guess 4', 'guess 5', PASSWORDS.alice]) {
      const res = await logIn(gw.origin, 'alice', password, { localAddress: a.from });
      answers.push({
        status: res.status,
        error: /<p class="form-error" id="login-error"[^>]*>([^<]*)</.exec(res.body)?.[1],
        cookie: res.headers['set-cookie'],
      });
      if (res.status === 429) {
        // 300 s, less the little time since the 5th failure
        expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(290);
        expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(300);
      }
    }
    const wrong = { status: 401, error: 'Wrong user name or password', cookie: undefined };
    expect(answers).toEqual([
      wrong,
      wrong,
      wrong,
      wrong,
      { status: 429, error: blocked, cookie: undefined },
      { status: 429, error: blocked, cookie: undefined },
    ]);

    // The API key shares the address's throttle; other addresses are not blocked.
    const api = await a.request('/api/tickets', {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY.key}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect({ status: api.status, body: JSON.parse(api.body) as unknown }).toEqual({
      status: 429,
      body: { error: 'DG_ERR_THROTTLED', message: 'Too many failed attempts from this address' },
    });
    expect(Number(api.headers['retry-after'])).toBeGreaterThanOrEqual(290);
    expect((await logIn(gw.origin, 'alice', PASSWORDS.alice, { localAddress: '127.0.0.1' })).status).toBe(303);
  });

  attack('blocks an address with 429 after 5 wrong API keys, logins included', 'main', async (a) => {
    for (let i = 0; i < 5; i++) {
      const res = await a.request('/api/tickets', { method: 'POST', headers: { authorization: `Bearer dgk_guess${i}` } });
      expect(res.status).toBe(401);
    }
    const right = await a.request('/api/tickets', {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ desktop: 'lab', user: 'mallory' }),
    });
    expect(right.status).toBe(429);
    expect((await logIn(subjects.main.gw.origin, 'mallory', PASSWORDS.mallory, { localAddress: a.from })).status).toBe(429);
  });
});

describe('slow and oversized requests', () => {
  const TIMED_OUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

  attack('closes connections that send their headers slowly (slow-loris) with 408, serving others meanwhile', 'main', async (a) => {
    const { port } = subjects.main.gw;
    const upgradeHead = 'GET /websockify?desktop=lab HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
    const lorises = Array.from({ length: 10 }, (_, i) => {
      const raw = openRaw(port, a.from);
      raw.socket.write(i === 0 ? upgradeHead : 'GET / HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => raw.socket.write(`X-Slow-${i}: 1\r\n`), 200);
      void raw.closed.finally(() => clearInterval(drip));
      return { raw, drip };
    });
    try {
      expect((await subjects.main.gw.request('/healthz')).status).toBe(200); // answered while they drip
      const received = await within(5_000, 'slow-loris connections closed', Promise.all(lorises.map(({ raw }) => raw.closed)));
      expect(received).toEqual(lorises.map(() => TIMED_OUT));
    } finally {
      for (const { raw, drip } of lorises) {
        clearInterval(drip);
        raw.socket.destroy();
      }
    }
  });

  attack('refuses headers over maxHeaderBytes with 431, on pages and upgrades', 'main', async (a) => {
    const big = 'a'.repeat(5000);
    const raw = openRaw(subjects.main.gw.port, a.from);
    raw.socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`);
    expect(await within(5_000, 'an answer', raw.closed)).toBe('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n');
    expect(await outcome(a.upgrade('?desktop=lab', { headers: { cookie: `${String(mallory.headers?.Cookie)}; pad=${big}` } }))).toEqual({
      status: 431,
      body: '',
    });
  });

  attack('refuses a request line no HTTP parser accepts with 400', 'main', async (a) => {
    const raw = openRaw(subjects.main.gw.port, a.from);
    raw.socket.write('GET /websockify?desktop=lab lab HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    expect(await within(5_000, 'an answer', raw.closed)).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });
});

describe('WebSocket messages the RFB stream does not allow', () => {
  /** Mallory's session on the echo desktop, open and past the RFB handshake. */
  async function echoSession(a: Attacker): Promise<TestClient> {
    const upgrade = await a.upgrade('?desktop=echo', mallory);
    if (!('client' in upgrade)) throw new Error(`echo session refused: HTTP ${upgrade.status}`);
    await viewerHandshake(upgrade.client);
    return upgrade.client;
  }

  attack('closes with 1009 on a message over maxMessageBytes (and relays one of exactly that size)', 'main', async (a) => {
    const client = await echoSession(a);
    let echoed = 0;
    client.onMessage((data) => (echoed += data.length));
    client.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES, 1));
    await waitFor(() => echoed === MAX_MESSAGE_BYTES, 'the largest allowed message to come back', 5_000);
    client.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 1));
    expect(await within(5_000, 'close', client.closed)).toEqual({ code: 1009, reason: '' });
  });

  attack('closes with 1003 on a text message', 'main', async (a) => {
    const client = await echoSession(a);
    client.ws.send('RFB 003.008\n');
    expect(await within(5_000, 'close', client.closed)).toEqual({ code: 1003, reason: 'Text messages are not supported: the RFB stream is binary' });
  });
});

describe('flood of upgrades', () => {
  attack('refuses sessions over the per-address and per-user limits with 429, and opens them again once freed', 'main', async (a) => {
    const accepted = echo.accepted;
    const flood = await Promise.all(Array.from({ length: 20 }, () => a.upgrade('?desktop=echo', mallory)));
    const second = a.from.replace('127.0.1.', '127.0.2.'); // another address, the same user
    const more = await Promise.all(Array.from({ length: 6 }, () => a.upgrade('?desktop=echo', { ...mallory, localAddress: second })));
    const open = [...flood, ...more].flatMap((u) => ('client' in u ? [u.client] : []));
    try {
      expect(flood.map((u) => u.status).sort()).toEqual([...Array(5).fill(101), ...Array(15).fill(429)]);
      expect(new Set(flood.flatMap((u) => ('body' in u ? [u.body] : [])))).toEqual(new Set([`Too many sessions from ${a.from} (limit 5)\n`]));
      expect(more.map((u) => u.status).sort()).toEqual([101, 101, 101, 429, 429, 429]);
      expect(new Set(more.flatMap((u) => ('body' in u ? [u.body] : [])))).toEqual(new Set(['Too many sessions for mallory (limit 8)\n']));
      await waitFor(() => echo.accepted - accepted >= 8, 'the 8 admitted sessions to connect', 5_000);
      expect(echo.accepted - accepted).toBe(8); // refused upgrades never connected

      const anonymous = await Promise.all(Array.from({ length: 100 }, () => outcome(a.upgrade('?desktop=lab'))));
      expect(new Set(anonymous.map((o) => JSON.stringify(o)))).toEqual(new Set([JSON.stringify(refusedWith(401, 'Log in first'))]));
    } finally {
      await Promise.all(open.map(closeClient));
    }
    let again: Upgrade | undefined;
    await waitFor(
      async () => {
        again = await a.upgrade('?desktop=echo', mallory);
        return again.status === 101;
      },
      'the freed slots to be usable again',
      5_000,
    );
    if (again && 'client' in again) await closeClient(again.client);
  });
});

describe('malformed query strings and percent-encoding', () => {
  attack('closes malformed desktop and target parameters with 4400', 'main', async (a) => {
    const names = ['%', '%00', '%E0%A4%A', '%C0%AE%C0%AE', '%2564emo', '', 'lab;desktop=demo', 'a'.repeat(3000)];
    const notOne = [
      '',
      '?',
      '?Desktop=lab',
      '?desktop[]=lab',
      '?desktop=demo&desktop=lab',
      '?desktop=lab&desktop=lab',
      `?desktop=lab&target=127.0.0.1:${echo.port}`,
      `?target=127.0.0.1:${echo.port}&target=127.0.0.1:${canary.port}`,
    ];
    const cases = [
      ...names.map((name) => [`?desktop=${name}`, refusedWith(400, MALFORMED_NAME)] as const),
      ...notOne.map((query) => [query, refusedWith(400, ONE_TARGET)] as const),
    ];
    expect(await a.outcomes(cases, mallory)).toEqual(cases);
  });

  attack(
    'answers upgrades on other or encoded paths as the pages they ask for (404, 400), and pages with broken percent-encoding with 400',
    'main',
    async (a) => {
      const { gw } = subjects.main;
      const paths = [
        ['/websockify%3Fdesktop=lab', refusedWith(404, 'Not found')],
        ['/websockify%?desktop=lab', refusedWith(400, 'Malformed URL')],
        ['/websockify/?desktop=lab', refusedWith(404, 'Not found')],
        ['/WEBSOCKIFY?desktop=lab', refusedWith(404, 'Not found')],
        ['/%2577ebsockify?desktop=lab', refusedWith(404, 'Not found')],
        ['//websockify?desktop=lab', refusedWith(404, 'Not found')],
      ] as const;
      for (const [path, answer] of paths) {
        expect(await outcome(tryUpgrade(`ws://127.0.0.1:${gw.port}${path}`, { ...mallory, localAddress: a.from })), path).toEqual(answer);
      }
      for (const path of ['/%', '/view/%', '/view/%E0%A4%A', '/novnc/core/%zz.js']) {
        const res = await a.request(path, mallory);
        expect({ path, status: res.status, body: res.body }).toEqual({ path, status: 400, body: 'Malformed URL\n' });
      }
    },
  );
});

describe('path traversal', () => {
  attack('answers 404, never a file, for traversal out of /novnc and /static', 'main', async (a) => {
    const paths = [
      '/novnc/../package.json',
      '/novnc/core/../../package.json',
      '/novnc/core/../../../../package.json',
      '/novnc/core/%2e%2e/%2e%2e/package.json',
      '/novnc/core/.%2e/.%2e/package.json',
      '/novnc/core/..%2f..%2fpackage.json',
      '/novnc/core%2f..%2f..%2fpackage.json',
      '/novnc/core/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
      '/novnc/core/%252e%252e/%252e%252e/package.json',
      '/novnc/vendor/..%5c..%5cpackage.json',
      '/novnc/core/%2fetc%2fpasswd',
      '/novnc/core/rfb.js%00.json',
      '/novnc/core/.hidden.js',
      '/novnc/package.json',
      '/static/../../../package.json',
      '/static/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/static/..%2f..%2f..%2fpackage.json',
    ];
    const answers = [];
    for (const path of paths) {
      const res = await a.request(path);
      answers.push({ path, status: res.status, body: res.body });
    }
    // An encoded slash or backslash is a malformed URL (400) before any route sees it; the rest is not found.
    const encodedSlash = /%2f|%5c/i;
    expect(answers).toEqual(
      paths.map((path) => (encodedSlash.test(path) ? { path, status: 400, body: 'Malformed URL\n' } : { path, status: 404, body: NOT_FOUND })),
    );
    // The control: the files that are meant to be served are.
    for (const path of ['/novnc/core/rfb.js', '/static/viewer.js']) expect((await a.request(path)).status, path).toBe(200);
  });
});

describe('a flood of input on the demo desktop', () => {
  attack('keeps answering while a viewer drags the pen 10,000 times across the full 16-bit range', 'main', async (a) => {
    const upgrade = await a.upgrade('?desktop=demo', mallory);
    if (!('client' in upgrade)) throw new Error(`demo session refused: HTTP ${upgrade.status}`);
    const { rfb } = await within(5_000, 'the demo desktop to greet', startRfb(upgrade.client));
    // PointerEvents (type 5) with the left button down, corner to far corner and back, in messages under maxMessageBytes.
    const perMessage = Math.floor(MAX_MESSAGE_BYTES / 6);
    const events = Buffer.alloc(6 * perMessage);
    for (let i = 0; i < perMessage; i++) {
      const far = i % 2 ? 65535 : 0;
      events.writeUInt8(5, i * 6);
      events.writeUInt8(1, i * 6 + 1);
      events.writeUInt16BE(far, i * 6 + 2);
      events.writeUInt16BE(far, i * 6 + 4);
    }
    for (let sent = 0; sent < 10_000; sent += perMessage) upgrade.client.ws.send(events);
    let slowest = 0;
    for (const end = Date.now() + 2_000; Date.now() < end;) {
      const started = performance.now();
      expect((await subjects.main.gw.request('/healthz')).status).toBe(200);
      slowest = Math.max(slowest, performance.now() - started);
    }
    expect(slowest, 'the slowest /healthz answer during the flood, in ms').toBeLessThan(1_000); // seconds without the guards
    await expectAnswers(rfb);
    await closeClient(upgrade.client);
  });
});

describe('holding file descriptors', () => {
  const RFB_JS = 'GET /novnc/core/rfb.js HTTP/1.1\r\nHost: x\r\n\r\n';

  /** The gateway's open files, once they have stopped falling (sessions of earlier cases may still be closing). */
  async function settledOpenFiles(gw: CliGateway): Promise<number> {
    let last = gw.openFiles();
    await waitFor(
      () => {
        const now = gw.openFiles();
        const steady = now === last;
        last = now;
        return steady;
      },
      'the open files to settle',
      5_000,
    );
    return last;
  }

  async function expectOpenFilesBackAt(gw: CliGateway, baseline: number, timeoutMs: number): Promise<void> {
    await waitFor(() => gw.openFiles() <= baseline, `the gateway's open files back at ${baseline} (now ${gw.openFiles()})`, timeoutMs);
  }

  attack('closes the files of pipelined static downloads whose client went away, and opens one file per connection at a time', 'main', async (a) => {
    const { gw } = subjects.main;
    const baseline = await settledOpenFiles(gw);
    // Each asks for far more than the socket buffers hold, and reads nothing.
    const clients = [100, 100, 100, 200].map((pipelined) => {
      const raw = openRaw(gw.port, a.from);
      raw.socket.write(RFB_JS.repeat(pipelined));
      raw.socket.pause();
      return raw;
    });
    await waitFor(() => gw.openFiles() >= baseline + clients.length, 'the gateway to accept the connections', 5_000);
    await new Promise((resolve) => setTimeout(resolve, 500)); // for the gateway to route what it was sent, and stall
    // Each connection: its socket, and the file of the one response that is being sent.
    expect(gw.openFiles()).toBeLessThanOrEqual(baseline + 2 * clients.length);
    for (const raw of clients) raw.socket.destroy();
    await expectOpenFilesBackAt(gw, baseline, 5_000);
  });

  attack('closes refused upgrades whose client keeps its side open', 'main', async (a) => {
    const { gw } = subjects.main;
    const baseline = await settledOpenFiles(gw);
    const clients = Array.from({ length: 50 }, () => {
      const raw = openRaw(gw.port, a.from, { allowHalfOpen: true });
      raw.socket.write(
        'GET /websockify?desktop=lab HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      return raw;
    });
    try {
      await waitFor(() => clients.every((raw) => raw.received().includes('Log in first')), 'every refusal to arrive', 5_000);
      expect(new Set(clients.map((raw) => raw.received().split('\r\n', 1)[0]))).toEqual(new Set(['HTTP/1.1 401 Unauthorized']));
      await expectOpenFilesBackAt(gw, baseline, 5_000); // while the clients still hold their side
    } finally {
      for (const raw of clients) raw.socket.destroy();
    }
  });

  attack('closes connections whose client stopped reading a response, after http.idleTimeoutMs', 'main', async (a) => {
    const { gw } = subjects.main;
    const baseline = await settledOpenFiles(gw);
    const clients = Array.from({ length: 20 }, () => {
      const raw = openRaw(gw.port, a.from);
      raw.socket.write(RFB_JS.repeat(60));
      raw.socket.once('data', () => raw.socket.pause()); // and never reads again
      return raw;
    });
    try {
      await waitFor(() => clients.every((raw) => raw.received().length > 0), 'every client to receive something', 5_000);
      expect(gw.openFiles()).toBeGreaterThan(baseline);
      await expectOpenFilesBackAt(gw, baseline, IDLE_TIMEOUT_MS + 5_000);
    } finally {
      for (const raw of clients) raw.socket.destroy();
    }
  });

  it('closes TLS connections that do not finish their handshake within http.headersTimeoutMs', async () => {
    const gw = await startCli({ http: { headersTimeoutMs: 1000 }, log: { level: 'warn' } }, { tls: makeCertificate('ec') });
    const clients: RawClient[] = [];
    try {
      const baseline = await settledOpenFiles(gw);
      for (let i = 0; i < 10; i++) clients.push(openRaw(gw.port));
      clients[0]?.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a ClientHello that never ends
      await waitFor(() => gw.openFiles() > baseline, 'the gateway to accept the connections', 5_000);
      await within(5_000, 'the stalled handshakes to be closed', Promise.all(clients.map((raw) => raw.closed)));
      await expectOpenFilesBackAt(gw, baseline, 5_000);
    } finally {
      for (const raw of clients) raw.socket.destroy();
      await gw.stop();
    }
  });
});

describe('requests that are not what they seem', () => {
  attack('answers plain requests that offer another protocol (h2c, as curl --http2 does) or a WebSocket on a page, as plain requests', 'main', async (a) => {
    const h2c = { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA' };
    const health = await a.request('/healthz', { headers: h2c });
    expect({ status: health.status, body: health.body }).toEqual({ status: 200, body: '{"status":"ok"}' });
    const onPage = await a.request('/healthz', {
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    expect({ status: onPage.status, body: onPage.body }).toEqual({ status: 200, body: '{"status":"ok"}' });
    // A body comes along: the ticket API answers as it would without the Upgrade header.
    const api = await a.request('/api/tickets', {
      method: 'POST',
      headers: { ...h2c, authorization: `Bearer ${API_KEY.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ desktop: 'demo', user: 'alice' }),
    });
    expect(api.status).toBe(201);
    await expectOpens(a.upgrade(`?desktop=demo&ticket=${(JSON.parse(api.body) as { ticket: string }).ticket}`));
  });

  attack('logs in and redirects to a next page whose path is not Latin-1, percent-encoded', 'main', async (a) => {
    const res = await logIn(subjects.main.gw.origin, 'mallory', PASSWORDS.mallory, { next: 'view/☃?q=é', localAddress: a.from });
    expect({ status: res.status, location: res.headers.location }).toEqual({ status: 303, location: './view/%E2%98%83?q=%C3%A9' });
    expect(res.headers['set-cookie']?.some((c) => c.startsWith('deskgate_login='))).toBe(true);
  });
});

describe('credentials that must never work again', () => {
  const passwordConfig = {
    auth: { mode: 'password', usersFile: 'users.yaml', secret: AUTH_SECRET },
    tickets: { secret: TICKET_SECRET, apiKeys: [API_KEY.hash] },
    demo: true,
    log: { level: 'warn' },
  };
  const BEFORE_START = refusedWith(401, 'The ticket was issued before the gateway last started: ask for a new one');

  it('refuses after a restart a logged-out cookie, a used ticket, and what was issued before it; what is issued after works', async () => {
    const port = await freePort();
    const start = async (): Promise<CliGateway> =>
      startCli(passwordConfig, { port, files: { 'users.yaml': await usersYaml({ alice: { password: PASSWORDS.alice } }) } });
    let gw = await start();
    try {
      const loggedOut = await loggedIn(gw.origin, 'alice', PASSWORDS.alice);
      expect((await gw.request('/logout', { method: 'POST', headers: loggedOut })).status).toBe(303);
      const kept = await loggedIn(gw.origin, 'alice', PASSWORDS.alice);
      const used = (await requestTicket(gw.origin, API_KEY, { desktop: 'demo', user: 'alice' })).ticket;
      await expectOpens(tryUpgrade(gw.wsUrl(`?desktop=demo&ticket=${used}`)));
      const unused = (await requestTicket(gw.origin, API_KEY, { desktop: 'demo', user: 'alice' })).ticket;

      await gw.stop();
      gw = await start(); // the same secrets, the same port

      for (const cookie of [loggedOut, kept]) {
        expect(await outcome(tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: cookie }))).toEqual(refusedWith(401, 'Log in first'));
        expect((await gw.request('/', { headers: cookie })).status).toBe(303);
      }
      for (const ticket of [used, unused]) {
        expect(await outcome(tryUpgrade(gw.wsUrl(`?desktop=demo&ticket=${ticket}`)))).toEqual(BEFORE_START);
        expect((await gw.request(`/view/demo?ticket=${ticket}`)).status).toBe(401);
      }
      await expectOpens(tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: await loggedIn(gw.origin, 'alice', PASSWORDS.alice) }));
      const fresh = (await requestTicket(gw.origin, API_KEY, { desktop: 'demo', user: 'alice' })).ticket;
      await expectOpens(tryUpgrade(gw.wsUrl(`?desktop=demo&ticket=${fresh}`)));
    } finally {
      await gw.stop();
    }
  });

  it('ends the logins and sessions made with a password once the users file changes it (SIGHUP)', async () => {
    const users = { alice: { password: PASSWORDS.alice }, mallory: { password: PASSWORDS.mallory } };
    const gw = await startCli(passwordConfig, { files: { 'users.yaml': await usersYaml(users) } });
    try {
      const alice = await loggedIn(gw.origin, 'alice', PASSWORDS.alice);
      const malloryLogin = await loggedIn(gw.origin, 'mallory', PASSWORDS.mallory);
      const session = await tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: alice });
      if (!('client' in session)) throw new Error(`alice's session refused: HTTP ${session.status}`);

      const newPassword = 'alice changed her password';
      writeFileSync(join(gw.dir, 'users.yaml'), await usersYaml({ ...users, alice: { password: newPassword } }));
      gw.child.kill('SIGHUP');

      expect(await within(5_000, 'the session to close', session.client.closed)).toEqual({
        code: 4401,
        reason: 'Your account was removed or its password changed: log in again',
      });
      expect(await outcome(tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: alice }))).toEqual(refusedWith(401, 'Log in first'));
      expect((await gw.request('/', { headers: alice })).status).toBe(303);
      // Mallory's password did not change: her login lives on. Alice logs in with her new one.
      await expectOpens(tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: malloryLogin }));
      await expectOpens(tryUpgrade(gw.wsUrl('?desktop=demo'), { headers: await loggedIn(gw.origin, 'alice', newPassword) }));
    } finally {
      await gw.stop();
    }
  });
});
