/**
 * One-time tickets for embedding: the `POST /api/tickets` contract (201 and every refusal),
 * a ticket opening exactly one WebSocket and its viewer page before and after, tickets a
 * host application signs with its own Ed25519 or P-256 key, and the `ticket`,
 * `hash-password` and `api-key` subcommands of the built CLI.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verify as verifyPassword } from '@node-rs/argon2';
import { decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type ConfigInput } from '../../src/config/schema.js';
import { createGateway } from '../../src/gateway.js';
import { runDeskgate, startCli, type CliGateway } from '../helpers/cli-process.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send, type Reply, type RequestOptions } from '../helpers/http-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/processes.js';
import { newApiKey, requestTicket, type ApiKey } from '../helpers/tickets.js';
import { closeOpenedSockets, openDesktop, tryUpgrade } from '../helpers/ws-client.js';

const SECRET = 'a-ticket-secret-of-at-least-32-characters';
// Header mode trusting a proxy that is not on this machine: nothing here is logged in, so
// whatever opens a desktop below does so by its ticket alone.
const NOBODY_LOGGED_IN: ConfigInput = { auth: { mode: 'header' }, trustProxy: ['192.0.2.0/24'], demo: true };

afterEach(() => closeOpenedSockets());

/** `POST /api/tickets` with a JSON body (or any string), as a console sends it; `options.headers` go on top. */
function postTicket(gw: RunningGateway, key: string | undefined, body: unknown, options: RequestOptions = {}): Promise<Reply> {
  return send(`${gw.httpUrl}/api/tickets`, {
    ...options,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', ...(key === undefined ? {} : { Authorization: `Bearer ${key}` }), ...options.headers },
  });
}

const ticketQuery = (desktop: string, ticket: string) => `?desktop=${desktop}&ticket=${encodeURIComponent(ticket)}`;

describe('POST /api/tickets', () => {
  const apiKey = newApiKey();
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({ ...NOBODY_LOGGED_IN, tickets: { secret: SECRET, apiKeys: [apiKey.hash] } });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('answers 201 with the ticket, its viewer URL and an ISO expiry, uncached', async () => {
    const before = Math.floor(Date.now() / 1000);
    const reply = await postTicket(gw, apiKey.key, { desktop: 'demo', user: 'alice' });
    expect(reply.status).toBe(201);
    expect(reply.headers['cache-control']).toBe('no-store');
    const body = JSON.parse(reply.body) as { ticket: string; url: string; expiresAt: string };
    expect(Object.keys(body).sort()).toEqual(['expiresAt', 'ticket', 'url']);
    expect(body.url).toBe(`/view/demo?ticket=${encodeURIComponent(body.ticket)}`);
    expect(new Date(body.expiresAt).toISOString()).toBe(body.expiresAt);

    const claims = decodeJwt(body.ticket);
    expect(decodeProtectedHeader(body.ticket).alg).toBe('HS256');
    expect(claims).toMatchObject({ desk: 'demo', sub: 'alice', vo: false, jti: expect.any(String) });
    expect((claims.exp as number) - Math.floor(claims.iat as number)).toBe(60); // tickets.defaultTtlSeconds; iat to the millisecond
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(Date.parse(body.expiresAt)).toBe((claims.exp as number) * 1000);
  });

  it('refuses a missing or wrong API key with 401 and WWW-Authenticate: Bearer', async () => {
    for (const key of [undefined, 'dgk_wrong', `${apiKey.key}x`]) {
      // failures are throttled per address: keep them off the other tests' address
      const reply = await postTicket(gw, key, { desktop: 'demo', user: 'alice' }, { localAddress: '127.0.0.3' });
      expect(reply.status, String(key)).toBe(401);
      expect(reply.headers['www-authenticate']).toBe('Bearer');
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'DG_ERR_UNAUTHENTICATED' });
    }
  });

  it('refuses a body that is not JSON with 415', async () => {
    const reply = await postTicket(gw, apiKey.key, 'desktop=demo&user=alice', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    expect(reply.status).toBe(415);
  });

  it('refuses bad JSON, unknown fields, bad values and a ttl over the maximum with 400, naming the problem', async () => {
    const message = async (body: unknown) => {
      const reply = await postTicket(gw, apiKey.key, body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      return (JSON.parse(reply.body) as { message: string }).message;
    };
    expect(await message('{"desktop": "demo",')).toBe('The request body is not valid JSON');
    expect(await message({ desktop: 'demo', user: 'alice', admin: true })).toContain('admin');
    expect(await message({ desktop: 'demo', user: 'two words' })).toMatch(/^user: /);
    expect(await message({ desktop: 'demo', user: 'alice', viewOnly: 'yes' })).toMatch(/^viewOnly: /);
    expect(await message({ desktop: 'demo', user: 'alice', ttlSeconds: 301 })).toBe('ttlSeconds: expected at most 300');
    expect(await message({ desktop: 'demo', user: 'alice', ttlSeconds: 1.5 })).toMatch(/^ttlSeconds: /);
  });

  it('answers 404 for a desktop it does not have', async () => {
    const reply = await postTicket(gw, apiKey.key, { desktop: 'nowhere', user: 'alice' });
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.body)).toEqual({ error: 'DG_ERR_UNKNOWN_DESKTOP', message: "There is no desktop named 'nowhere'" });
  });

  it('refuses a body over 4 KiB with 413', async () => {
    const reply = await postTicket(gw, apiKey.key, { desktop: 'demo', user: 'alice', padding: 'x'.repeat(5000) });
    expect(reply.status).toBe(413);
  });

  it('answers 404 on a gateway that does not issue tickets', async () => {
    const plain = await startGateway(NOBODY_LOGGED_IN);
    try {
      const reply = await postTicket(plain, apiKey.key, { desktop: 'demo', user: 'alice' });
      expect(reply.status).toBe(404);
      expect(JSON.parse(reply.body)).toMatchObject({ error: 'DG_ERR_NOT_ENABLED' });
    } finally {
      await plain.gateway.destroy();
    }
  });
});

