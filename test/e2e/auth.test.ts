/// <reference lib="dom" />
/**
 * Authentication as a person meets it, in headless Chromium against a gateway in password
 * mode: the login form lets the right password in and opens the desktop; after logging
 * out neither the page, nor the viewer, nor the old cookie opens a WebSocket. A ticket
 * link opens its desktop without a login exactly once: a reload or a replay is refused.
 * Also takes the README's picture of the login page (docs/login.png).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeUsers } from '../helpers/auth.js';
import { launchChromium } from '../helpers/browser.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { submitLogin } from '../helpers/login.js';
import { waitFor } from '../helpers/processes.js';
import { newApiKey, requestTicket } from '../helpers/tickets.js';
import { upgradeStatus } from '../helpers/ws-client.js';

const SCREENSHOT = fileURLToPath(new URL('../../docs/login.png', import.meta.url));
const PASSWORD = 'correct horse battery staple';
const API_KEY = newApiKey();

/** What becomes of a WebSocket that the page's own script opens to the gateway: "open", or how it closed. */
function socketFromPage(page: Page, desktop: string): Promise<string> {
  return page.evaluate(
    (name) =>
      new Promise<string>((resolve) => {
        const url = new URL('/websockify', location.href);
        url.protocol = 'ws:';
        url.searchParams.set('desktop', name);
        const socket = new WebSocket(url.href, ['binary']);
        const deadline = setTimeout(() => resolve('no answer within 15 s'), 15_000);
        socket.addEventListener('open', () => {
          clearTimeout(deadline);
          resolve('open');
          socket.close();
        });
        socket.addEventListener('close', (event) => {
          clearTimeout(deadline);
          resolve(`closed ${event.code}`);
        });
      }),
    desktop,
  );
}

