import { describe, expect, it } from 'vitest';
import {
  clientMessageLength,
  encodeClientCutText,
  encodeKeyEvent,
  encodePixelFormat,
  encodePointerEvent,
  encodeSetEncodings,
  encodeSetPixelFormat,
  encodeUpdateRequest,
  Encoding,
  MAX_CUT_TEXT_BYTES,
  parseClientMessage,
  parsePixelFormat,
  parseProtocolVersion,
  RfbProtocolError,
  type ClientMessage,
  type PixelFormat,
} from '../../src/rfb/protocol.js';

const BGR16: PixelFormat = {
  bitsPerPixel: 16,
  depth: 16,
  bigEndian: true,
  trueColour: true,
  redMax: 31,
  greenMax: 63,
  blueMax: 31,
  redShift: 0,
  greenShift: 5,
  blueShift: 11,
};

function codeOf(action: () => unknown): string {
  try {
    action();
  } catch (err) {
    expect(err).toBeInstanceOf(RfbProtocolError);
    return (err as RfbProtocolError).code;
  }
  throw new Error('expected an RfbProtocolError');
}

/** Frame a byte stream the way the demo server does, one chunk at a time. */
function frame(chunks: Buffer[]): ClientMessage[] {
  const messages: ClientMessage[] = [];
  let inbox = Buffer.alloc(0);
  for (const chunk of chunks) {
    inbox = Buffer.concat([inbox, chunk]);
    for (let length = clientMessageLength(inbox); length > 0; length = clientMessageLength(inbox)) {
      messages.push(parseClientMessage(inbox.subarray(0, length)));
      inbox = inbox.subarray(length);
    }
  }
  expect(inbox.length).toBe(0);
  return messages;
}

describe('RFB protocol versions', () => {
  it('reads 3.3, 3.7 and 3.8, and treats other 3.x versions as RFC 6143 says', () => {
    expect(parseProtocolVersion(Buffer.from('RFB 003.003\n'))).toBe(3);
    expect(parseProtocolVersion(Buffer.from('RFB 003.007\n'))).toBe(7);
    expect(parseProtocolVersion(Buffer.from('RFB 003.008\n'))).toBe(8);
    expect(parseProtocolVersion(Buffer.from('RFB 003.005\n'))).toBe(3);
    expect(parseProtocolVersion(Buffer.from('RFB 003.889\n'))).toBe(8);
  });

  it('refuses anything that is not an RFB 3.x version string', () => {
    for (const text of ['RFB 004.000\n', 'RFB 003.008 ', 'GET / HTTP/1.1', 'RFB 03.008\n\n', 'rfb 003.008\n']) {
      expect(codeOf(() => parseProtocolVersion(Buffer.from(text)))).toBe('RFB_ERR_BAD_VERSION');
    }
  });
});

describe('RFB pixel format', () => {
  it('round-trips through its 16-byte encoding, big-endian fields included', () => {
    const bytes = encodePixelFormat(BGR16);
    expect(bytes).toEqual(Buffer.from([16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 0, 5, 11, 0, 0, 0]));
    expect(parsePixelFormat(bytes)).toEqual(BGR16);
  });
});

describe('RFB client message framing', () => {
  const stream: Array<[Buffer, ClientMessage]> = [
    [encodeSetPixelFormat(BGR16), { type: 'setPixelFormat', format: BGR16 }],
    [encodeSetEncodings([Encoding.CopyRect, Encoding.Raw, Encoding.DesktopSize]), { type: 'setEncodings', encodings: [1, 0, -223] }],
    [
      encodeUpdateRequest({ x: 1, y: 2, width: 300, height: 400 }, true),
      { type: 'updateRequest', incremental: true, rect: { x: 1, y: 2, width: 300, height: 400 } },
    ],
    [encodeKeyEvent(0xff0d, true), { type: 'key', down: true, keysym: 0xff0d }],
    [encodePointerEvent(640, 480, 5), { type: 'pointer', buttons: 5, x: 640, y: 480 }],
    [encodeClientCutText('héllo'), { type: 'cutText', text: 'héllo' }],
    [encodeSetEncodings([]), { type: 'setEncodings', encodings: [] }],
  ];
  const bytes = Buffer.concat(stream.map(([message]) => message));
  const expected = stream.map(([, message]) => message);

  it('knows each message length once it is complete, and not before', () => {
    for (const [message] of stream) {
      for (let cut = 0; cut < message.length; cut++) expect(clientMessageLength(message.subarray(0, cut))).toBe(0);
      expect(clientMessageLength(Buffer.concat([message, Buffer.from([4, 1])]))).toBe(message.length);
    }
  });

  it('finds every message when the stream arrives one byte at a time', () => {
    const oneByOne = [...bytes].map((byte) => Buffer.from([byte]));
    expect(frame(oneByOne)).toEqual(expected);
  });

  it('finds every message when they arrive merged into one chunk, or cut at odd places', () => {
    expect(frame([bytes])).toEqual(expected);
    expect(frame([bytes.subarray(0, 7), bytes.subarray(7, 45), bytes.subarray(45)])).toEqual(expected);
  });

  it('refuses an unknown message type as soon as its first byte arrives', () => {
    expect(codeOf(() => clientMessageLength(Buffer.from([7])))).toBe('RFB_ERR_UNKNOWN_MESSAGE');
    expect(codeOf(() => clientMessageLength(Buffer.from([255, 0, 0, 0])))).toBe('RFB_ERR_UNKNOWN_MESSAGE');
  });

  it('refuses clipboard text over the limit from its header alone, and accepts the limit itself', () => {
    const header = Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(MAX_CUT_TEXT_BYTES + 1, 4);
    expect(codeOf(() => clientMessageLength(header))).toBe('RFB_ERR_CUT_TEXT_TOO_LONG');
    header.writeUInt32BE(MAX_CUT_TEXT_BYTES, 4);
    expect(clientMessageLength(header)).toBe(0);
    expect(clientMessageLength(Buffer.concat([header, Buffer.alloc(MAX_CUT_TEXT_BYTES)]))).toBe(8 + MAX_CUT_TEXT_BYTES);
  });
});
