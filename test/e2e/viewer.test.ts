/// <reference lib="dom" />
/**
 * The viewer as a person uses it: headless Chromium opens pages served by the gateway,
 * noVNC connects through the WebSocket, and we look at the pixels on its canvas.
 * Also takes the README's screenshot (docs/viewer.png).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canvasPixel, launchChromium } from '../helpers/browser.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { freePort, waitFor } from '../helpers/processes.js';
import { startXvnc, writeVncPasswdFile, type Xvnc } from '../helpers/xvnc.js';

const SCREENSHOT = fileURLToPath(new URL('../../docs/viewer.png', import.meta.url));
const PEN = [0xd6, 0x28, 0x39];
const WHITE = [0xff, 0xff, 0xff];

/** A digest of a framebuffer region, to tell whether it changed. */
function regionDigest(page: Page, x: number, y: number, width: number, height: number): Promise<number> {
  return page.evaluate(
    ([rx, ry, rw, rh]) => {
      const canvas = document.querySelector<HTMLCanvasElement>('#screen canvas');
      const data = canvas?.getContext('2d')?.getImageData(rx ?? 0, ry ?? 0, rw ?? 1, rh ?? 1).data ?? [];
      let hash = 0;
      for (let i = 0; i < data.length; i++) hash = (Math.imul(hash, 31) + (data[i] ?? 0)) | 0;
      return hash;
    },
    [x, y, width, height],
  );
}

/** Page coordinates of a framebuffer point, through the viewer's scaling. */
async function toPage(page: Page, x: number, y: number): Promise<{ x: number; y: number }> {
  return page.evaluate(
    ([fx, fy]) => {
      const canvas = document.querySelector<HTMLCanvasElement>('#screen canvas') as HTMLCanvasElement;
      const box = canvas.getBoundingClientRect();
      return { x: box.left + ((fx ?? 0) * box.width) / canvas.width, y: box.top + ((fy ?? 0) * box.height) / canvas.height };
    },
    [x, y],
  );
}

async function waitForPixel(page: Page, x: number, y: number, rgb: number[]): Promise<void> {
  await waitFor(async () => JSON.stringify(await canvasPixel(page, x, y)) === JSON.stringify(rgb), `pixel (${x},${y}) = ${rgb}`);
}

