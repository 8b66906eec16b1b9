/// <reference lib="dom" />
/**
 * The recipes of docs/PROXIES.md with the real nginx, Caddy and HAProxy from Debian in front
 * of a real gateway: at the root, under /desktops/ with paths passed through (basePath) and
 * with the prefix stripped (X-Forwarded-Prefix); nginx terminating TLS; nginx's minimal
 * WebSocket block (refused for its Origin, with a message that says why); an idle session
 * outliving nginx's default proxy_read_timeout; and Chromium logging in and seeing the demo
 * desktop through each proxy. The suites run concurrently, so the idle minute overlaps the rest.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { cookieFrom, logIn, loginSetCookie, writeUsers } from '../helpers/auth.js';
import { canvasPixel, launchChromium } from '../helpers/browser.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { form, send, type RequestOptions } from '../helpers/http-client.js';
import { submitLogin } from '../helpers/login.js';
import { waitFor } from '../helpers/processes.js';
import { startCaddy, startHaproxy, startNginx, stopProxies, type RunningProxy } from '../helpers/proxies.js';
import { startPeer, rfbServer, type Peer } from '../helpers/tcp-peers.js';
import { newApiKey, type IssuedTicket } from '../helpers/tickets.js';
import { makeCertificate } from '../helpers/tls.js';
import { closeOpenedSockets, openDesktop, roundTrip, tryUpgrade, upgradeStatus } from '../helpers/ws-client.js';

const DOC = fileURLToPath(new URL('../../docs/PROXIES.md', import.meta.url));
const SCREENSHOT = fileURLToPath(new URL('../../docs/viewer-behind-nginx.png', import.meta.url));
/** How the recipes name the gateway's address; docs/PROXIES.md writes 127.0.0.1:8080. */
const GATEWAY = '__GATEWAY__';
const DOC_GATEWAY = '127.0.0.1:8080';
const PASSWORD = 'alice-password-1';
const WHITE = [0xff, 0xff, 0xff];
/** nginx's default proxy_read_timeout, and a little more. */
const IDLE_MS = 65_000;

const dir = mkdtempSync(join(tmpdir(), 'deskgate-proxies-'));
const usersFile = join(dir, 'users.yaml');
const apiKey = newApiKey();
const TICKETS = { secret: 'a-ticket-secret-of-at-least-32-characters', apiKeys: [apiKey.hash] };

// ---- The recipes, as docs/PROXIES.md shows them (GATEWAY standing for the gateway's address) ----

const NGINX_HTTP = `
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}

upstream deskgate {
    server ${GATEWAY};
}`;

const NGINX_HEADERS = `
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`;

const NGINX_ROOT = `
location / {
    proxy_pass http://deskgate;${NGINX_HEADERS}
    proxy_set_header X-Forwarded-Prefix "";
}`;

const NGINX_PASS_THROUGH = `
location /desktops/ {
    proxy_pass http://deskgate;${NGINX_HEADERS}
    proxy_set_header X-Forwarded-Prefix "";
}`;

const NGINX_STRIP = `
location /desktops/ {
    proxy_pass http://deskgate/;${NGINX_HEADERS}
    proxy_set_header X-Forwarded-Prefix /desktops;
}`;

/** nginx's documented minimal WebSocket block: no Host, no X-Forwarded-*. */
const NGINX_MINIMAL = `
location / {
    proxy_pass http://deskgate;
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
}`;

const CADDY_ROOT = `
reverse_proxy ${GATEWAY} {
	header_up -X-Forwarded-Prefix
}`;

const CADDY_PASS_THROUGH = `
@deskgate path /desktops /desktops/*
handle @deskgate {
	reverse_proxy ${GATEWAY} {
		header_up -X-Forwarded-Prefix
	}
}`;

const CADDY_STRIP = `
redir /desktops /desktops/
handle_path /desktops/* {
	reverse_proxy ${GATEWAY} {
		header_up X-Forwarded-Prefix /desktops
	}
}`;

const HAPROXY_DEFAULTS = `
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h`;

const HAPROXY_HEADERS = `
    option forwardfor
    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request del-header X-Forwarded-Prefix`;

const HAPROXY_BACKEND = `
backend deskgate
    server gateway ${GATEWAY}`;

const HAPROXY_ROOT = `${HAPROXY_HEADERS}
    default_backend deskgate`;

const HAPROXY_PASS_THROUGH = `${HAPROXY_HEADERS}
    acl deskgate path /desktops
    acl deskgate path_beg /desktops/
    use_backend deskgate if deskgate`;