describe('a ticket', () => {
  const apiKey = newApiKey();
  const logs = captureLogs();
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({ ...NOBODY_LOGGED_IN, tickets: { secret: SECRET, apiKeys: [apiKey.hash] } }, { logger: logs.logger });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('opens exactly one WebSocket: the second use is refused with 401', async () => {
    const { ticket } = await requestTicket(gw.httpUrl, apiKey, { desktop: 'demo', user: 'alice' });
    await openDesktop(gw.wsUrl(ticketQuery('demo', ticket)));
    const replay = await tryUpgrade(gw.wsUrl(ticketQuery('demo', ticket)));
    expect(replay).toMatchObject({ status: 401, body: 'The ticket has already been used: ask for a new one\n' });
  });

  it('opens the viewer page without a login until the WebSocket has used it, then says it was used', async () => {
    const { ticket, url } = await requestTicket(gw.httpUrl, apiKey, { desktop: 'demo', user: 'alice' });
    for (const attempt of ['first', 'again']) {
      const page = await send(`${gw.httpUrl}${url}`);
      expect(page.status, attempt).toBe(200); // the page does not use the ticket up
      expect(page.headers['cache-control']).toBe('no-store');
      expect(page.headers['referrer-policy']).toBe('no-referrer');
      expect(page.body).toContain('data-desktop="demo" data-view-only="false"');
    }
    await openDesktop(gw.wsUrl(ticketQuery('demo', ticket)));
    const used = await send(`${gw.httpUrl}${url}`);
    expect(used.status).toBe(401);
    expect(used.body).toContain('already been used');
    expect(used.headers['cache-control']).toBe('no-store');
  });

  it('a view-only ticket renders a view-only viewer and starts a view-only session for its user', async () => {
    const { ticket, url } = await requestTicket(gw.httpUrl, apiKey, { desktop: 'demo', user: 'watcher', viewOnly: true });
    expect((await send(`${gw.httpUrl}${url}`)).body).toContain('data-view-only="true"');
    await openDesktop(gw.wsUrl(ticketQuery('demo', ticket)));
    const started = () => logs.lines.find((l) => l.msg === 'session start' && l.user === 'watcher');
    await waitFor(() => started() !== undefined, 'the session start line');
    expect(started()).toMatchObject({ desktop: 'demo', viewOnly: true });
    expect(JSON.stringify(logs.lines)).not.toContain(ticket); // tickets are credentials: never logged
  });

  it('without a ticket nothing opens on this gateway', async () => {
    expect((await send(`${gw.httpUrl}/view/demo`)).status).toBe(401);
    expect(await tryUpgrade(gw.wsUrl('demo'))).toMatchObject({ status: 401 });
  });
});

