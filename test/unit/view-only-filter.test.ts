/**
 * The view-only filter from raw bytes: every client message type with its exact length, kept or
 * dropped; one stream fed whole, coalesced, split at every byte and byte by byte; mode switches
 * at message boundaries; clipboard lengths near 2^31 streamed without buffering; unknown types.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { errors } from '../../src/errors.js';
import type { Closing } from '../../src/relay/bridge.js';
import type { StageSession } from '../../src/relay/stages.js';
import { ClientMessageFilter } from '../../src/rfb/view-only-filter.js';

/** Records how the filter closed its session. */
class FakeSession implements StageSession {
  readonly closings: Array<{ closeCode: number; reason: string }> = [];

  close(closing: Closing): void {
    this.closings.push({ closeCode: closing.closeCode, reason: closing.reason });
  }
}

/** A message of `length` bytes with `header` first and a recognisable body after it. */
function message(length: number, header: number[]): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = header.length; i < length; i++) bytes[i] = (i * 7 + 0x41) & 0xff;
  Buffer.from(header).copy(bytes);
  return bytes;
}

const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const s32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

const setPixelFormat = (): Buffer => message(20, [0, 0, 0, 0, 32, 24, 0, 1]);
const setEncodings = (count: number): Buffer => message(4 + 4 * count, [2, 0, ...u16(count)]);
const updateRequest = (): Buffer => message(10, [3, 1]);
const continuousUpdates = (): Buffer => message(10, [150, 1]);
const fence = (payload: number): Buffer => message(9 + payload, [248, 0, 0, 0, 0x80, 0, 0, 3, payload]);
const keyEvent = (): Buffer => message(8, [4, 1, 0, 0, 0, 0, 0, 0x61]);
const pointerEvent = (): Buffer => message(6, [5, 1]);
/** ClientCutText whose s32 length field holds `field` (its 32 bits as written) and whose body is `body` bytes. */
const cutText = (field: number, body: number): Buffer => message(8 + body, [6, 0, 0, 0, ...s32(field)]);
const xvp = (): Buffer => message(4, [250, 0, 1, 2]);
const setDesktopSize = (screens: number): Buffer => message(8 + 16 * screens, [251, 0, ...u16(1024), ...u16(768), screens, 0]);
const gii = (bigEndian: boolean, length: number): Buffer =>
  message(4 + length, [253, bigEndian ? 0x80 : 0x00, ...(bigEndian ? u16(length) : u16(length).reverse())]);
const qemuKey = (): Buffer => message(12, [255, 0, 0, 1]);
const qemuAudio = (operation: number, length: number): Buffer => message(length, [255, 1, ...u16(operation)]);

/** [name, bytes, kept in view-only] */
const CATALOGUE: Array<[string, Buffer, boolean]> = [
  ['SetPixelFormat', setPixelFormat(), true],
  ['SetEncodings with no encodings', setEncodings(0), true],
  ['SetEncodings with one encoding', setEncodings(1), true],
  ['SetEncodings with 300 encodings', setEncodings(300), true],
  ['FramebufferUpdateRequest', updateRequest(), true],
  ['EnableContinuousUpdates', continuousUpdates(), true],
  ['ClientFence without payload', fence(0), true],
  ['ClientFence with a payload', fence(64), true],
  ['ClientFence with a 255-byte payload', fence(255), true],
  ['KeyEvent', keyEvent(), false],
  ['PointerEvent', pointerEvent(), false],
  ['ClientCutText, empty', cutText(0, 0), false],
  ['ClientCutText with text', cutText(11, 11), false],
  ['ClientCutText, extended (negative length)', cutText(-20, 20), false],
  ['xvp', xvp(), false],
  ['SetDesktopSize without screens', setDesktopSize(0), false],
  ['SetDesktopSize with one screen', setDesktopSize(1), false],
  ['SetDesktopSize with 255 screens', setDesktopSize(255), false],
  ['gii, big-endian', gii(true, 0x0102), false],
  ['gii, little-endian', gii(false, 0x0102), false],
  ['gii, empty', gii(false, 0), false],
  ['QEMU extended key event', qemuKey(), false],
  ['QEMU audio enable', qemuAudio(0, 4), false],
  ['QEMU audio disable', qemuAudio(1, 4), false],
  ['QEMU audio set format', qemuAudio(2, 10), false],
];