const HAPROXY_STRIP = `${HAPROXY_HEADERS}
    http-request redirect location /desktops/ code 301 if { path /desktops }
    acl deskgate path_beg /desktops/
    use_backend deskgate_stripped if deskgate`;

const HAPROXY_STRIPPED_BACKEND = `
backend deskgate_stripped
    http-request set-header X-Forwarded-Prefix /desktops
    http-request set-path %[path,regsub(^/desktops/,/)]
    server gateway ${GATEWAY}`;

/** Beside the gateway under /desktops/, the proxy answers for another application. */
const OTHER_APPLICATION = 'the other application';

// ---- Starting each proxy with a recipe ----

type Layout = 'root' | 'pass-through' | 'strip';

interface Recipe {
  proxy: 'nginx' | 'caddy' | 'haproxy';
  layout: Layout;
  /** The parts docs/PROXIES.md must show verbatim. */
  shown: string[];
  start(gateway: string): Promise<RunningProxy>;
}

const at = (gateway: string, text: string): string => text.replaceAll(GATEWAY, gateway);

function nginx(location: string, gateway: string, options: { tls?: boolean } = {}): Promise<RunningProxy> {
  const certificate = options.tls ? makeCertificate('ec') : undefined;
  return startNginx(
    ({ port, dir: where }) => `${at(gateway, NGINX_HTTP)}
server {
    listen 127.0.0.1:${port}${certificate ? ' ssl' : ''};
    ${certificate ? `ssl_certificate ${where}/cert.pem;\n    ssl_certificate_key ${where}/key.pem;` : ''}
    ${location}
    ${location.includes('location / ') ? '' : `location / { return 200 "${OTHER_APPLICATION}"; }`}
}`,
    certificate ? { files: { 'cert.pem': certificate.cert, 'key.pem': certificate.key }, scheme: 'https' } : {},
  );
}

function caddy(routes: string, gateway: string): Promise<RunningProxy> {
  const other = routes.includes('/desktops') ? `handle {\n\trespond "${OTHER_APPLICATION}"\n}` : '';
  return startCaddy(({ port }) => `http://127.0.0.1:${port} {\n${at(gateway, routes)}\n${other}\n}`);
}

function haproxy(frontend: string, gateway: string): Promise<RunningProxy> {
  const other = frontend.includes('/desktops')
    ? `    default_backend other\n\nbackend other\n    http-request return status 200 content-type text/plain string "${OTHER_APPLICATION}"\n`
    : '';
  const backend = frontend.includes('deskgate_stripped') ? HAPROXY_STRIPPED_BACKEND : HAPROXY_BACKEND;
  return startHaproxy(
    ({ port }) => `${HAPROXY_DEFAULTS}

frontend www
    bind 127.0.0.1:${port}${frontend}
${other}
${at(gateway, backend)}`,
  );
}

const RECIPES: Recipe[] = [
  { proxy: 'nginx', layout: 'root', shown: [NGINX_HTTP, NGINX_ROOT], start: (gw) => nginx(NGINX_ROOT, gw) },
  { proxy: 'nginx', layout: 'pass-through', shown: [NGINX_PASS_THROUGH], start: (gw) => nginx(NGINX_PASS_THROUGH, gw) },
  { proxy: 'nginx', layout: 'strip', shown: [NGINX_STRIP], start: (gw) => nginx(NGINX_STRIP, gw) },
  { proxy: 'caddy', layout: 'root', shown: [CADDY_ROOT], start: (gw) => caddy(CADDY_ROOT, gw) },
  { proxy: 'caddy', layout: 'pass-through', shown: [CADDY_PASS_THROUGH], start: (gw) => caddy(CADDY_PASS_THROUGH, gw) },
  { proxy: 'caddy', layout: 'strip', shown: [CADDY_STRIP], start: (gw) => caddy(CADDY_STRIP, gw) },
  { proxy: 'haproxy', layout: 'root', shown: [HAPROXY_DEFAULTS, HAPROXY_ROOT, HAPROXY_BACKEND], start: (gw) => haproxy(HAPROXY_ROOT, gw) },
  { proxy: 'haproxy', layout: 'pass-through', shown: [HAPROXY_PASS_THROUGH], start: (gw) => haproxy(HAPROXY_PASS_THROUGH, gw) },
  { proxy: 'haproxy', layout: 'strip', shown: [HAPROXY_STRIP, HAPROXY_STRIPPED_BACKEND], start: (gw) => haproxy(HAPROXY_STRIP, gw) },
];

