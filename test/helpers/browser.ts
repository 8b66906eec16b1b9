/** Headless Debian Chromium driven by playwright-core; never a downloaded browser. */
/// <reference lib="dom" />
import { chromium, type Browser, type Page } from 'playwright-core';
import { requireCommand } from './processes.js';

const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export function launchChromium(): Promise<Browser> {
  requireCommand('/usr/bin/chromium', 'chromium');
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS, headless: true });
}

/** The RGB of a framebuffer pixel as noVNC drew it on the canvas inside `container` (our viewer's; vnc.html's is #noVNC_container). */
export function canvasPixel(page: Page, x: number, y: number, container = '#screen'): Promise<number[]> {
  return page.evaluate(
    ([px, py, selector]) => {
      const canvas = document.querySelector<HTMLCanvasElement>(`${selector} canvas`);
      const data = canvas?.getContext('2d')?.getImageData(Number(px), Number(py), 1, 1).data;
      return data ? [data[0] ?? -1, data[1] ?? -1, data[2] ?? -1] : [];
    },
    [x, y, container] as const,
  );
}