/** Feeds `parts` one WebSocket message each: what passed, joined, and how the session was closed. */
function feed(filter: ClientMessageFilter, parts: Buffer[], session = new FakeSession()): { output: Buffer; session: FakeSession } {
  const passed: Buffer[] = [];
  for (const part of parts) {
    const out = filter.filter(part, session);
    if (out) passed.push(out);
  }
  return { output: Buffer.concat(passed), session };
}

/** Every `size` bytes of `bytes`, as views. */
function chunks(bytes: Buffer, size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return parts;
}

describe('each client message type', () => {
  it.each(CATALOGUE)('%s is kept or dropped whole in view-only, and is exactly as long as it says', (_name, bytes, kept) => {
    const single = new ClientMessageFilter({ viewOnly: true });
    const session = new FakeSession();
    const out = single.filter(bytes, session);
    if (kept) expect(out).toBe(bytes);
    else expect(out).toBeNull();
    expect(single.dropped).toBe(kept ? 0 : 1);

    // A kept and a dropped message right after it are only parsed right if the length was exact.
    const after = new ClientMessageFilter({ viewOnly: true });
    const marker = updateRequest();
    const { output } = feed(after, [Buffer.concat([bytes, marker, keyEvent(), marker])], session);
    expect(output).toEqual(Buffer.concat(kept ? [bytes, marker, marker] : [marker, marker]));
    expect(after.dropped).toBe(kept ? 1 : 2);
    expect(session.closings).toEqual([]);
  });

  it.each(CATALOGUE)('%s passes in control mode, as the very same buffer', (_name, bytes) => {
    const filter = new ClientMessageFilter({ viewOnly: false });
    const session = new FakeSession();
    const stream = Buffer.concat([bytes, keyEvent(), updateRequest()]);
    expect(filter.filter(bytes, session)).toBe(bytes);
    expect(filter.filter(stream, session)).toBe(stream);
    expect(filter.dropped).toBe(0);
    expect(session.closings).toEqual([]);
  });
});

describe('a stream of mixed messages', () => {
  const messages = CATALOGUE.filter(([name]) => !name.includes('255') && !name.includes('300'));
  // Kept and dropped alternate in runs of different lengths, and the stream starts and ends both ways.
  const order = [...messages, ...messages.slice().reverse(), messages[9]!, messages[0]!, messages[1]!, messages[10]!];
  const stream = Buffer.concat(order.map(([, bytes]) => bytes));
  const expected = Buffer.concat(order.filter(([, , kept]) => kept).map(([, bytes]) => bytes));
  const expectedDropped = order.filter(([, , kept]) => !kept).length;

  const check = (parts: Buffer[]): void => {
    const filter = new ClientMessageFilter({ viewOnly: true });
    const { output, session } = feed(filter, parts);
    expect(output).toEqual(expected);
    expect(filter.dropped).toBe(expectedDropped);
    expect(session.closings).toEqual([]);
  };

  it('fed one message at a time', () => check(order.map(([, bytes]) => bytes)));

  it('coalesced in one buffer', () => check([stream]));

  it('split in two at every byte position', () => {
    for (let at = 0; at <= stream.length; at++) check([stream.subarray(0, at), stream.subarray(at)]);
  });

  it('byte by byte', () => check(chunks(stream, 1)));

  it('in chunks of every size up to 40 bytes', () => {
    for (let size = 2; size <= 40; size++) check(chunks(stream, size));
  });

  it('passes untouched in control mode however it is split, returning each buffer it was given', () => {
    for (const parts of [[stream], chunks(stream, 1), chunks(stream, 3), chunks(stream, 13)]) {
      const filter = new ClientMessageFilter({ viewOnly: false });
      const session = new FakeSession();
      for (const part of parts) expect(filter.filter(part, session)).toBe(part);
      expect(filter.dropped).toBe(0);
      expect(session.closings).toEqual([]);
    }
  });

  it('in view-only, a stream of only kept messages is returned as the very same buffers', () => {
    const kept = Buffer.concat([setPixelFormat(), setEncodings(5), fence(3), updateRequest(), continuousUpdates()]);
    for (const parts of [[kept], chunks(kept, 1), chunks(kept, 7)]) {
      const filter = new ClientMessageFilter({ viewOnly: true });
      const session = new FakeSession();
      for (const part of parts) expect(filter.filter(part, session)).toBe(part);
      expect(filter.dropped).toBe(0);
    }
  });

  it('returns one view of the message when the kept bytes are one range', () => {
    const filter = new ClientMessageFilter({ viewOnly: true });
    const bytes = Buffer.concat([keyEvent(), updateRequest(), setPixelFormat(), pointerEvent()]);
    const out = filter.filter(bytes, new FakeSession());
    expect(out).toEqual(bytes.subarray(8, 38));
    expect(out?.buffer).toBe(bytes.buffer);
  });
});

