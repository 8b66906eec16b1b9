/**
 * RFB (the VNC protocol, RFC 6143) constants and message framing, shared by the demo
 * desktop and anything else that needs to read or write RFB: version strings, security
 * types, message types, encodings, the 16-byte pixel format, and an incremental framer
 * that finds client-message boundaries in bytes however TCP split or merged them.
 */

/** The version this side speaks; a peer may answer with an older one. */
export const RFB_VERSION_3_8 = 'RFB 003.008\n';
export const PROTOCOL_VERSION_LENGTH = 12;
export type ProtocolMinor = 3 | 7 | 8;

export const SecurityType = { Invalid: 0, None: 1, VncAuthentication: 2, VeNCrypt: 19 } as const;

/** VeNCrypt (security type 19) subtypes: Plain sends a user name and password; TLS* is anonymous TLS, X509* verifies the server. */
export const VeNCryptSubtype = {
  Plain: 256,
  TLSNone: 257,
  TLSVnc: 258,
  TLSPlain: 259,
  X509None: 260,
  X509Vnc: 261,
  X509Plain: 262,
} as const;
export const SecurityResult = { Ok: 0, Failed: 1 } as const;

export const ClientMessageType = {
  SetPixelFormat: 0,
  SetEncodings: 2,
  FramebufferUpdateRequest: 3,
  KeyEvent: 4,
  PointerEvent: 5,
  ClientCutText: 6,
  EnableContinuousUpdates: 150,
  ClientFence: 248,
  Xvp: 250,
  SetDesktopSize: 251,
  Gii: 253,
  Qemu: 255,
} as const;

export const ServerMessageType = { FramebufferUpdate: 0, SetColourMapEntries: 1, Bell: 2, ServerCutText: 3 } as const;

/** Encodings are signed 32-bit numbers; negative ones are pseudo-encodings. */
export const Encoding = { Raw: 0, CopyRect: 1, DesktopSize: -223 } as const;

/** X11 keysyms (RFC 6143 §7.5.4) that edit text rather than type a character. */
export const Keysym = { BackSpace: 0xff08, Return: 0xff0d, KeypadEnter: 0xff8d } as const;

/** PointerEvent button-mask bits. */
export const Button = { Left: 1, Middle: 2, Right: 4 } as const;

/** Clipboard text is buffered whole before it is handled, so its size must be bounded. */
export const MAX_CUT_TEXT_BYTES = 1024 * 1024;

export type RfbErrorCode =
  'RFB_ERR_BAD_VERSION' | 'RFB_ERR_SECURITY' | 'RFB_ERR_UNKNOWN_MESSAGE' | 'RFB_ERR_CUT_TEXT_TOO_LONG' | 'RFB_ERR_UNSUPPORTED_PIXEL_FORMAT';

/** A peer broke the protocol; the connection to that peer cannot continue. */
export class RfbProtocolError extends Error {
  override readonly name = 'RfbProtocolError';
  readonly code: RfbErrorCode;

