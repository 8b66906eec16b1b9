/// <reference lib="dom" />
/**
 * A websockify user's setup, unchanged but for the command: Debian's noVNC app (`vnc.html`
 * from the `novnc` package) served by `deskgate websockify --web`, reaching real Xvnc servers
 * through a websockify token directory, and through the single-target form with vnc.html's
 * defaults. Checked by pixel in Chromium; takes the README's screenshot (docs/novnc-vnc-html.png).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canvasPixel, launchChromium } from '../helpers/browser.js';
import { spawnDeskgate, waitHealthy, type DeskgateProcess } from '../helpers/cli-process.js';
import { freePort, waitFor } from '../helpers/processes.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';

const NOVNC = '/usr/share/novnc';
const SCREENSHOT = fileURLToPath(new URL('../../docs/novnc-vnc-html.png', import.meta.url));
const BLUE = [0x30, 0x70, 0xc0];
const ORANGE = [0xe0, 0x80, 0x20];
const GREEN = [0x20, 0xa0, 0x50];

async function waitForColour(page: Page, rgb: number[]): Promise<void> {
  await waitFor(
    async () => JSON.stringify(await canvasPixel(page, 10, 10, '#noVNC_container')) === JSON.stringify(rgb),
    `vnc.html to show ${rgb.join(',')}`,
    15_000,
  );
}

/** `deskgate websockify ARGS` on a free loopback port, once it answers. */
async function websockify(args: string[]): Promise<{ cli: DeskgateProcess; origin: string }> {
  const port = await freePort();
  const cli = spawnDeskgate(['websockify', ...args.map((a) => a.replace('PORT', String(port)))]);
  const origin = `http://127.0.0.1:${port}`;
  await waitHealthy(cli, `${origin}/healthz`);
  return { cli, origin };
}

describe("Debian's noVNC app through deskgate websockify", () => {
  let browser: Browser;
  let first: Xvnc;
  let second: Xvnc;
  const tokens = mkdtempSync(join(tmpdir(), 'deskgate-novnc-'));

  beforeAll(async () => {
    if (!existsSync(join(NOVNC, 'vnc.html'))) throw new Error(`${NOVNC}/vnc.html is missing: apt-get install -y novnc (bash .ci/run installs it)`);
    [browser, first, second] = await Promise.all([launchChromium(), startXvnc({ width: 480, height: 300 }), startXvnc({ width: 320, height: 240 })]);
    await Promise.all([first.paint('#3070c0'), second.paint('#20a050')]);
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all([first?.stop(), second?.stop()]);
    rmSync(tokens, { recursive: true, force: true });
  });

  it('connects vnc.html through ?token= from a token directory, and takes a token added while a session runs', async () => {
    writeFileSync(join(tokens, 'lab'), `host1: 127.0.0.1:${first.port}\n`);
    const { cli, origin } = await websockify(['--web', NOVNC, '--token-plugin', 'TokenFile', '--token-source', tokens, '127.0.0.1:PORT']);
    const context = await browser.newContext({ viewport: { width: 800, height: 500 } });
    try {
      const page = await context.newPage();
      await page.goto(`${origin}/vnc.html?autoconnect=true&path=${encodeURIComponent('websockify?token=host1')}`);
      await waitForColour(page, BLUE);
      await waitFor(async () => (await page.textContent('#noVNC_status'))?.includes('Connected') ?? false, 'the connected notice');
      await page.screenshot({ path: SCREENSHOT });

      // Another tool adds a token while the first session runs.
      writeFileSync(join(tokens, 'added-later'), `host2: 127.0.0.1:${second.port}\n`);
      const other = await context.newPage();
      await other.goto(`${origin}/vnc.html?autoconnect=true&path=${encodeURIComponent('websockify?token=host2')}`);
      await waitForColour(other, GREEN);
      // The first session was not dropped: it still shows what its desktop paints.
      await first.paint('#e08020');
      await waitForColour(page, ORANGE);
      expect(await page.locator('#noVNC_status').textContent()).not.toContain('Disconnected');
    } finally {
      await context.close();
      await cli.stop();
    }
  });

  it('connects vnc.html with its defaults to the single target of the positional form', async () => {
    const { cli, origin } = await websockify(['--web', NOVNC, '127.0.0.1:PORT', `127.0.0.1:${second.port}`]);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${origin}/vnc.html?autoconnect=true`); // path "websockify", no query
      await waitForColour(page, GREEN);
    } finally {
      await context.close();
      await cli.stop();
    }
  });
});
