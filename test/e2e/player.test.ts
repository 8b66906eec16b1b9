/// <reference lib="dom" />
/**
 * The recording player as a person uses it: a real noVNC session on TigerVNC is recorded
 * through the gateway while the desktop turns red, green, then blue; then the gateway's
 * /play/ID page plays it back in Chromium, and we look at the pixels on its canvas after
 * seeks forwards and backwards and while it plays at 4×. Also seeks an hour-long recording to
 * its end, says in words why it cannot play a recording, and takes the README's screenshot
 * (docs/player.png).
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, createDeflate } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeHeader,
  decodeRecords,
  encodeHeader,
  encodeJsonRecord,
  encodeRecord,
  RecordKind,
  type DecodedRecord,
  type RecordingHeader,
} from '../../src/recording/format.js';
import { canvasPixel, launchChromium } from '../helpers/browser.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/processes.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';

const SCREENSHOT = fileURLToPath(new URL('../../docs/player.png', import.meta.url));
const COLOURS = { red: '#c03a2b', green: '#2e9e5b', blue: '#2d6fb8' } as const;
type Colour = keyof typeof COLOURS;
/** The colours' changes come this far apart in the recording. */
const STEP_MS = 2_000;

function rgb(colour: Colour): number[] {
  const hex = COLOURS[colour];
  return [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
}

async function waitForColour(page: Page, colour: Colour, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => JSON.stringify(await canvasPixel(page, 160, 120)) === JSON.stringify(rgb(colour)), `the screen to be ${colour}`, timeoutMs);
}

async function colourNow(page: Page): Promise<Colour | number[]> {
  const pixel = JSON.stringify(await canvasPixel(page, 160, 120));
  return (Object.keys(COLOURS) as Colour[]).find((colour) => JSON.stringify(rgb(colour)) === pixel) ?? (JSON.parse(pixel) as number[]);
}

async function playerState(page: Page): Promise<{ state: string; position: number }> {
  return page.evaluate(() => ({ state: document.body.dataset.state ?? '', position: Number(document.body.dataset.position) }));
}

/** Drag the seek bar to `ms` as a person would: input events while dragging, change on release. */
async function dragSeekBar(page: Page, ms: number): Promise<void> {
  await page.$eval(
    '#seek',
    (seek, value) => {
      const input = seek as HTMLInputElement;
      input.value = String(value);
      input.dispatchEvent(new Event('input', { bubbles: true }));
      input.dispatchEvent(new Event('change', { bubbles: true }));
    },
    ms,
  );
}

/** Seek while paused and wait until the player is there again; how long it took, in ms. */
async function seekPaused(page: Page, ms: number, seek: () => Promise<void> = () => dragSeekBar(page, ms)): Promise<number> {
  const started = Date.now();
  await seek();
  await page.waitForFunction(
    (target) => ['paused', 'ended'].includes(document.body.dataset.state ?? '') && Number(document.body.dataset.position) === target,
    ms,
    { timeout: 60_000 },
  );
  return Date.now() - started;
}

/** The .dgrec files in `dir`, each once its End record is written. */
async function completeRecordings(dir: string, count: number): Promise<string[]> {
  let ids: string[] = [];
  await waitFor(() => {
    ids = readdirSync(dir)
      .filter((name) => name.endsWith('.dgrec'))
      .map((name) => name.slice(0, -'.dgrec'.length));
    return ids.length === count && ids.every((id) => readRecording(dir, id).records.some((r) => r.kind === RecordKind.End));
  }, `${count} complete recording(s) in ${dir}`);
  return ids;
}

function readRecording(dir: string, id: string): { header: RecordingHeader; records: DecodedRecord[] } {
  const bytes = readFileSync(join(dir, `${id}.dgrec`));
  const head = decodeHeader(bytes);
  return { header: head?.header ?? ({} as RecordingHeader), records: head ? decodeRecords(bytes, head.recordsAt).records : [] };
}

/** A copy of a recording under a new id, its records passed through `edit`. */
function writeVariant(
  dir: string,
  from: { header: RecordingHeader; records: DecodedRecord[] },
  id: string,
  edit: (records: DecodedRecord[]) => Buffer[],
): void {
  writeFileSync(join(dir, `${id}.dgrec`), Buffer.concat([encodeHeader({ ...from.header, id }), ...edit(from.records)]));
}

