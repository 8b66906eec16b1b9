/**
 * The demo desktop over real sockets on ephemeral ports: the RFB handshake, updates in a
 * viewer's pixel format, typing, drawing, framing, misbehaving viewers, back-pressure and
 * shutdown. Pixel positions and colours below pin the 1024x768 layout of the demo screen.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startDemoDesktop, type DemoDesktop, type DemoDesktopOptions } from '../../src/demo/server.js';
import { CELL_WIDTH, GLYPH_HEIGHT } from '../../src/demo/font.js';
import { Framebuffer } from '../../src/demo/framebuffer.js';
import {
  Button,
  encodeClientCutText,
  encodeKeyEvent,
  encodePointerEvent,
  encodeSetEncodings,
  encodeUpdateRequest,
  Encoding,
  Keysym,
  MAX_CUT_TEXT_BYTES,
  type PixelFormat,
} from '../../src/rfb/protocol.js';
import { connectTcp, NOVNC_PIXEL_FORMAT, type RfbClient, type RfbTcpConnection } from '../helpers/rfb-client.js';

const HEADER = 0x102a43;
const BACKGROUND = 0x2a6f97;
const TEXT_BOX = 0xf0f4f8;
const TEXT = 0x102a43;
const CANVAS = 0xffffff;
const PEN = 0xd62839;
const CLOCK = 0xffd166;
/** The first character cell of the text box; lines are 20 pixels apart, glyphs scaled 2x. */
const TEXT_ORIGIN = { x: 24, y: 88 };
const LINE_HEIGHT = 20;
const CLOCK_ORIGIN = { x: 864, y: 10 };

const RGB565_BIG_ENDIAN: PixelFormat = {
  bitsPerPixel: 16,
  depth: 16,
  bigEndian: true,
  trueColour: true,
  redMax: 31,
  greenMax: 63,
  blueMax: 31,
  redShift: 11,
  greenShift: 5,
  blueShift: 0,
};

interface PixelSource {
  pixel(x: number, y: number): number;
}

function region(source: PixelSource, x: number, y: number, width: number, height: number): number[] {
  return Array.from({ length: width * height }, (_, i) => source.pixel(x + (i % width), y + Math.floor(i / width)));
}

/** What `text` looks like drawn by the demo's font on `background`. */
function rendered(text: string, colour: number, background: number, scale: number): Framebuffer {
  const fb = new Framebuffer(text.length * CELL_WIDTH * scale, GLYPH_HEIGHT * scale);
  fb.fillRect(fb.bounds, background);
  fb.drawText(0, 0, text, colour, scale);
  return fb;
}

function expectDrawn(viewer: RfbClient, at: { x: number; y: number }, expected: Framebuffer): void {
  const { width, height } = expected;
  expect(region(viewer, at.x, at.y, width, height)).toEqual(region(expected, 0, 0, width, height));
}

