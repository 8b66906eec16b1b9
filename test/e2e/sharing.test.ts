/// <reference lib="dom" />
/**
 * Sharing as people see it, in Chromium with one browser context per person: the presence
 * list, a request for control and the controller's prompt, a teacher's takeover and the
 * notice the old controller gets, and an exclusive desktop's refusal naming its holder.
 * Takes the README's screenshot of a controlled desktop (docs/viewer-controlled.png).
 */
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/processes.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';

const SCREENSHOT = fileURLToPath(new URL('../../docs/viewer-controlled.png', import.meta.url));

let browser: Browser;
let xvnc: Xvnc;
let gw: RunningGateway;
const contexts: BrowserContext[] = [];

/** A person: a browser context whose requests a trusted proxy has vouched for. */
async function person(user: string, groups: string[] = []): Promise<Page> {
  const context = await browser.newContext({
    viewport: { width: 900, height: 560 },
    extraHTTPHeaders: { 'x-forwarded-user': user, 'x-forwarded-groups': groups.join(',') },
  });
  contexts.push(context);
  return context.newPage();
}

async function open(page: Page, desktop: string): Promise<void> {
  await page.goto(`${gw.httpUrl}/view/${desktop}`);
  await page.waitForSelector('body[data-state="connected"]');
  await page.waitForSelector('#presence:not([hidden])');
}

const text = (page: Page, selector: string): Promise<string> => page.locator(selector).innerText();

beforeAll(async () => {
  [browser, xvnc] = await Promise.all([launchChromium(), startXvnc({ width: 640, height: 400 })]);
  await xvnc.paint('#3a6ea5');
  const desktop = { host: '127.0.0.1', port: xvnc.port };
  gw = await startGateway({
    auth: { mode: 'header' },
    trustProxy: ['127.0.0.1/32'],
    admins: { users: ['root'] },
    desktops: [
      { name: 'class', ...desktop, description: 'Classroom', sharing: 'controlled', takeover: { groups: ['teachers'] } },
      { name: 'kiosk', ...desktop, sharing: 'exclusive' },
    ],
  });
});

afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close();
  await waitFor(() => gw.gateway.sessions().length === 0, 'the sessions to end');
});

afterAll(async () => {
  await gw?.gateway.close();
  await browser?.close();
  await xvnc?.stop();
});

describe('a controlled desktop in the browser', () => {
  it('shows who is there, asks the controller, hands control over, and lets a teacher take it', async () => {
    const alice = await person('alice');
    await open(alice, 'class');
    await waitFor(async () => (await text(alice, '#presence-summary')) === 'You have control.', 'alice to have control');

    const bob = await person('bob');
    await open(bob, 'class');
    await waitFor(async () => /^alice has control since/.test(await text(bob, '#presence-summary')), 'bob to see alice in control');
    expect(await bob.locator('#presence-people li').allInnerTexts()).toEqual(['alice (control)', 'bob (watching)']);
    expect(await bob.locator('body').getAttribute('data-role')).toBe('view');
    expect(await bob.locator('#ctrl-alt-del').isDisabled()).toBe(true);

    await bob.click('#request-control');
    await alice.waitForSelector('#control-prompt:not([hidden])');
    expect(await text(alice, '#control-prompt-text')).toBe('bob asks for control.');
    await waitFor(async () => /Waiting for alice/.test(await text(bob, '#presence-notice')), 'bob to wait for an answer');
    await alice.screenshot({ path: SCREENSHOT });

    await alice.click('#allow-control');
    await bob.waitForSelector('body[data-role="control"]');
    await alice.waitForSelector('body[data-role="view"]');
    expect(await text(alice, '#presence-notice')).toBe('You gave control to bob');
    expect(await bob.locator('#ctrl-alt-del').isDisabled()).toBe(false);

    const tom = await person('tom', ['teachers']);
    await open(tom, 'class');
    await tom.waitForSelector('#take-control:not([hidden])');
    expect(await tom.locator('#request-control').isHidden()).toBe(true);
    await tom.click('#take-control');
    await tom.waitForSelector('body[data-role="control"]');
    await waitFor(async () => (await text(bob, '#presence-notice')) === 'Control was taken by tom', 'bob to be told');
    await bob.waitForSelector('body[data-role="view"]');
    expect(await bob.locator('body').getAttribute('data-state')).toBe('connected');

    // The controller leaves: control is free, and the page offers it to anyone who may control.
    expect(await bob.locator('#take-control').isHidden()).toBe(true);
    await tom.close();
    await bob.waitForSelector('#take-control:not([hidden])');
    await bob.click('#take-control');
    await bob.waitForSelector('body[data-role="control"]');
    await alice.waitForSelector('#take-control[hidden]', { state: 'attached' });
  });

  it('lists live sessions for an administrator, who ends one from the page', async () => {
    const alice = await person('alice');
    await open(alice, 'class');
    const dave = await person('dave');
    await open(dave, 'kiosk');
    const root = await person('root');
    await root.goto(`${gw.httpUrl}/`);
    await root.click('a.nav');
    await root.waitForSelector('#sessions-body tr >> nth=1');
    const row = root.locator('#sessions-body tr', { hasText: 'alice' });
    expect(await row.locator('td').allInnerTexts()).toEqual(expect.arrayContaining(['class', 'alice', 'control', '127.0.0.1']));
    // An exclusive session opened with control relays its input unparsed: it can only end.
    expect(await root.locator('#sessions-body tr', { hasText: 'dave' }).getByRole('button').allInnerTexts()).toEqual(['End']);
    await dave.close();

    await row.getByRole('button', { name: 'Make view-only' }).click();
    await alice.waitForSelector('body[data-role="view"]');
    await waitFor(async () => (await text(alice, '#presence-notice')) === 'root took control from you', 'alice to be told');
    await waitFor(async () => (await row.locator('td').allInnerTexts()).includes('view only'), 'the list to show the new role');
    await row.getByRole('button', { name: 'End' }).click();
    await alice.waitForSelector('body[data-state="disconnected"]');
    expect(await text(alice, '#status-message')).toBe('Ended by an administrator (root)');
    await waitFor(async () => (await text(root, '#sessions-status')) === 'No sessions are open.', 'the list to empty');
    // Not for others: the page and the API refuse them.
    const bob = await person('bob');
    const page = await bob.goto(`${gw.httpUrl}/sessions`);
    expect(page?.status()).toBe(403);
  });

  it('refuses a second person on an exclusive desktop and says who holds it', async () => {
    const alice = await person('alice');
    await open(alice, 'kiosk');
    const bob = await person('bob');
    await bob.goto(`${gw.httpUrl}/view/kiosk`);
    // The page itself is refused while alice holds the desktop.
    expect(await text(bob, '#notice-message')).toMatch(/^Desktop 'kiosk' is in use by alice since \d\d:\d\d UTC$/);
  });
});