describe('switching mode', () => {
  it('to control mid-message: the started message is still dropped, the next one passes', () => {
    const filter = new ClientMessageFilter({ viewOnly: true });
    const session = new FakeSession();
    const first = keyEvent();
    const second = keyEvent();
    expect(filter.filter(first.subarray(0, 3), session)).toBeNull();
    filter.viewOnly = false;
    const rest = Buffer.concat([first.subarray(3), second]);
    expect(filter.filter(rest, session)).toEqual(second);
    expect(filter.dropped).toBe(1);
  });

  it('to view-only mid-message: the started message still passes, the next one is dropped', () => {
    const filter = new ClientMessageFilter({ viewOnly: false });
    const session = new FakeSession();
    const first = cutText(5, 5);
    expect(filter.filter(first.subarray(0, 6), session)).toEqual(first.subarray(0, 6)); // inside the length field
    filter.viewOnly = true;
    const out = filter.filter(Buffer.concat([first.subarray(6), keyEvent(), updateRequest()]), session);
    expect(out).toEqual(Buffer.concat([first.subarray(6), updateRequest()]));
    expect(filter.dropped).toBe(1);
  });

  it('at a boundary: the next message follows the new mode', () => {
    const filter = new ClientMessageFilter({ viewOnly: true });
    const session = new FakeSession();
    expect(filter.filter(keyEvent(), session)).toBeNull();
    filter.viewOnly = false;
    const key = keyEvent();
    expect(filter.filter(key, session)).toBe(key);
    filter.viewOnly = true;
    expect(filter.filter(pointerEvent(), session)).toBeNull();
    expect(filter.dropped).toBe(2);
  });
});