function recordOf(r: DecodedRecord): Buffer {
  return encodeRecord(r.kind as 1, r.atMs, r.payload);
}

/**
 * An hour of a busy desktop: 1024×768, a 256×64 area of text-like pixels redrawn twice a second
 * and the whole screen once a minute, in Tight's basic compression on one zlib stream that runs
 * through the whole file, as a VNC server sends it (so a seek cannot skip anything).
 */
async function writeHourLong(path: string, header: RecordingHeader): Promise<void> {
  const [width, height] = [1024, 768];
  const name = Buffer.from('busy desktop');
  const serverInit = Buffer.alloc(24 + name.length);
  serverInit.writeUInt16BE(width, 0);
  serverInit.writeUInt16BE(height, 2);
  Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0]).copy(serverInit, 4);
  serverInit.writeUInt32BE(name.length, 20);
  name.copy(serverInit, 24);
  const deflate = createDeflate({ level: 6 });
  const compressed: Buffer[] = [];
  deflate.on('data', (chunk: Buffer) => compressed.push(chunk));
  const compress = async (pixels: Buffer): Promise<Buffer> => {
    deflate.write(pixels);
    await new Promise<void>((resolve) => deflate.flush(constants.Z_SYNC_FLUSH, () => resolve()));
    return Buffer.concat(compressed.splice(0));
  };
  // Text-like lines to draw from: mostly background, a fifth of the pixels in one of four colours.
  const ROWS = 97;
  const rows = Buffer.alloc(ROWS * width * 3, 0xf0);
  for (let i = 0, seed = 1; i < ROWS * width; i++) {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0;
    if (seed % 5 === 0) rows.writeUIntBE([0x202020, 0x3070c0, 0xc03a2b, 0x808080][(seed >> 8) % 4]!, i * 3, 3);
  }
  const parts = [encodeHeader({ ...header, serverInit: serverInit.toString('base64'), width, height, name: name.toString() })];
  for (let atMs = 0, n = 0; atMs < 3_600_000; atMs += 500, n++) {
    const full = n % 120 === 0;
    const [w, h, x, y] = full ? [width, height, 0, 0] : [256, 64, (n * 64) % (width - 256), (n * 32) % (height - 64)];
    const pixels = Buffer.alloc(w * h * 3);
    for (let row = 0; row < h; row++) rows.copy(pixels, row * w * 3, (((row * 7 + n) % ROWS) * width + x) * 3, (((row * 7 + n) % ROWS) * width + x + w) * 3);
    const data = await compress(pixels);
    const rect = Buffer.alloc(4 + 12 + 1);
    rect.writeUInt16BE(1, 2); // FramebufferUpdate, one rectangle
    rect.writeUInt16BE(x, 4);
    rect.writeUInt16BE(y, 6);
    rect.writeUInt16BE(w, 8);
    rect.writeUInt16BE(h, 10);
    rect.writeInt32BE(7, 12); // Tight; control byte 0: basic compression on stream 0, no reset
    const length = [data.length & 0x7f, (data.length >> 7) & 0x7f, data.length >> 14];
    const compact = Buffer.from(
      data.length < 0x80 ? length.slice(0, 1) : data.length < 0x4000 ? [length[0]! | 0x80, length[1]!] : [length[0]! | 0x80, length[1]! | 0x80, length[2]!],
    );
    parts.push(encodeRecord(RecordKind.Screen, atMs, Buffer.concat([rect, compact, data])));
  }
  deflate.end();
  await once(deflate, 'end');
  parts.push(encodeJsonRecord(RecordKind.End, 3_600_000, { durationMs: 3_600_000 }));
  writeFileSync(path, Buffer.concat(parts));
}