const prefixOf = (layout: Layout): string => (layout === 'root' ? '' : '/desktops');

/** Where a Location leads from the URL that was asked for. */
const resolved = (location: string | undefined, from: string): string => new URL(location ?? '', from).href;

/** The WebSocket URL behind a proxy, for a query string. */
const wsUrl = (proxy: RunningProxy, prefix: string, query: string): string => `${proxy.origin.replace(/^http/, 'ws')}${prefix}/websockify${query}`;

/** POST /api/tickets as a console does, through the proxy. */
async function issueTicket(base: string, options: RequestOptions = {}): Promise<IssuedTicket> {
  const reply = await send(`${base}/api/tickets`, {
    ...options,
    headers: { Authorization: `Bearer ${apiKey.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ desktop: 'demo', user: 'bob' }),
  });
  if (reply.status !== 201) throw new Error(`POST /api/tickets answered ${reply.status}: ${reply.body}`);
  return JSON.parse(reply.body) as IssuedTicket;
}

describe.concurrent('deskgate behind nginx, Caddy and HAProxy', () => {
  /** At the root of its origin: for proxies at the root and for those that strip the prefix. */
  let atRoot: RunningGateway;
  /** With basePath /desktops: for proxies that pass paths through. */
  let below: RunningGateway;
  /** Pings off: the control for the idle test. */
  let silent: RunningGateway;
  let echo: Peer;

  beforeAll(async () => {
    await writeUsers(usersFile, { alice: { password: PASSWORD } });
    echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    const common = {
      demo: true,
      desktops: [`echo=127.0.0.1:${echo.port}`],
      auth: { mode: 'password' as const, usersFile },
      tickets: TICKETS,
      trustProxy: ['127.0.0.1/32'],
    };
    [atRoot, below, silent] = await Promise.all([
      startGateway(common),
      startGateway({ ...common, basePath: '/desktops' }),
      startGateway({ ...common, session: { keepaliveMs: 0 } }),
    ]);
  });
  afterAll(async () => {
    closeOpenedSockets();
    await stopProxies(); // those of a suite whose setup failed half-way; the others stopped already
    await Promise.all([atRoot?.gateway.destroy(), below?.gateway.destroy(), silent?.gateway.destroy(), echo?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const gatewayFor = (layout: Layout): RunningGateway => (layout === 'pass-through' ? below : atRoot);
  const addressOf = (gw: RunningGateway): string => `127.0.0.1:${gw.port}`;

  // First, so that its minute overlaps everything else.
  describe("an idle session and nginx's default proxy_read_timeout (60 s)", () => {
    let proxy: RunningProxy;
    let control: RunningProxy;
    beforeAll(async () => {
      [proxy, control] = await Promise.all([nginx(NGINX_ROOT, addressOf(atRoot)), nginx(NGINX_ROOT, addressOf(silent))]);
    });
    afterAll(async () => {
      await Promise.all([proxy?.stop(), control?.stop()]);
    });

    it('outlives the timeout: the gateway’s pings keep it open, and a round trip works after 65 quiet seconds', { timeout: 90_000 }, async ({ expect }) => {
      const open = async (p: RunningProxy): Promise<Awaited<ReturnType<typeof openDesktop>>> => {
        const cookie = cookieFrom(await logIn(p.origin, 'alice', PASSWORD));
        return openDesktop(wsUrl(p, '', '?desktop=echo'), { headers: cookie, origin: p.origin });
      };
      const [kept, cut] = await Promise.all([open(proxy), open(control)]);
      const started = Date.now();
      let cutAfter = 0;
      void cut.closed.then(() => (cutAfter = Date.now() - started));

      await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
      expect(await roundTrip(kept, 'still here')).toBe('still here');
      kept.ws.close();

      // The control: without pings, nginx cuts the same recipe's session after its 60 s.
      expect(cutAfter).toBeGreaterThan(55_000);
      expect((await cut.closed).code).toBe(1006);
      expect(control.log()).toMatch(/upstream timed out .* while proxying upgraded connection/);
      expect(proxy.log()).not.toMatch(/upstream timed out/);
    });
  });

  for (const recipe of RECIPES) {
    const prefix = prefixOf(recipe.layout);
    describe(`${recipe.proxy}, ${recipe.layout === 'root' ? 'at the root' : `under /desktops/, ${recipe.layout === 'strip' ? 'prefix stripped' : 'paths passed through'}`}`, () => {
      let proxy: RunningProxy;
      let base: string;
      beforeAll(async () => {
        proxy = await recipe.start(addressOf(gatewayFor(recipe.layout)));
        base = `${proxy.origin}${prefix}`;
      });
      afterAll(async () => {
        await proxy?.stop();
      });

      it('serves the login page with its stylesheet, and the dashboard once logged in', async ({ expect }) => {
        const loginPage = await send(`${base}/login`);
        expect(loginPage.status).toBe(200);
        expect(loginPage.body).toContain('href="./static/dashboard.css"');
        expect((await send(resolved('./static/dashboard.css', `${base}/login`))).status).toBe(200);

        const cookie = cookieFrom(await logIn(base, 'alice', PASSWORD, { origin: proxy.origin }));
        const dashboard = await send(`${base}/`, { headers: cookie });
        expect(dashboard.status).toBe(200);
        expect(dashboard.body).toContain('href="view/demo"');
      });

      it('logs in: redirected to the login page and back to the page asked for, the cookie scoped to the prefix', async ({ expect }) => {
        const page = `${base}/view/demo`;
        const askLogin = await send(page);
        expect(askLogin.status).toBe(303);
        expect(resolved(askLogin.headers.location, page)).toBe(`${base}/login?next=view%2Fdemo`);

        const login = await logIn(base, 'alice', PASSWORD, { next: 'view/demo', origin: proxy.origin });
        expect(login.status).toBe(303);
        expect(resolved(login.headers.location, `${base}/login`)).toBe(page);
        expect(loginSetCookie(login)).toContain(`; Path=${prefix || '/'};`);
        expect(loginSetCookie(login)).not.toContain('Secure');
        expect((await send(page, { headers: cookieFrom(login) })).status).toBe(200);
      });

      it('opens a session through the proxy with the login cookie and the proxy’s own Origin', async ({ expect }) => {
        const cookie = cookieFrom(await logIn(base, 'alice', PASSWORD, { origin: proxy.origin }));
        const client = await openDesktop(wsUrl(proxy, prefix, '?desktop=demo'), { headers: cookie, origin: proxy.origin });
        client.ws.close();
        // The recipe overwrites X-Forwarded-Host: a browser cannot make the gateway take itself for another site.
        const forged = await upgradeStatus(wsUrl(proxy, prefix, '?desktop=demo'), {
          headers: { ...cookie, 'X-Forwarded-Host': 'evil.example' },
          origin: 'http://evil.example',
        });
        expect(forged).toBe(403);
      });

      it('opens the viewer page from a ticket link issued through the proxy', async ({ expect }) => {
        const issued = await issueTicket(base);
        expect(issued.url).toMatch(new RegExp(`^${prefix}/view/demo\\?ticket=`));
        const viewer = await send(`${proxy.origin}${issued.url}`);
        expect(viewer.status).toBe(200);
        expect(viewer.body).toContain('"../static/viewer.js"');
      });

      it('does not let a browser move the prefix with its own X-Forwarded-Prefix', async ({ expect }) => {
        const alice = form({ user: 'alice', password: PASSWORD });
        const forged = await send(`${base}/login`, { body: alice.body, headers: { ...alice.headers, 'X-Forwarded-Prefix': '/elsewhere' } });
        expect(loginSetCookie(forged)).toContain(`; Path=${prefix || '/'};`);
      });

      if (recipe.layout !== 'root') {
        it('sends /desktops to /desktops/ and leaves the rest of the site to the other application', async ({ expect }) => {
          const bare = await send(`${proxy.origin}/desktops`);
          expect([301, 302, 303, 308]).toContain(bare.status);
          expect(resolved(bare.headers.location, `${proxy.origin}/desktops`)).toBe(`${proxy.origin}/desktops/`);
          expect((await send(`${proxy.origin}/`)).body).toBe(OTHER_APPLICATION);
          expect((await send(`${proxy.origin}/login`)).body).toBe(OTHER_APPLICATION);
        });
      }
    });
  }

  describe('nginx terminating TLS, paths passed through to basePath /desktops', () => {
    let proxy: RunningProxy;
    let ca: Buffer;
    beforeAll(async () => {
      proxy = await nginx(NGINX_PASS_THROUGH, addressOf(below), { tls: true });
      ca = readFileSync(join(proxy.dir, 'cert.pem'));
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('gives a Secure cookie and HSTS, and takes WebSockets from https://, not http://, pages', async ({ expect }) => {
      const base = `${proxy.origin}/desktops`;
      const login = await logIn(base, 'alice', PASSWORD, { origin: proxy.origin, ca, next: 'view/demo' });
      expect(login.status).toBe(303);
      expect(loginSetCookie(login)).toMatch(/; Path=\/desktops;.*; Secure$/);
      expect(login.headers['strict-transport-security']).toBe('max-age=31536000');

      const url = wsUrl(proxy, '/desktops', '?desktop=demo');
      const client = await openDesktop(url, { headers: cookieFrom(login), origin: proxy.origin, ca });
      client.ws.close();
      const plain = await tryUpgrade(url, { headers: cookieFrom(login), origin: proxy.origin.replace('https:', 'http:'), ca });
      expect(plain.status).toBe(403);

      const issued = await issueTicket(base, { ca });
      expect((await send(`${proxy.origin}${issued.url}`, { ca })).status).toBe(200);
    });
  });

  describe("nginx's minimal WebSocket block (Upgrade and Connection only)", () => {
    let proxy: RunningProxy;
    beforeAll(async () => {
      proxy = await nginx(NGINX_MINIMAL, addressOf(atRoot));
    });
    afterAll(async () => {
      await proxy?.stop();
    });

    it('is refused for the browser’s Origin with a 403 that names the origin expected and the one received', async ({ expect }) => {
      const cookie = cookieFrom(await logIn(proxy.origin, 'alice', PASSWORD));
      const refused = await tryUpgrade(wsUrl(proxy, '', '?desktop=demo'), { headers: cookie, origin: proxy.origin });
      expect(refused.status).toBe(403);
      const body = 'body' in refused ? refused.body : '';
      expect(body).toMatch(/Origin .* is not allowed/);
      // Without Host, nginx sends its upstream's name: that is what the gateway takes itself for.
      expect(body).toContain(proxy.origin);
      expect(body).toContain('http://deskgate');
    });
  });

  describe('Chromium under /desktops/ through each proxy', () => {
    let browser: Browser;
    const proxies = new Map<string, RunningProxy>();
    beforeAll(async () => {
      const gw = addressOf(below);
      const [chromium, ...started] = await Promise.all([
        launchChromium(),
        nginx(NGINX_PASS_THROUGH, gw),
        caddy(CADDY_PASS_THROUGH, gw),
        haproxy(HAPROXY_PASS_THROUGH, gw),
        nginx(NGINX_MINIMAL, addressOf(atRoot)),
      ]);
      browser = chromium;
      for (const [i, name] of ['nginx', 'caddy', 'haproxy', 'minimal'].entries()) proxies.set(name, started[i] as RunningProxy);
    });
    afterAll(async () => {
      await browser?.close();
      await Promise.all([...proxies.values()].map((p) => p.stop()));
    });

    for (const name of ['nginx', 'caddy', 'haproxy']) {
      it(`logs in and shows the demo desktop behind ${name}`, async ({ expect }) => {
        const proxy = proxies.get(name) as RunningProxy;
        const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
        try {
          const page = await context.newPage();
          const viewer = `${proxy.origin}/desktops/view/demo`;
          await page.goto(viewer);
          expect(page.url()).toBe(`${proxy.origin}/desktops/login?next=view%2Fdemo`);
          await submitLogin(page, 'alice', PASSWORD);
          expect(page.url()).toBe(viewer);
          await page.waitForSelector('body[data-state="connected"]');
          await waitFor(async () => JSON.stringify(await canvasPixel(page, 512, 500)) === JSON.stringify(WHITE), 'the demo desktop drawn');
          if (name === 'nginx') await page.screenshot({ path: SCREENSHOT });
        } finally {
          await context.close();
        }
      });
    }

    it("tells the user why behind nginx's minimal WebSocket block, instead of 'connection lost'", async ({ expect }) => {
      const proxy = proxies.get('minimal') as RunningProxy;
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${proxy.origin}/view/demo`);
        await submitLogin(page, 'alice', PASSWORD);
        await page.waitForSelector('body[data-state="disconnected"]');
        await waitFor(async () => /refused this page's origin/.test((await page.textContent('#status-message')) ?? ''), 'the Origin explanation');
        expect(await page.textContent('#status-message')).toContain(proxy.origin);
      } finally {
        await context.close();
      }
    });
  });

  it('docs/PROXIES.md shows the configurations tested here', ({ expect }) => {
    const squeeze = (text: string): string => text.replace(/\s+/g, ' ').trim();
    const doc = squeeze(readFileSync(DOC, 'utf8'));
    for (const part of [...RECIPES.flatMap((recipe) => recipe.shown), NGINX_MINIMAL]) expect(doc, part).toContain(squeeze(at(DOC_GATEWAY, part)));
  });
});