describe('clipboard lengths near 2^31', () => {
  const MiB = 1024 * 1024;

  it('0xfffffff0 in the s32 field is the extended form of -16: a 16-byte body', () => {
    const filter = new ClientMessageFilter({ viewOnly: true });
    const stream = Buffer.concat([cutText(0xfffffff0, 16), updateRequest()]);
    for (let at = 0; at <= stream.length; at++) {
      const { output } = feed(filter, [stream.subarray(0, at), stream.subarray(at)]);
      expect(output).toEqual(updateRequest());
    }
    expect(filter.dropped).toBe(stream.length + 1);
  });

  it.each([
    ['0x7fffffff', 0x7fffffff, 0x7fffffff],
    ['-2^31', -0x80000000, 0x80000000],
  ])('%s is streamed through as a counter, and the next message is parsed right', (_name, field, body) => {
    for (const viewOnly of [true, false]) {
      const filter = new ClientMessageFilter({ viewOnly });
      const session = new FakeSession();
      const header = cutText(field, 0);
      // The header split inside its length field.
      for (const part of [header.subarray(0, 5), header.subarray(5)]) expect(filter.filter(part, session)).toBe(viewOnly ? null : part);
      const chunk = Buffer.alloc(MiB, 0x61);
      let left = body;
      while (left >= MiB) {
        expect(filter.filter(chunk, session)).toBe(viewOnly ? null : chunk);
        left -= MiB;
      }
      const last = Buffer.concat([chunk.subarray(0, left), updateRequest(), keyEvent()]);
      expect(filter.filter(last, session)).toEqual(viewOnly ? updateRequest() : last);
      expect(filter.dropped).toBe(viewOnly ? 2 : 0);
      expect(session.closings).toEqual([]);
    }
  });

  it('keeps no reference to the chunks it dropped', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const filter = new ClientMessageFilter({ viewOnly: true });
    const session = new FakeSession();
    expect(filter.filter(cutText(0x7fffffff, 0), session)).toBeNull();
    const refs: Array<WeakRef<Buffer>> = [];
    for (let i = 0; i < 100; i++) expect(filterFresh(filter, session, refs, MiB)).toBeNull();
    await new Promise((resolve) => setImmediate(resolve)); // WeakRefs hold their targets until the job ends
    gc();
    expect(refs.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
    // The rest of the text, then the next message.
    const chunk = Buffer.alloc(MiB);
    let left = 0x7fffffff - 100 * MiB;
    for (; left >= MiB; left -= MiB) expect(filter.filter(chunk, session)).toBeNull();
    expect(filter.filter(Buffer.concat([chunk.subarray(0, left), updateRequest()]), session)).toEqual(updateRequest());
    expect(filter.dropped).toBe(1);
  });
});

/** Filters a new chunk of `size` bytes that only a WeakRef in `refs` (and the filter, if it kept it) refers to afterwards. */
function filterFresh(filter: ClientMessageFilter, session: StageSession, refs: Array<WeakRef<Buffer>>, size: number): Buffer | null {
  const chunk = Buffer.alloc(size, refs.length);
  refs.push(new WeakRef(chunk));
  return filter.filter(chunk, session);
}

describe('unknown message types', () => {
  const before = [updateRequest(), keyEvent(), setEncodings(2)];

  it.each([1, 7, 100, 254])('type %i closes the session with 4400; the bytes before it still pass, later calls return null', (type) => {
    for (const viewOnly of [true, false]) {
      const filter = new ClientMessageFilter({ viewOnly });
      const session = new FakeSession();
      const kept = Buffer.concat(viewOnly ? [before[0]!, before[2]!] : before);
      const out = filter.filter(Buffer.concat([...before, Buffer.from([type, 0, 0, 0]), updateRequest()]), session);
      expect(out).toEqual(kept);
      expect(session.closings).toEqual([{ closeCode: 4400, reason: errors.unknownClientMessage(type).reason }]);
      expect(filter.filter(updateRequest(), session)).toBeNull();
      expect(session.closings).toHaveLength(1);
    }
  });

  it('at the start of a message: nothing passes', () => {
    const filter = new ClientMessageFilter({ viewOnly: false });
    const session = new FakeSession();
    expect(filter.filter(Buffer.from([7, 1, 2, 3]), session)).toBeNull();
    expect(session.closings).toEqual([{ closeCode: 4400, reason: errors.unknownClientMessage(7).reason }]);
  });

  it.each([
    ['an unknown QEMU subtype', [255, 2, 0, 0], 2],
    ['an unknown QEMU audio operation', [255, 1, 0, 3], 4],
  ])('%s closes the session as type 255, whole or with its header split', (_name, header, known) => {
    const bytes = Buffer.from([...header, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (const viewOnly of [true, false]) {
      for (let at = 0; at <= 4; at++) {
        const filter = new ClientMessageFilter({ viewOnly });
        const session = new FakeSession();
        const start = updateRequest();
        const stream = Buffer.concat([start, bytes]);
        const { output } = feed(filter, [stream.subarray(0, start.length + at), stream.subarray(start.length + at), updateRequest()], session);
        // In control mode, a header split before it shows the problem has already passed its first bytes.
        expect(output).toEqual(viewOnly || at >= known ? start : stream.subarray(0, start.length + at));
        expect(session.closings).toEqual([{ closeCode: 4400, reason: errors.unknownClientMessage(255).reason }]);
      }
    }
  });
});