  constructor(code: RfbErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const VERSION_PATTERN = /^RFB (\d{3})\.(\d{3})\n$/;

/** The version a peer sent, as RFC 6143 §7.1.1 says to read it: anything but 3.7 or 3.8+ is 3.3. */
export function parseProtocolVersion(bytes: Buffer): ProtocolMinor {
  const text = bytes.toString('latin1');
  const match = VERSION_PATTERN.exec(text);
  if (!match || match[1] !== '003') {
    throw new RfbProtocolError('RFB_ERR_BAD_VERSION', `expected a version like "RFB 003.008\\n", got ${JSON.stringify(text)}`);
  }
  const minor = Number(match[2]);
  return minor >= 8 ? 8 : minor === 7 ? 7 : 3;
}

export function formatProtocolVersion(minor: ProtocolMinor): string {
  return `RFB 003.00${minor}\n`;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PixelFormat {
  bitsPerPixel: number;
  depth: number;
  bigEndian: boolean;
  /** False means colour-map mode, which the demo desktop does not support. */
  trueColour: boolean;
  redMax: number;
  greenMax: number;
  blueMax: number;
  redShift: number;
  greenShift: number;
  blueShift: number;
}

export const PIXEL_FORMAT_LENGTH = 16;

export function parsePixelFormat(bytes: Buffer, offset = 0): PixelFormat {
  return {
    bitsPerPixel: bytes.readUInt8(offset),
    depth: bytes.readUInt8(offset + 1),
    bigEndian: bytes.readUInt8(offset + 2) !== 0,
    trueColour: bytes.readUInt8(offset + 3) !== 0,
    redMax: bytes.readUInt16BE(offset + 4),
    greenMax: bytes.readUInt16BE(offset + 6),
    blueMax: bytes.readUInt16BE(offset + 8),
    redShift: bytes.readUInt8(offset + 10),
    greenShift: bytes.readUInt8(offset + 11),
    blueShift: bytes.readUInt8(offset + 12),
  };
}

export function encodePixelFormat(format: PixelFormat): Buffer {
  const bytes = Buffer.alloc(PIXEL_FORMAT_LENGTH); // the last three bytes are padding
  bytes.writeUInt8(format.bitsPerPixel, 0);
  bytes.writeUInt8(format.depth, 1);
  bytes.writeUInt8(format.bigEndian ? 1 : 0, 2);
  bytes.writeUInt8(format.trueColour ? 1 : 0, 3);
  bytes.writeUInt16BE(format.redMax, 4);
  bytes.writeUInt16BE(format.greenMax, 6);
  bytes.writeUInt16BE(format.blueMax, 8);
  bytes.writeUInt8(format.redShift, 10);
  bytes.writeUInt8(format.greenShift, 11);
  bytes.writeUInt8(format.blueShift, 12);
  return bytes;
}

/** Client messages whose length does not depend on their content. */
const FIXED_LENGTH: Readonly<Record<number, number>> = {
  [ClientMessageType.SetPixelFormat]: 4 + PIXEL_FORMAT_LENGTH,
  [ClientMessageType.FramebufferUpdateRequest]: 10,
  [ClientMessageType.KeyEvent]: 8,
  [ClientMessageType.PointerEvent]: 6,
};
const SET_ENCODINGS_HEADER = 4;
const CUT_TEXT_HEADER = 8;

/**
 * The length of the client message at the start of `bytes` once all of it has arrived,
 * or 0 while more bytes are needed. Throws RfbProtocolError for an unknown message type
 * or clipboard text over MAX_CUT_TEXT_BYTES, as soon as the header shows it.
 */
export function clientMessageLength(bytes: Buffer): number {
  const type = bytes[0];
  if (type === undefined) return 0;
  const fixed = FIXED_LENGTH[type];
  if (fixed !== undefined) return complete(bytes, fixed);
  if (type === ClientMessageType.SetEncodings) {
    if (bytes.length < SET_ENCODINGS_HEADER) return 0;
    return complete(bytes, SET_ENCODINGS_HEADER + 4 * bytes.readUInt16BE(2));
  }
  if (type === ClientMessageType.ClientCutText) {
    if (bytes.length < CUT_TEXT_HEADER) return 0;
    const textLength = bytes.readUInt32BE(4);
    if (textLength > MAX_CUT_TEXT_BYTES) {
      throw new RfbProtocolError('RFB_ERR_CUT_TEXT_TOO_LONG', `clipboard text of ${textLength} bytes exceeds the limit of ${MAX_CUT_TEXT_BYTES}`);
    }
    return complete(bytes, CUT_TEXT_HEADER + textLength);
  }
  throw new RfbProtocolError('RFB_ERR_UNKNOWN_MESSAGE', `unknown client message type ${type}`);
}

function complete(bytes: Buffer, length: number): number {
  return bytes.length >= length ? length : 0;
}

export type ClientMessage =
  | { type: 'setPixelFormat'; format: PixelFormat }
  | { type: 'setEncodings'; encodings: number[] }
  | { type: 'updateRequest'; incremental: boolean; rect: Rect }
  | { type: 'key'; down: boolean; keysym: number }
  | { type: 'pointer'; buttons: number; x: number; y: number }
  | { type: 'cutText'; text: string };

/** Decode one complete client message, as delimited by clientMessageLength(). */
export function parseClientMessage(message: Buffer): ClientMessage {
  switch (message[0]) {
    case ClientMessageType.SetPixelFormat:
      return { type: 'setPixelFormat', format: parsePixelFormat(message, 4) };
    case ClientMessageType.SetEncodings: {
      const count = message.readUInt16BE(2);
      const encodings = Array.from({ length: count }, (_, i) => message.readInt32BE(SET_ENCODINGS_HEADER + 4 * i));
      return { type: 'setEncodings', encodings };
    }
    case ClientMessageType.FramebufferUpdateRequest:
      return { type: 'updateRequest', incremental: message[1] !== 0, rect: readRect(message, 2) };
    case ClientMessageType.KeyEvent:
      return { type: 'key', down: message[1] !== 0, keysym: message.readUInt32BE(4) };
    case ClientMessageType.PointerEvent:
      return { type: 'pointer', buttons: message.readUInt8(1), x: message.readUInt16BE(2), y: message.readUInt16BE(4) };
    case ClientMessageType.ClientCutText:
      return { type: 'cutText', text: message.toString('latin1', CUT_TEXT_HEADER) };
    default:
      throw new RfbProtocolError('RFB_ERR_UNKNOWN_MESSAGE', `unknown client message type ${message[0]}`);
  }
}

function readRect(bytes: Buffer, offset: number): Rect {
  return {
    x: bytes.readUInt16BE(offset),
    y: bytes.readUInt16BE(offset + 2),
    width: bytes.readUInt16BE(offset + 4),
    height: bytes.readUInt16BE(offset + 6),
  };
}

function writeRect(bytes: Buffer, offset: number, rect: Rect): void {
  bytes.writeUInt16BE(rect.x, offset);
  bytes.writeUInt16BE(rect.y, offset + 2);
  bytes.writeUInt16BE(rect.width, offset + 4);
  bytes.writeUInt16BE(rect.height, offset + 6);
}

// Client -> server messages.

export function encodeSetPixelFormat(format: PixelFormat): Buffer {
  return Buffer.concat([Buffer.from([ClientMessageType.SetPixelFormat, 0, 0, 0]), encodePixelFormat(format)]);
}

export function encodeSetEncodings(encodings: readonly number[]): Buffer {
  const bytes = Buffer.alloc(SET_ENCODINGS_HEADER + 4 * encodings.length);
  bytes.writeUInt8(ClientMessageType.SetEncodings, 0);
  bytes.writeUInt16BE(encodings.length, 2);
  encodings.forEach((encoding, i) => bytes.writeInt32BE(encoding, SET_ENCODINGS_HEADER + 4 * i));
  return bytes;
}

export function encodeUpdateRequest(rect: Rect, incremental: boolean): Buffer {
  const bytes = Buffer.from([ClientMessageType.FramebufferUpdateRequest, incremental ? 1 : 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  writeRect(bytes, 2, rect);
  return bytes;
}

export function encodeKeyEvent(keysym: number, down: boolean): Buffer {
  const bytes = Buffer.from([ClientMessageType.KeyEvent, down ? 1 : 0, 0, 0, 0, 0, 0, 0]);
  bytes.writeUInt32BE(keysym, 4);
  return bytes;
}

export function encodePointerEvent(x: number, y: number, buttons: number): Buffer {
  const bytes = Buffer.from([ClientMessageType.PointerEvent, buttons, 0, 0, 0, 0]);
  bytes.writeUInt16BE(x, 2);
  bytes.writeUInt16BE(y, 4);
  return bytes;
}

/** RFB clipboard text is Latin-1. */
export function encodeClientCutText(text: string): Buffer {
  const body = Buffer.from(text, 'latin1');
  const header = Buffer.from([ClientMessageType.ClientCutText, 0, 0, 0, 0, 0, 0, 0]);
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

// Server -> client messages.

export function encodeServerInit(width: number, height: number, format: PixelFormat, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt16BE(width, 0);
  head.writeUInt16BE(height, 2);
  const nameLength = Buffer.alloc(4);
  nameLength.writeUInt32BE(nameBytes.length, 0);
  return Buffer.concat([head, encodePixelFormat(format), nameLength, nameBytes]);
}

export function encodeUpdateHeader(rectangleCount: number): Buffer {
  const bytes = Buffer.from([ServerMessageType.FramebufferUpdate, 0, 0, 0]);
  bytes.writeUInt16BE(rectangleCount, 2);
  return bytes;
}

/** A rectangle header; its encoding's payload follows it. */
export function encodeRectHeader(rect: Rect, encoding: number): Buffer {
  const bytes = Buffer.alloc(12);
  writeRect(bytes, 0, rect);
  bytes.writeInt32BE(encoding, 8);
  return bytes;
}

/** A whole CopyRect rectangle: copy the client's own pixels at (srcX, srcY) to `rect`. */
export function encodeCopyRect(rect: Rect, srcX: number, srcY: number): Buffer {
  const source = Buffer.alloc(4);
  source.writeUInt16BE(srcX, 0);
  source.writeUInt16BE(srcY, 2);
  return Buffer.concat([encodeRectHeader(rect, Encoding.CopyRect), source]);
}