describe('recording player in Chromium', () => {
  let browser: Browser;
  let xvnc: Xvnc;
  let gw: RunningGateway;
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-player-'));
  let id = '';
  /** When the viewer saw green and blue, in ms since it connected; when it closed. */
  const seen = { green: 0, blue: 0, closed: 0 };

  beforeAll(async () => {
    [browser, xvnc] = await Promise.all([launchChromium(), startXvnc({ width: 320, height: 240 })]);
    await xvnc.paint(COLOURS.red);
    gw = await startGateway({ recordings: { dir }, desktops: [{ name: 'rec', host: '127.0.0.1', port: xvnc.port, record: true }] });

    const viewer = await browser.newPage();
    await viewer.goto(`${gw.httpUrl}/view/rec`);
    await viewer.waitForSelector('body[data-state="connected"]');
    const connected = Date.now();
    await waitForColour(viewer, 'red');
    for (const colour of ['green', 'blue'] as const) {
      await new Promise((resolve) => setTimeout(resolve, connected + (colour === 'green' ? 1 : 2) * STEP_MS - Date.now()));
      await xvnc.paint(COLOURS[colour]);
      await waitForColour(viewer, colour);
      seen[colour] = Date.now() - connected;
    }
    await new Promise((resolve) => setTimeout(resolve, connected + 3 * STEP_MS - Date.now()));
    await viewer.close();
    seen.closed = Date.now() - connected;
    [id = ''] = await completeRecordings(dir, 1);
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.gateway.destroy();
    await xvnc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function openPlayer(recording = id): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    await page.goto(`${gw.httpUrl}/play/${recording}`);
    return page;
  }

  it('plays the recording from its start, and seeks forwards and back to the right picture', async () => {
    const page = await openPlayer();
    await page.waitForSelector('body[data-state="playing"]');
    await waitForColour(page, 'red', 2_000);
    await page.keyboard.press('Space');
    await page.waitForSelector('body[data-state="paused"]');
    expect((await playerState(page)).position).toBeLessThan(seen.green);
    expect(await page.textContent('.desktop-name')).toBe('rec');
    expect(await page.textContent('.recording-user')).toBe('anonymous');
    expect(await page.isVisible('#notice')).toBe(false); // complete: nothing to warn about

    const mid = (a: number, b: number): number => Math.round((a + b) / 2);
    const checks: [number, Colour][] = [
      [mid(seen.blue, seen.closed), 'blue'], // forwards, past both changes
      [mid(seen.green, seen.blue), 'green'], // back: replayed from the start
      [500, 'red'], // back again
      [mid(seen.green, seen.blue), 'green'], // forwards from there, without starting again
    ];
    for (const [at, colour] of checks) {
      await seekPaused(page, at);
      expect([at, await colourNow(page)]).toEqual([at, colour]);
    }
    await page.click('.shortcuts summary'); // the picture shows them too
    await page.screenshot({ path: SCREENSHOT });
    await page.click('.shortcuts summary');

    const toEnd = await seekPaused(page, Number(await page.getAttribute('#seek', 'max')), () => page.keyboard.press('End'));
    expect(await playerState(page)).toMatchObject({ state: 'ended' });
    expect(await colourNow(page)).toBe('blue');
    expect(toEnd).toBeLessThan(2_000);
    await page.close();
  });

  it('plays at 4× in about a quarter of the time, and says where it is as it goes', async () => {
    const page = await openPlayer();
    await page.waitForSelector('body[data-state="playing"]');
    await page.keyboard.press('Space');
    await seekPaused(page, 0, () => page.keyboard.press('Home'));
    await page.keyboard.press('+');
    await page.keyboard.press('+');
    expect(await page.inputValue('#speed')).toBe('4');
    const durationMs = Number(await page.getAttribute('#seek', 'max'));
    const started = Date.now();
    await page.click('#play');
    await page.waitForFunction(() => Number(document.body.dataset.position) > 1_000);
    expect(await page.textContent('#play')).toBe('Pause');
    await page.waitForSelector('body[data-state="ended"]', { timeout: durationMs });
    const ratio = (Date.now() - started) / durationMs;
    expect(ratio).toBeGreaterThan(0.15);
    expect(ratio).toBeLessThan(0.5);
    expect(await colourNow(page)).toBe('blue');
    expect(await page.textContent('#current-time')).toBe(await page.textContent('#duration'));
    await page.close();
  });

  it('says when a recording is incomplete or was stopped, and still plays what it has', async () => {
    const recording = readRecording(dir, id);
    const cutAt = seen.blue + 500;
    const [cutId, stoppedId] = [randomUUID(), randomUUID()];
    writeVariant(dir, recording, cutId, (records) => records.filter((r) => r.kind !== RecordKind.End).map(recordOf));
    writeVariant(dir, recording, stoppedId, (records) => [
      ...records.filter((r) => r.kind !== RecordKind.End && r.atMs <= cutAt).map(recordOf),
      encodeJsonRecord(RecordKind.Stopped, cutAt, { stopped: 'the disk is full' }),
      encodeJsonRecord(RecordKind.End, seen.closed, { durationMs: seen.closed }),
    ]);

    const cut = await openPlayer(cutId);
    await cut.waitForSelector('body[data-state="playing"]');
    expect(await cut.textContent('#notice')).toBe('This is an incomplete recording (the gateway stopped before the session ended).');
    await cut.keyboard.press('End');
    await cut.waitForSelector('body[data-state="ended"]');
    expect(await colourNow(cut)).toBe('blue');
    await cut.close();

    const stopped = await openPlayer(stoppedId);
    await stopped.waitForSelector('body[data-state="playing"]');
    expect(await stopped.isVisible('#notice')).toBe(false);
    await stopped.keyboard.press('End');
    await stopped.waitForSelector('body[data-state="ended"]');
    expect(await stopped.textContent('#notice')).toBe('Recording stopped here: the disk is full');
    await seekPaused(stopped, 500);
    expect(await stopped.isVisible('#notice')).toBe(false);
    await stopped.close();
  });

  it('says in words why it cannot play: the file is gone, or noVNC cannot decode it', async () => {
    const recording = readRecording(dir, id);
    const [goneId, garbledId] = [randomUUID(), randomUUID()];
    writeVariant(dir, recording, goneId, (records) => records.map(recordOf));
    writeVariant(dir, recording, garbledId, () => [encodeRecord(RecordKind.Screen, 10, Buffer.alloc(64, 0xff))]);
    const gone = await browser.newPage();
    // The page is rendered from the file; it goes before the player fetches it, and the gateway says so.
    await gone.route('**/*.dgrec', async (route) => {
      rmSync(join(dir, `${goneId}.dgrec`));
      await route.continue();
    });
    await gone.goto(`${gw.httpUrl}/play/${goneId}`);
    await gone.waitForSelector('body[data-state="error"]');
    expect(await gone.textContent('#error-message')).toBe('There is no such recording: it may have been deleted.');
    expect(await gone.isVisible('#overlay')).toBe(true);
    expect(await gone.isDisabled('#play')).toBe(true);
    await gone.close();

    const garbled = await openPlayer(garbledId);
    await garbled.waitForSelector('body[data-state="error"]');
    expect(await garbled.textContent('#error-message')).toBe('The player could not decode this recording.');
    expect(await garbled.textContent('#error-detail')).toBe('noVNC stopped at 00:00.');
    await garbled.close();
  });

  it('seeks an hour-long recording to its end in seconds', async () => {
    const { header } = readRecording(dir, id);
    const hourId = randomUUID();
    await writeHourLong(join(dir, `${hourId}.dgrec`), { ...header, id: hourId });
    const page = await openPlayer(hourId);
    await page.waitForSelector('body[data-state="playing"]');
    await page.keyboard.press('Space');
    const toEnd = await seekPaused(page, 3_600_000, async () => {
      await page.keyboard.press('End');
      await page.waitForSelector('#seek-progress', { state: 'visible' }); // a long seek shows how far it is
    });
    expect(await playerState(page)).toEqual({ state: 'ended', position: 3_600_000 });
    expect(await page.isVisible('#seek-progress')).toBe(false);
    console.info(`seeking the hour-long recording (${readFileSync(join(dir, `${hourId}.dgrec`)).length} bytes) to its end took ${toEnd} ms`);
    expect(toEnd).toBeLessThan(15_000);
    const back = await seekPaused(page, 1_800_000);
    console.info(`seeking it back to the middle took ${back} ms`);
    await page.close();
  });
});