describe('demo desktop', { timeout: 20_000 }, () => {
  const desktops: DemoDesktop[] = [];
  const connections: RfbTcpConnection[] = [];
  afterEach(async () => {
    vi.useRealTimers();
    const open = connections.splice(0);
    for (const { socket } of open) socket.destroy();
    await Promise.all([...open.map(({ closed }) => closed), ...desktops.splice(0).map((desktop) => desktop.close())]);
  });

  async function start(options: DemoDesktopOptions = {}): Promise<DemoDesktop> {
    const desktop = await startDemoDesktop({ clock: false, ...options });
    desktops.push(desktop);
    return desktop;
  }

  async function connectTo(desktop: DemoDesktop): Promise<RfbTcpConnection> {
    const connection = await connectTcp(desktop.host, desktop.port);
    connections.push(connection);
    return connection;
  }

  /** A viewer past the handshake, in `format`, holding a full first picture. */
  async function viewer(desktop: DemoDesktop, format = NOVNC_PIXEL_FORMAT): Promise<RfbTcpConnection> {
    const connection = await connectTo(desktop);
    await connection.rfb.handshake();
    connection.rfb.setPixelFormat(format);
    await refresh(connection.rfb);
    return connection;
  }

  /** Ask for the whole screen now; messages sent before are handled before this request. */
  async function refresh(rfb: RfbClient): Promise<void> {
    rfb.requestUpdate(false);
    await rfb.readUpdate();
  }

  describe('handshake', () => {
    it('speaks RFB 3.8: offers None, confirms it, and describes the screen in ServerInit', async () => {
      const desktop = await start({ width: 640, height: 480, name: 'test desk' });
      const { rfb } = await connectTo(desktop);
      expect((await rfb.read(12)).toString('latin1')).toBe('RFB 003.008\n');
      rfb.send(Buffer.from('RFB 003.008\n'));
      expect([...(await rfb.read(2))]).toEqual([1, 1]);
      rfb.send(Buffer.from([1]));
      expect([...(await rfb.read(4))]).toEqual([0, 0, 0, 0]);
      rfb.send(Buffer.from([1]));
      const init = await rfb.read(24 + 'test desk'.length);
      expect(init.readUInt16BE(0)).toBe(640);
      expect(init.readUInt16BE(2)).toBe(480);
      // 32 bpp, depth 24, little-endian, true colour, max 255 each, shifts 16/8/0, padding
      expect([...init.subarray(4, 20)]).toEqual([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
      expect(init.readUInt32BE(20)).toBe(9);
      expect(init.toString('utf8', 24)).toBe('test desk');
    });

    it('speaks RFB 3.3: names security type None itself, with no SecurityResult', async () => {
      const desktop = await start({ width: 320, height: 240 });
      const { rfb } = await connectTo(desktop);
      await rfb.read(12);
      rfb.send(Buffer.from('RFB 003.003\n'));
      expect([...(await rfb.read(4))]).toEqual([0, 0, 0, 1]);
      rfb.send(Buffer.from([0])); // ClientInit, not shared: the demo shares anyway
      const init = await rfb.read(24);
      expect([init.readUInt16BE(0), init.readUInt16BE(2)]).toEqual([320, 240]);
      expect(init.readUInt32BE(20)).toBe('deskgate demo'.length);
    });

    it('speaks RFB 3.7: no SecurityResult after None, so updates follow ServerInit directly', async () => {
      const desktop = await start();
      const { rfb } = await connectTo(desktop);
      expect(await rfb.handshake({ version: 7 })).toMatchObject({ width: 1024, height: 768, name: 'deskgate demo' });
      rfb.requestUpdate(false, { x: 0, y: 0, width: 2, height: 2 });
      expect(await rfb.readUpdate()).toMatchObject([{ x: 0, y: 0, width: 2, height: 2, encoding: Encoding.Raw }]);
      expect(rfb.pixel(1, 1)).toBe(HEADER);
    });
    it('refuses a screen size the layout cannot hold, before listening', async () => {
      await expect(startDemoDesktop({ width: 100 })).rejects.toThrow('demo desktop width must be a whole number of pixels from 320 to 8192, got 100');
      await expect(startDemoDesktop({ height: 1e5 })).rejects.toThrow(/height must be/);
    });
  });

  describe('updates', () => {
    it("sends a non-incremental request's area in the viewer's pixel format (noVNC's: red in the low byte)", async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.requestUpdate(false);
      const [rect] = await rfb.readUpdate();
      expect(rect).toMatchObject({ x: 0, y: 0, width: 1024, height: 768, encoding: Encoding.Raw });
      expect(rect!.data!.length).toBe(1024 * 768 * 4);
      expect([...rect!.data!.subarray(0, 4)]).toEqual([0x10, 0x2a, 0x43, 0x00]);
      expect(rfb.pixel(2, 766)).toBe(BACKGROUND);
      expect(rfb.pixel(30, 100)).toBe(TEXT_BOX);
      expect(rfb.pixel(512, 500)).toBe(CANVAS);

      rfb.requestUpdate(false, { x: 10, y: 700, width: 4, height: 2 });
      const [part] = await rfb.readUpdate();
      expect(part).toMatchObject({ x: 10, y: 700, width: 4, height: 2 });
      expect(part!.data!.length).toBe(4 * 2 * 4);
    });

    it('holds an incremental request while nothing changes, then sends only what changed', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.requestUpdate(true);
      await delay(150);
      expect(rfb.buffered).toBe(0);

      rfb.type('H');
      const rects = await rfb.readUpdate();
      expect(rects).toHaveLength(1);
      expect(rects[0]!.y).toBeGreaterThanOrEqual(TEXT_ORIGIN.y);
      expect(rects[0]!.y + rects[0]!.height).toBeLessThanOrEqual(TEXT_ORIGIN.y + 6 * LINE_HEIGHT);
      expect(rects[0]!.width * rects[0]!.height).toBeLessThan((1024 * 768) / 10);
      expectDrawn(rfb, TEXT_ORIGIN, rendered('H_', TEXT, TEXT_BOX, 2));
    });

    it('sends every change to every viewer, each in its own pixel format', async () => {
      const desktop = await start();
      const a = await viewer(desktop);
      const b = await viewer(desktop, RGB565_BIG_ENDIAN);
      a.rfb.requestUpdate(true);
      b.rfb.requestUpdate(true);
      const typist = await viewer(desktop);
      typist.rfb.type('Z');
      await Promise.all([a.rfb.readUpdate(), b.rfb.readUpdate()]);
      // 'Z' starts with a full top row: the text colour, exact in 32 bits, rounded in RGB565.
      expect(a.rfb.pixel(TEXT_ORIGIN.x, TEXT_ORIGIN.y)).toBe(TEXT);
      expect(b.rfb.pixel(TEXT_ORIGIN.x, TEXT_ORIGIN.y)).toBe(0x102842);
      expect(b.rfb.pixel(TEXT_ORIGIN.x, TEXT_ORIGIN.y + 2)).toBe(0xeff3f7);
    });

    it('scrolls the full text box with CopyRect for viewers that accept it, ending with the same picture', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.setEncodings([Encoding.CopyRect, Encoding.Raw]);
      rfb.type('1\n2\n3\n4\n5\n6');
      await refresh(rfb);

      rfb.type('\n7');
      rfb.requestUpdate(true);
      const rects = await rfb.readUpdate();
      expect(rects[0]).toMatchObject({ encoding: Encoding.CopyRect, y: TEXT_ORIGIN.y, source: { x: TEXT_ORIGIN.x, y: TEXT_ORIGIN.y + LINE_HEIGHT } });
      expect(rects.slice(1).map((rect) => rect.encoding)).toEqual([Encoding.Raw]);
      expect(desktop.text).toBe('2\n3\n4\n5\n6\n7');

      const fresh = await viewer(desktop);
      expect(Buffer.from(rfb.pixels.buffer).equals(Buffer.from(fresh.rfb.pixels.buffer))).toBe(true);
      expectDrawn(rfb, TEXT_ORIGIN, rendered('2', TEXT, TEXT_BOX, 2));
    });
  });

  describe('input', () => {
    it('types printable keys into the text box; Return starts a line, BackSpace deletes', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.type('Hi\nthere');
      rfb.key(Keysym.BackSpace, true);
      rfb.key(Keysym.BackSpace, false);
      rfb.key(0xffe1, true); // Shift: not text
      await refresh(rfb);
      expect(desktop.text).toBe('Hi\nther');
      expectDrawn(rfb, TEXT_ORIGIN, rendered('Hi', TEXT, TEXT_BOX, 2));
      expectDrawn(rfb, { x: TEXT_ORIGIN.x, y: TEXT_ORIGIN.y + LINE_HEIGHT }, rendered('ther_', TEXT, TEXT_BOX, 2));
    });

    it('shows pasted clipboard text in the text box', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.cutText('pasted\r\nline');
      await refresh(rfb);
      expect(desktop.text).toBe('pasted\nline');
      expectDrawn(rfb, TEXT_ORIGIN, rendered('pasted', TEXT, TEXT_BOX, 2));
    });

    it('draws while the left button is held, only on the canvas; the right button clears it', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      rfb.pointer(100, 400, Button.Left);
      rfb.pointer(300, 400, Button.Left);
      rfb.pointer(400, 500, 0);
      rfb.pointer(500, 100, Button.Left);
      rfb.pointer(500, 300, Button.Left);
      rfb.pointer(500, 300, 0);
      await refresh(rfb);
      expect([rfb.pixel(100, 400), rfb.pixel(200, 401), rfb.pixel(300, 399)]).toEqual([PEN, PEN, PEN]);
      expect([rfb.pixel(200, 403), rfb.pixel(350, 450), rfb.pixel(99 - 2, 400)]).toEqual([CANVAS, CANVAS, CANVAS]);
      expect([rfb.pixel(500, 100), rfb.pixel(500, 240), rfb.pixel(500, 300)]).toEqual([TEXT_BOX, PEN, PEN]);

      rfb.pointer(200, 400, Button.Right);
      rfb.pointer(200, 400, 0);
      await refresh(rfb);
      expect([rfb.pixel(200, 400), rfb.pixel(500, 240)]).toEqual([CANVAS, CANVAS]);
    });

    it.each([
      ['in one chunk, handshake included', (bytes: Buffer) => [bytes]],
      ['one byte at a time', (bytes: Buffer) => [...bytes].map((byte) => Buffer.from([byte]))],
    ])('frames messages that arrive %s', async (_, split) => {
      const desktop = await start();
      const { rfb, socket } = await connectTo(desktop);
      const bytes = Buffer.concat([
        Buffer.from('RFB 003.008\n'),
        Buffer.from([1, 1]), // security None, then ClientInit
        encodeSetEncodings([Encoding.Raw]),
        encodeKeyEvent(0x61, true),
        encodeKeyEvent(0x61, false),
        encodeClientCutText('bc'),
        encodeUpdateRequest({ x: 0, y: 0, width: 1, height: 1 }, false),
      ]);
      for (const chunk of split(bytes)) {
        await new Promise((resolve) => socket.write(chunk, resolve));
        await delay(0);
      }
      await rfb.read(12 + 2 + 4 + 24 + 'deskgate demo'.length);
      expect([...(await rfb.read(4 + 12 + 4))].slice(0, 4)).toEqual([0, 0, 0, 1]);
      expect(desktop.text).toBe('abc');
    });
  });

  describe('misbehaving viewers', () => {
    it('closes a viewer that sends a bad version, an unoffered security type or a colour-map format', async () => {
      const desktop = await start();
      const badVersion = await connectTo(desktop);
      await badVersion.rfb.read(12);
      badVersion.rfb.send(Buffer.from('HELLO VNC!!\n'));
      const badSecurity = await connectTo(desktop);
      await badSecurity.rfb.read(12);
      badSecurity.rfb.send(Buffer.from('RFB 003.008\n\x02'));
      const colourMap = await connectTo(desktop);
      await colourMap.rfb.handshake();
      colourMap.rfb.setPixelFormat({ ...NOVNC_PIXEL_FORMAT, trueColour: false });
      await Promise.all([badVersion.closed, badSecurity.closed, colourMap.closed]);
      await vi.waitFor(() => expect(desktop.clientCount).toBe(0));
    });

    it('closes only the viewer that sends an unknown message type; another keeps working', async () => {
      const desktop = await start();
      const rogue = await viewer(desktop);
      const good = await viewer(desktop);
      rogue.rfb.send(Buffer.from([99, 0, 0, 0]));
      await rogue.closed;
      await vi.waitFor(() => expect(desktop.clientCount).toBe(1));
      good.rfb.type('ok');
      await refresh(good.rfb);
      expect(desktop.text).toBe('ok');
      expectDrawn(good.rfb, TEXT_ORIGIN, rendered('ok_', TEXT, TEXT_BOX, 2));
    });

    it('closes a viewer that announces clipboard text over the limit', async () => {
      const desktop = await start();
      const { rfb, closed } = await viewer(desktop);
      const header = encodeClientCutText('');
      header.writeUInt32BE(MAX_CUT_TEXT_BYTES + 1, 4);
      rfb.send(header);
      await closed;
      expect(desktop.text).toBe('');
    });

    it('builds no more updates for a viewer that does not read than its socket can hold', async () => {
      const desktop = await start();
      const { rfb, socket } = await viewer(desktop);
      socket.pause();
      const requests = 200;
      const full = { x: 0, y: 0, width: 1024, height: 768 };
      rfb.send(Buffer.concat(Array.from({ length: requests }, () => encodeUpdateRequest(full, false))));
      await delay(300);
      socket.resume();
      // Without back-pressure every request would be answered: 200 x 3 MiB queued in memory.
      const answered = await countUpdates(rfb, 1000);
      expect(answered).toBeGreaterThan(0);
      expect(answered).toBeLessThan(requests / 4);
    });
  });

  describe('drawing floods', () => {
    /** Generous for a loaded machine (these run in tens of ms); unguarded, the floods below stall for seconds. */
    const NOTICEABLE_STALL_MS = 250;

    it('stays responsive while one message drags the pen 10,000 times across the full 16-bit range, and still draws', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      expect(await longestStallHandling(rfb, drag(10_000, { x: 0, y: 0 }, { x: 65535, y: 65535 }))).toBeLessThan(NOTICEABLE_STALL_MS);
      await refresh(rfb);
      // The diagonal crosses the canvas, and only the canvas.
      expect([rfb.pixel(300, 300), rfb.pixel(500, 500), rfb.pixel(740, 740)]).toEqual([PEN, PEN, PEN]);
      expect([rfb.pixel(500, 300), rfb.pixel(100, 100), rfb.pixel(760, 760)]).toEqual([CANVAS, TEXT_BOX, BACKGROUND]);
    });

    it('spends next to nothing on strokes that lie wholly off the screen', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      const before = rfb.pixels.slice();
      expect(await longestStallHandling(rfb, drag(10_000, { x: 65535, y: 0 }, { x: 65535, y: 65535 }))).toBeLessThan(NOTICEABLE_STALL_MS);
      await refresh(rfb);
      expect(Buffer.from(rfb.pixels.buffer).equals(Buffer.from(before.buffer))).toBe(true);
    });

    it('spreads a burst of full-canvas strokes over turns of the event loop instead of drawing it in one', async () => {
      const desktop = await start();
      const { rfb } = await viewer(desktop);
      expect(await longestStallHandling(rfb, drag(10_000, { x: 16, y: 240 }, { x: 1007, y: 750 }))).toBeLessThan(NOTICEABLE_STALL_MS);
      await refresh(rfb);
      expect([rfb.pixel(16, 240), rfb.pixel(512, 495), rfb.pixel(1007, 750)]).toEqual([PEN, PEN, PEN]);
    });
  });

  describe('clock and shutdown', () => {
    it('shows the time, updates it each second, and stops its timer on close', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
      vi.setSystemTime(new Date(2024, 0, 2, 12, 34, 56, 500));
      const desktop = await start({ clock: true });
      expect(vi.getTimerCount()).toBe(1);
      const { rfb } = await viewer(desktop);
      expectDrawn(rfb, CLOCK_ORIGIN, rendered('12:34:56', CLOCK, HEADER, 3));

      rfb.requestUpdate(true);
      vi.advanceTimersByTime(600);
      const [rect] = await rfb.readUpdate();
      expect(rect).toMatchObject({ x: CLOCK_ORIGIN.x, y: CLOCK_ORIGIN.y });
      expectDrawn(rfb, CLOCK_ORIGIN, rendered('12:34:57', CLOCK, HEADER, 3));

      await desktop.close();
      expect(vi.getTimerCount()).toBe(0);
    });

    it('close() ends every viewer and the listener, once, however often it is called', async () => {
      const noSockets = { TCPServerWrap: 0, TCPSocketWrap: 0 };
      await vi.waitFor(() => expect(socketHandles()).toEqual(noSockets)); // earlier teardowns have finished
      const desktop = await start({ clock: true });
      const ready = await viewer(desktop);
      const handshaking = await connectTo(desktop);
      await handshaking.rfb.read(12);
      expect(desktop.clientCount).toBe(2);

      const closing = desktop.close();
      expect(desktop.close()).toBe(closing);
      await closing;
      await Promise.all([ready.closed, handshaking.closed]);
      expect(desktop.clientCount).toBe(0);
      await vi.waitFor(() => expect(socketHandles()).toEqual(noSockets));
      await expect(connectTcp(desktop.host, desktop.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    });
  });
});

