/** Headless Debian Chromium driven by playwright-core; never a downloaded browser. */
import { chromium, type Browser } from 'playwright-core';
import { requireCommand } from './processes.js';

const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export function launchChromium(): Promise<Browser> {
  requireCommand('/usr/bin/chromium', 'chromium');
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS, headless: true });
}