describe('tickets minted by a host application', () => {
  let dir: string;

  /** A key pair in PEM files, as a host application would hand over its public key. */
  function keyFiles(name: string, type: 'ed25519' | 'p256') {
    const pair = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const files = { publicKeyFile: join(dir, `${name}.pub.pem`), privateKeyFile: join(dir, `${name}.key.pem`) };
    writeFileSync(files.publicKeyFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(files.privateKeyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    return { ...files, privateKey: pair.privateKey, publicKey: pair.publicKey };
  }

  function hostTicket(privateKey: KeyObject, alg: string, desktop = 'demo'): Promise<string> {
    return (
      new SignJWT({ desk: desktop })
        .setProtectedHeader({ alg, typ: 'JWT' })
        .setSubject('host-user')
        .setJti(randomUUID())
        // To the millisecond, as the README advises: in whole seconds, a ticket issued in the
        // second the gateway started would count as issued before it, and be refused.
        .setIssuedAt(Date.now() / 1000)
        .setExpirationTime('60s')
        .sign(privateKey)
    );
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'deskgate-keys-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const { type, alg } of [
    { type: 'ed25519', alg: 'EdDSA' },
    { type: 'p256', alg: 'ES256' },
  ] as const) {
    it(`accepts a ${alg} ticket signed with the host's ${type} key, refuses one signed by another key, and issues none itself`, async () => {
      const host = keyFiles(`host-${type}`, type);
      const stranger = keyFiles(`stranger-${type}`, type);
      const gw = await startGateway({ ...NOBODY_LOGGED_IN, tickets: { publicKeyFile: host.publicKeyFile } });
      try {
        await openDesktop(gw.wsUrl(ticketQuery('demo', await hostTicket(host.privateKey, alg))));
        const forged = await tryUpgrade(gw.wsUrl(ticketQuery('demo', await hostTicket(stranger.privateKey, alg))));
        expect(forged).toMatchObject({ status: 401, body: 'The ticket is not valid\n' });
        expect((await postTicket(gw, 'dgk_any', { desktop: 'demo', user: 'alice' })).status).toBe(404);
      } finally {
        await gw.gateway.destroy();
      }
    });
  }

  it('with the private key file as well, issues EdDSA tickets through the API that open a session', async () => {
    const keys = keyFiles('issuer', 'ed25519');
    const apiKey: ApiKey = newApiKey();
    const gw = await startGateway({
      ...NOBODY_LOGGED_IN,
      tickets: { publicKeyFile: keys.publicKeyFile, privateKeyFile: keys.privateKeyFile, apiKeys: [apiKey.hash] },
    });
    try {
      const { ticket } = await requestTicket(gw.httpUrl, apiKey, { desktop: 'demo', user: 'alice', ttlSeconds: 30 });
      expect(decodeProtectedHeader(ticket).alg).toBe('EdDSA');
      const { payload } = await jwtVerify(ticket, keys.publicKey, { algorithms: ['EdDSA'] });
      expect(payload).toMatchObject({ desk: 'demo', sub: 'alice' });
      await openDesktop(gw.wsUrl(ticketQuery('demo', ticket)));
    } finally {
      await gw.gateway.destroy();
    }
  });

  it('refuses to start with a private key file that does not belong to the public key file', async () => {
    const one = keyFiles('one', 'ed25519');
    const other = keyFiles('other', 'ed25519');
    const config = parseConfig({
      ...NOBODY_LOGGED_IN,
      listen: '127.0.0.1:0',
      tickets: { publicKeyFile: one.publicKeyFile, privateKeyFile: other.privateKeyFile },
    });
    await expect(createGateway(config)).rejects.toThrow('tickets.privateKeyFile does not belong to tickets.publicKeyFile');
  });

  it('refuses to start with a public key of a kind it cannot verify, naming the key', async () => {
    const rsa = join(dir, 'rsa.pub.pem');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }));
    const config = parseConfig({ ...NOBODY_LOGGED_IN, listen: '127.0.0.1:0', tickets: { publicKeyFile: rsa } });
    await expect(createGateway(config)).rejects.toThrow('tickets.publicKeyFile must be an Ed25519 or P-256 public key, not rsa');
  });
});