/** Updates that arrive until none has for `idleMs`. */
async function countUpdates(rfb: RfbClient, idleMs: number): Promise<number> {
  for (let count = 0; ; count++) {
    const idle = new AbortController();
    const update = rfb.readUpdate().then(() => true);
    update.catch(() => {}); // the read left waiting at the end fails at teardown
    const timeout = delay(idleMs, false, { signal: idle.signal }).catch(() => true);
    const arrived = await Promise.race([update, timeout]);
    idle.abort();
    if (!arrived) return count;
  }
}

/** One message of `count` pointer events with the left button held, going back and forth between `a` and `b`. */
function drag(count: number, a: { x: number; y: number }, b: { x: number; y: number }): Buffer {
  return Buffer.concat(
    Array.from({ length: count }, (_, i) => (i % 2 ? encodePointerEvent(b.x, b.y, Button.Left) : encodePointerEvent(a.x, a.y, Button.Left))),
  );
}

/** The longest this process's event loop (the desktop's too) was blocked while the desktop handled `messages`, in ms. */
async function longestStallHandling(rfb: RfbClient, messages: Buffer): Promise<number> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  try {
    rfb.send(messages);
    // Answered only once everything sent before it has been handled; one pixel costs nothing to send.
    rfb.requestUpdate(false, { x: 0, y: 0, width: 1, height: 1 });
    await rfb.readUpdate();
  } finally {
    histogram.disable();
  }
  return histogram.max / 1e6;
}

/** TCP listeners and sockets open in this process. */
function socketHandles(): Record<string, number> {
  const counts: Record<string, number> = { TCPServerWrap: 0, TCPSocketWrap: 0 };
  for (const resource of process.getActiveResourcesInfo()) if (resource in counts) counts[resource]! += 1;
  return counts;
}
