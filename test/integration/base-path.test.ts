/**
 * The gateway under a path prefix: served below `basePath` (a proxy that passes paths through,
 * or a host's node:http server), or at its own root behind a proxy that strips the prefix and
 * says so with X-Forwarded-Prefix. Every URL it emits must lead back below the prefix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { createGateway, type Gateway } from '../../src/gateway.js';
import { cookieFrom, logIn, loginSetCookie, writeUsers } from '../helpers/auth.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { form, send } from '../helpers/http-client.js';
import { newApiKey, requestTicket } from '../helpers/tickets.js';
import { closeOpenedSockets, openDesktop, upgradeStatus } from '../helpers/ws-client.js';

const dir = mkdtempSync(join(tmpdir(), 'deskgate-base-'));
const usersFile = join(dir, 'users.yaml');
const apiKey = newApiKey();
const TICKETS = { secret: 'a-ticket-secret-of-at-least-32-characters', apiKeys: [apiKey.hash] };

afterAll(() => {
  closeOpenedSockets();
  rmSync(dir, { recursive: true, force: true });
});

/** Where a relative Location leads from the URL that was asked for. */
const resolved = (location: string | undefined, from: string): string => new URL(location ?? '', from).href;

describe('basePath /desktops', () => {
  let gw: RunningGateway;
  let base: string;

  beforeAll(async () => {
    await writeUsers(usersFile, { alice: { password: 'alice-password-1' } });
    gw = await startGateway({ basePath: '/desktops/', demo: true, auth: { mode: 'password', usersFile }, tickets: TICKETS });
    base = `${gw.httpUrl}/desktops`;
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('serves only below the prefix, and sends the prefix itself to its directory URL', async () => {
    expect((await send(`${gw.httpUrl}/healthz`)).status).toBe(404);
    expect((await send(`${gw.httpUrl}/desktopsX/healthz`)).status).toBe(404);
    expect((await send(`${base}/healthz`)).status).toBe(200);
    const bare = await send(`${base}?x=1`);
    expect(bare.status).toBe(303);
    expect(resolved(bare.headers.location, `${base}?x=1`)).toBe(`${base}/?x=1`);
    expect((await send(`${base}/static/viewer.js`)).status).toBe(200);
    // One segment to the browser, two once decoded: relative URLs would resolve outside the prefix.
    for (const path of ['/desktops%2Fview/demo', '/desktops%2flogin', '/desktops/view%2Fdemo', '/desktops/static%5Cviewer.js']) {
      expect((await send(`${gw.httpUrl}${path}`)).status, path).toBe(400);
    }
    expect((await send(`${base}/novnc/core/rfb.js`)).status).toBe(200);
  });

  it('logs in below the prefix: login redirect, form action, cookie path, and back to the page asked for', async () => {
    const page = `${base}/view/demo`;
    const askLogin = await send(page);
    expect(askLogin.status).toBe(303);
    const loginUrl = resolved(askLogin.headers.location, page);
    expect(loginUrl).toBe(`${base}/login?next=view%2Fdemo`);
    const form = await send(loginUrl);
    expect(form.body).toContain('action="./login"');
    expect(form.body).toContain('href="./static/dashboard.css"');

    const login = await logIn(base, 'alice', 'alice-password-1', { next: 'view/demo' });
    expect(login.status).toBe(303);
    expect(resolved(login.headers.location, `${base}/login`)).toBe(page);
    expect(loginSetCookie(login)).toMatch(/; Path=\/desktops;/);

    for (const next of ['%2e%2e/other-app', '../other-app', '/other-app', '//evil.example/']) {
      const away = await logIn(base, 'alice', 'alice-password-1', { next });
      expect(resolved(away.headers.location, `${base}/login`), next).toBe(`${base}/`);
    }

    const viewer = await send(page, { headers: cookieFrom(login) });
    expect(viewer.status).toBe(200);
    for (const url of ['../static/viewer.css', '../static/viewer.js', '../']) expect(viewer.body).toContain(`"${url}"`);
    expect(resolved('../static/viewer.js', page)).toBe(`${base}/static/viewer.js`);
  });

  it('takes the WebSocket below the prefix only', async () => {
    const cookie = cookieFrom(await logIn(base, 'alice', 'alice-password-1'));
    const ws = (path: string): string => `ws://127.0.0.1:${gw.port}${path}?desktop=demo`;
    await openDesktop(ws('/desktops/websockify'), { headers: cookie });
    expect(await upgradeStatus(ws('/websockify'), { headers: cookie })).toBe(404);
  });

  it('gives ticket links with the prefix', async () => {
    const issued = await requestTicket(base, apiKey, { desktop: 'demo', user: 'bob' });
    expect(issued.url).toMatch(/^\/desktops\/view\/demo\?ticket=/);
  });
});

describe('a proxy that strips the prefix and says so with X-Forwarded-Prefix', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({ demo: true, auth: { mode: 'password', usersFile }, tickets: TICKETS, trustProxy: ['127.0.0.1/32'] });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('scopes the cookie and ticket links to the forwarded prefix; from anyone untrusted the header is ignored', async () => {
    const prefix = { 'X-Forwarded-Prefix': '/ext/' };
    const alice = form({ user: 'alice', password: 'alice-password-1' });
    const login = await send(`${gw.httpUrl}/login`, { body: alice.body, headers: { ...alice.headers, ...prefix } });
    expect(loginSetCookie(login)).toMatch(/; Path=\/ext;/);
    const issued = await send(`${gw.httpUrl}/api/tickets`, {
      headers: { Authorization: `Bearer ${apiKey.key}`, 'Content-Type': 'application/json', ...prefix },
      body: JSON.stringify({ desktop: 'demo', user: 'bob' }),
    });
    expect(JSON.parse(issued.body)).toMatchObject({ url: expect.stringMatching(/^\/ext\/view\/demo\?ticket=/) });

    const untrusted = await startGateway({ demo: true, auth: { mode: 'password', usersFile }, trustProxy: ['10.9.9.9/32'] });
    try {
      const plain = await send(`${untrusted.httpUrl}/login`, { body: alice.body, headers: { ...alice.headers, ...prefix } });
      expect(loginSetCookie(plain)).toMatch(/; Path=\/;/);
    } finally {
      await untrusted.gateway.destroy();
    }
  });
});

describe("mounted in a host's node:http server under /remote", () => {
  let gateway: Gateway;
  let host: Server;
  let url: string;

  beforeAll(async () => {
    gateway = await createGateway(parseConfig({ basePath: '/remote', demo: true, log: { level: 'silent' } }));
    host = createServer((req, res) => {
      if (req.url === '/remote' || req.url?.startsWith('/remote/') || req.url?.startsWith('/remote?')) return gateway.handleRequest(req, res);
      res.end('the host application');
    });
    host.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await gateway?.destroy();
    await new Promise((resolve) => host?.close(resolve));
  });

  it('serves its pages and the WebSocket under the mount, leaves the host its routes, and reports ready', async () => {
    expect((await send(`${url}/hello`)).body).toBe('the host application');
    const dashboard = await send(`${url}/remote/`);
    expect(dashboard.status).toBe(200);
    expect(dashboard.body).toContain('href="view/demo"');
    expect((await send(`${url}/remote/readyz`)).status).toBe(200);
    await openDesktop(`${url.replace('http', 'ws')}/remote/websockify?desktop=demo`);
  });
});