describe('deskgate subcommands', () => {
  let gw: CliGateway;
  let configFile: string;

  beforeAll(async () => {
    gw = await startCli({ tickets: { secret: SECRET }, demo: true });
    configFile = join(gw.dir, 'deskgate.yaml');
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('ticket prints a URL whose ticket opens one session on a gateway started from the same config', async () => {
    const run = await runDeskgate(['ticket', '--config', configFile, '--desktop', 'demo', '--user', 'u', '--ttl', '30']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const printed = run.stdout.trim();
    expect(printed).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${gw.port}/view/demo\\?ticket=[\\w.-]+$`));
    const ticket = new URL(printed).searchParams.get('ticket') as string;
    const claims = decodeJwt(ticket);
    expect(claims).toMatchObject({ desk: 'demo', sub: 'u', vo: false });
    expect((claims.exp as number) - Math.floor(claims.iat as number)).toBe(30);

    expect((await send(printed)).status).toBe(200);
    await openDesktop(gw.wsUrl(ticketQuery('demo', ticket)));
    expect(await tryUpgrade(gw.wsUrl(ticketQuery('demo', ticket)))).toMatchObject({ status: 401 });
  });

  it('hash-password reads the password on stdin and prints an argon2id hash that verifies it', async () => {
    const run = await runDeskgate(['hash-password'], { stdin: 'correct horse battery\n' });
    expect(run.code).toBe(0);
    const hash = run.stdout.trim();
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(await verifyPassword(hash, 'correct horse battery')).toBe(true);
    expect(await verifyPassword(hash, 'correct horse battery\n')).toBe(false);
  });

  it('api-key prints a key and the hash under which the ticket API accepts it', async () => {
    const run = await runDeskgate(['api-key']);
    expect(run.code).toBe(0);
    const key = /^key: {2}(dgk_[\w-]+)$/m.exec(run.stdout)?.[1];
    const hash = /^hash: (sha256:[0-9a-f]{64})$/m.exec(run.stdout)?.[1];
    expect(key && hash, run.stdout).toBeTruthy();
    const issuer = await startGateway({ ...NOBODY_LOGGED_IN, tickets: { secret: SECRET, apiKeys: [hash as string] } });
    try {
      expect((await postTicket(issuer, key, { desktop: 'demo', user: 'alice' })).status).toBe(201);
      expect((await postTicket(issuer, `${key}x`, { desktop: 'demo', user: 'alice' })).status).toBe(401);
    } finally {
      await issuer.gateway.destroy();
    }
  });

  it('ticket exits 2 naming a missing --user or an unknown desktop', async () => {
    const noUser = await runDeskgate(['ticket', '--config', configFile, '--desktop', 'demo']);
    expect(noUser.code).toBe(2);
    expect(noUser.stderr).toContain('--user');
    expect(noUser.stdout).toBe('');
    const unknown = await runDeskgate(['ticket', '--config', configFile, '--desktop', 'lab9', '--user', 'u']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--desktop: there is no desktop named 'lab9'");
    expect(unknown.stdout).toBe('');
  });
});