describe('viewer in Chromium', () => {
  let browser: Browser;
  let xvnc: Xvnc;
  /** A TigerVNC server that asks for a VNC password. */
  let locked: Xvnc;
  let gw: RunningGateway;
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-e2e-'));

  beforeAll(async () => {
    writeVncPasswdFile(join(dir, 'xvnc.passwd'), 'e2e-pass');
    writeFileSync(join(dir, 'locked.pass'), 'e2e-pass\n');
    [browser, xvnc, locked] = await Promise.all([
      launchChromium(),
      startXvnc({ width: 320, height: 240 }),
      startXvnc({ width: 320, height: 240, securityTypes: ['VncAuth'], passwordFile: join(dir, 'xvnc.passwd') }),
    ]);
    await Promise.all([xvnc.paint('#3070c0'), locked.paint('#20a050')]);
    gw = await startGateway({
      demo: true,
      desktops: [
        { name: 'lab', host: '127.0.0.1', port: xvnc.port, description: 'TigerVNC in the test suite' },
        { name: 'down', host: '127.0.0.1', port: await freePort(), description: 'A VNC server that is not running' },
        { name: 'locked', host: '127.0.0.1', port: locked.port, vnc: { passwordFile: join(dir, 'locked.pass') } },
        { name: 'asks', host: '127.0.0.1', port: locked.port, description: 'The same server, its password not held by the gateway' },
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.gateway.destroy();
    await xvnc?.stop();
    await locked?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function openViewer(desktop: string): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${gw.httpUrl}/view/${desktop}`);
    return page;
  }

  it('shows a TigerVNC desktop: the colour its root window was painted', async () => {
    const page = await openViewer('lab');
    await page.waitForSelector('body[data-state="connected"]');
    await waitForPixel(page, 160, 120, [0x30, 0x70, 0xc0]);
    expect(await page.textContent('#connection-state')).toBe('Connected');
    await page.close();
  });

  it('opens a password-protected desktop without a prompt when the gateway holds its password', async () => {
    const page = await openViewer('locked');
    await page.waitForSelector('body[data-state="connected"]');
    await waitForPixel(page, 160, 120, [0x20, 0xa0, 0x50]);
    expect(await page.isVisible('#credentials')).toBe(false);
    await page.close();

    // The control: without the gateway's password, noVNC must ask the person for it.
    const asking = await openViewer('asks');
    await asking.waitForSelector('#credentials', { state: 'visible' });
    await asking.fill('#credentials-password', 'e2e-pass');
    await asking.click('#credentials-form button[type="submit"]');
    await asking.waitForSelector('body[data-state="connected"]');
    await waitForPixel(asking, 160, 120, [0x20, 0xa0, 0x50]);
    await asking.close();
  });

  it('lets a person draw and type on the demo desktop', async () => {
    const page = await openViewer('demo');
    await page.waitForSelector('body[data-state="connected"]');
    await waitForPixel(page, 512, 500, WHITE); // the drawing area, untouched

    const from = await toPage(page, 200, 500);
    const to = await toPage(page, 820, 500);
    await page.mouse.move(from.x, from.y);
    await page.mouse.down();
    await page.mouse.move(to.x, to.y, { steps: 25 });
    await page.mouse.up();
    await waitForPixel(page, 512, 500, PEN);

    const textBox = [24, 88, 976, 108] as const;
    const before = await regionDigest(page, ...textBox);
    await page.keyboard.type('Hello from deskgate');
    await waitFor(() => gw.gateway.demo?.text.includes('Hello from deskgate') === true, 'the typed text on the demo desktop');
    await waitFor(async () => (await regionDigest(page, ...textBox)) !== before, 'the text box to be redrawn');

    await page.screenshot({ path: SCREENSHOT });
    await page.close();
  });

  it('says in words why a desktop cannot be reached', async () => {
    const page = await openViewer('down');
    await page.waitForSelector('body[data-state="disconnected"]');
    expect(await page.textContent('#status-message')).toBe("Desktop 'down' is not reachable (connection refused)");
    expect(await page.getAttribute('body', 'data-close-code')).toBe('4502');
    expect(await page.isVisible('#overlay-reconnect')).toBe(true);
    await page.close();
  });

  it('says why when the gateway refuses the page’s Origin (a proxy that does not pass Host)', async () => {
    // A trusted proxy that says the gateway is somewhere else than where the browser is.
    const proxied = await startGateway({ demo: true, trustProxy: ['127.0.0.1/32'], publicUrl: 'http://backend.internal:6080' });
    const page = await browser.newPage();
    await page.setExtraHTTPHeaders({ 'X-Forwarded-Host': 'backend.internal:6080' });
    try {
      await page.goto(`${proxied.httpUrl}/view/demo`);
      await page.waitForSelector('body[data-state="disconnected"]');
      await waitFor(async () => /refused this page's origin/.test((await page.textContent('#status-message')) ?? ''), 'the Origin explanation');
      expect(await page.textContent('#status-message')).toBe(
        `The gateway refused this page's origin, ${proxied.httpUrl}: it takes itself for http://backend.internal:6080.`,
      );
      expect(await page.textContent('#status-detail')).toContain('must pass the Host header');
    } finally {
      await page.close();
      await proxied.gateway.destroy();
    }
  });

  it('lists the desktops on the dashboard with their status', async () => {
    const page = await browser.newPage();
    await page.goto(`${gw.httpUrl}/`);
    expect(await page.getAttribute('li.desktop[data-desktop="lab"]', 'data-status')).toBe('up');
    expect(await page.getAttribute('li.desktop[data-desktop="down"]', 'data-status')).toBe('down');
    expect(await page.getAttribute('li.desktop[data-desktop="locked"]', 'data-status')).toBe('up'); // it asks for a password: still up
    expect(await page.getAttribute('li.desktop[data-desktop="demo"]', 'data-status')).toBe('up');
    await page.click('li.desktop[data-desktop="lab"] a');
    await page.waitForSelector('body[data-state="connected"]');
    expect(page.url()).toBe(`${gw.httpUrl}/view/lab`);
    await page.close();
  });
});