describe('authentication in Chromium', () => {
  let browser: Browser;
  let dir: string;
  let gw: RunningGateway;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'deskgate-auth-e2e-'));
    const usersFile = join(dir, 'users.yaml');
    [browser] = await Promise.all([launchChromium(), writeUsers(usersFile, { alice: { password: PASSWORD } })]);
    gw = await startGateway({
      demo: true,
      auth: { mode: 'password', usersFile },
      tickets: { secret: 'a ticket secret for the browser tests, 32+ chars', apiKeys: [API_KEY.hash] },
    });
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.gateway.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A fresh browser profile: no cookies from the other tests. */
  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 1024, height: 640 } });
    contexts.push(context);
    return context;
  }

  async function openTicket(request: { user: string; viewOnly?: boolean }): Promise<{ page: Page; ticket: string }> {
    const { ticket, url } = await requestTicket(gw.httpUrl, API_KEY, { desktop: 'demo', ...request });
    const page = await (await newContext()).newPage();
    await page.goto(`${gw.httpUrl}${url}`);
    await page.waitForSelector('body[data-state="connected"]');
    return { page, ticket };
  }

  function sessionOf(user: string) {
    return gw.gateway.sessions().find((session) => session.user === user);
  }

  it('logs a person in with the right password and opens the desktop they asked for', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${gw.httpUrl}/view/demo`);
    expect(page.url()).toBe(`${gw.httpUrl}/login?next=view%2Fdemo`);
    await page.screenshot({ path: SCREENSHOT });

    const refused = await submitLogin(page, 'alice', 'not her password');
    expect(refused?.status()).toBe(401);
    expect(await page.textContent('#login-error')).toBe('Wrong user name or password');

    await submitLogin(page, 'alice', PASSWORD);
    await page.waitForSelector('body[data-state="connected"]');
    expect(page.url()).toBe(`${gw.httpUrl}/view/demo`);
    expect(await page.isVisible('#screen canvas')).toBe(true);
    expect(sessionOf('alice')).toBeDefined();
    const cookies = await context.cookies();
    expect(cookies).toEqual([expect.objectContaining({ name: 'deskgate_login', httpOnly: true, sameSite: 'Strict' })]);
  });

  it('after logout, neither the page, the viewer, a script nor the old cookie gets a WebSocket', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${gw.httpUrl}/view/demo`);
    await submitLogin(page, 'alice', PASSWORD);
    await page.waitForSelector('body[data-state="connected"]');
    const [cookie] = await context.cookies();
    const oldCookie = { Cookie: `${cookie?.name}=${cookie?.value}` };
    // The same probes succeed while logged in, so their refusals below are the logout's doing.
    expect(await socketFromPage(page, 'demo')).toBe('open');
    expect(await upgradeStatus(gw.wsUrl('demo'), { headers: oldCookie })).toBe(101);

    const dashboard = await context.newPage();
    await dashboard.goto(`${gw.httpUrl}/`);
    await Promise.all([dashboard.waitForURL(`${gw.httpUrl}/login`), dashboard.getByRole('button', { name: 'Log out' }).click()]);
    expect(await context.cookies()).toEqual([]);

    // The viewer open in the other tab is ended by the logout, with the reason shown.
    await page.waitForSelector('body[data-close-code="4401"]');
    expect(await page.textContent('#status-message')).toBe('You logged out');
    // Trying again is refused during the upgrade.
    await page.click('#reconnect');
    await page.waitForSelector('body[data-state="disconnected"]');
    expect(await page.getAttribute('body', 'data-close-code')).toBe('1006');
    // The browser hides the upgrade's 401; the viewer asks the page and says what it means.
    await page.waitForFunction(() => document.getElementById('status-message')?.textContent === 'You are no longer logged in.');
    expect(await socketFromPage(page, 'demo')).toBe('closed 1006');

    await dashboard.goto(`${gw.httpUrl}/view/demo`);
    expect(dashboard.url()).toBe(`${gw.httpUrl}/login?next=view%2Fdemo`);
    // The cookie's value was revoked on the server, not only deleted from the browser.
    expect(await upgradeStatus(gw.wsUrl('demo'), { headers: oldCookie })).toBe(401);
  });

  it('opens a ticket link without a login once, and refuses a reload with the reason', async () => {
    const { page } = await openTicket({ user: 'carol' });
    expect(await page.isVisible('#screen canvas')).toBe(true);
    expect(await page.context().cookies()).toEqual([]);
    expect(sessionOf('carol')).toMatchObject({ viewOnly: false });
    expect(await page.isVisible('#view-only-tag')).toBe(false);

    const reloaded = await page.reload();
    expect(reloaded?.status()).toBe(401);
    expect(await page.textContent('#notice-message')).toBe('The ticket has already been used: ask for a new one');
  });

  it('refuses a ticket replayed on the WebSocket, and offers no Reconnect when its session ends', async () => {
    const { page, ticket } = await openTicket({ user: 'dave' });
    expect(await upgradeStatus(gw.wsUrl(`?desktop=demo&ticket=${encodeURIComponent(ticket)}`))).toBe(401);
    expect(sessionOf('dave')).toBeDefined();

    await page.evaluate(() => (window as unknown as { deskgateViewer: { rfb: { disconnect(): void } } }).deskgateViewer.rfb.disconnect());
    await page.waitForSelector('body[data-state="disconnected"]');
    expect(await page.isVisible('#overlay')).toBe(true);
    expect(await page.textContent('#status-detail')).toContain('ask for a new link');
    expect(await page.isHidden('#overlay-reconnect')).toBe(true);
    expect(await page.isHidden('#reconnect')).toBe(true);
    await waitFor(() => sessionOf('dave') === undefined, "dave's session to end at the gateway");
  });

  it('shows a view-only ticket as View only, without Ctrl+Alt+Del', async () => {
    const { page } = await openTicket({ user: 'erin', viewOnly: true });
    expect(await page.textContent('#view-only-tag')).toBe('View only');
    expect(await page.isVisible('#view-only-tag')).toBe(true);
    expect(await page.isHidden('#ctrl-alt-del')).toBe(true);
    expect(await page.isHidden('#clipboard-send')).toBe(true);
    expect(sessionOf('erin')).toMatchObject({ viewOnly: true });
  });
});
