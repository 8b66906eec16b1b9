/**
 * A small RFB client for tests. Its core is transport-agnostic: feed it the server's bytes
 * with `push()`, give it a `send` function, and it speaks RFB over TCP, a WebSocket or
 * anything else. It offers security type None only, and keeps a copy of the remote screen
 * (Raw, CopyRect and DesktopSize) as 0xRRGGBB pixels for assertions.
 */
import { connect, type Socket } from 'node:net';
import {
  encodeClientCutText,
  encodeKeyEvent,
  encodePointerEvent,
  encodeSetEncodings,
  encodeSetPixelFormat,
  encodeUpdateRequest,
  Encoding,
  formatProtocolVersion,
  Keysym,
  parsePixelFormat,
  parseProtocolVersion,
  PROTOCOL_VERSION_LENGTH,
  SecurityResult,
  SecurityType,
  ServerMessageType,
  type PixelFormat,
  type ProtocolMinor,
  type Rect,
} from '../../src/rfb/protocol.js';
import { NATIVE_PIXEL_FORMAT } from '../../src/demo/framebuffer.js';

interface PendingRead {
  length: number;
  resolve(bytes: Buffer): void;
  reject(error: Error): void;
}

/** Bytes pushed in by a transport, read out in exact lengths. */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;
  #pending: PendingRead | undefined;
  #ended: Error | undefined;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#settle();
  }

  /** The transport closed: reads that cannot complete now fail with `error`. */
  end(error: Error): void {
    this.#ended ??= error;
    this.#settle();
  }

  read(length: number): Promise<Buffer> {
    if (this.#pending) return Promise.reject(new Error('ByteQueue: only one read at a time'));
    return new Promise((resolve, reject) => {
      this.#pending = { length, resolve, reject };
      this.#settle();
    });
  }

  #settle(): void {
    const pending = this.#pending;
    if (!pending) return;
    if (this.#length >= pending.length) {
      this.#pending = undefined;
      pending.resolve(this.#take(pending.length));
    } else if (this.#ended) {
      this.#pending = undefined;
      pending.reject(this.#ended);
    }
  }

  #take(length: number): Buffer {
    const parts: Buffer[] = [];
    for (let missing = length; missing > 0;) {
      const head = this.#chunks[0]!;
      if (head.length <= missing) {
        parts.push(head);
        this.#chunks.shift();
      } else {
        parts.push(head.subarray(0, missing));
        this.#chunks[0] = head.subarray(missing);
      }
      missing -= parts[parts.length - 1]!.length;
    }
    this.#length -= length;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

export interface ServerInit {
  width: number;
  height: number;
  pixelFormat: PixelFormat;
  name: string;
}

/** A rectangle as received; `data` holds Raw pixels in the client's pixel format. */
export interface ReceivedRect extends Rect {
  encoding: number;
  data?: Buffer;
  source?: { x: number; y: number };
}

export class RfbClient {
  readonly #bytes = new ByteQueue();
  readonly #send: (bytes: Buffer) => void;
  version: ProtocolMinor = 8;
  width = 0;
  height = 0;
  name = '';
  pixelFormat: PixelFormat | undefined;
  /** The screen as this client has been told it: 0xRRGGBB, row by row. */
  pixels = new Uint32Array(0);

  constructor(send: (bytes: Buffer) => void) {
    this.#send = send;
  }

  push(chunk: Buffer): void {
    this.#bytes.push(chunk);
  }

  end(error: Error): void {
    this.#bytes.end(error);
  }

  /** Raw access, for tests that speak the protocol byte by byte. */
  read(length: number): Promise<Buffer> {
    return this.#bytes.read(length);
  }

  send(bytes: Buffer): void {
    this.#send(bytes);
  }

  /** Bytes received but not read yet. */
  get buffered(): number {
    return this.#bytes.length;
  }

  /** Version, security (None, among whatever else is offered), ClientInit and ServerInit. */
  async handshake(options: { version?: ProtocolMinor; shared?: boolean } = {}): Promise<ServerInit> {
    const serverVersion = parseProtocolVersion(await this.#bytes.read(PROTOCOL_VERSION_LENGTH));
    this.version = Math.min(serverVersion, options.version ?? 8) as ProtocolMinor;
    this.#send(Buffer.from(formatProtocolVersion(this.version), 'latin1'));
    await (this.version === 3 ? this.#securityV3() : this.#securityV7());
    this.#send(Buffer.from([options.shared === false ? 0 : 1]));
    return this.#serverInit();
  }

  setPixelFormat(format: PixelFormat): void {
    this.pixelFormat = format;
    this.#send(encodeSetPixelFormat(format));
  }

  setEncodings(encodings: readonly number[]): void {
    this.#send(encodeSetEncodings(encodings));
  }

  requestUpdate(incremental: boolean, rect: Rect = { x: 0, y: 0, width: this.width, height: this.height }): void {
    this.#send(encodeUpdateRequest(rect, incremental));
  }

  key(keysym: number, down: boolean): void {
    this.#send(encodeKeyEvent(keysym, down));
  }

  /** Press and release a key for each character; "\n" is Return. */
  type(text: string): void {
    const events = [...text].flatMap((char) => {
      const keysym = char === '\n' ? Keysym.Return : char.charCodeAt(0);
      return [encodeKeyEvent(keysym, true), encodeKeyEvent(keysym, false)];
    });
    this.#send(Buffer.concat(events));
  }

  pointer(x: number, y: number, buttons: number): void {
    this.#send(encodePointerEvent(x, y, buttons));
  }

  cutText(text: string): void {
    this.#send(encodeClientCutText(text));
  }

  pixel(x: number, y: number): number {
    return this.pixels[y * this.width + x] ?? 0;
  }

  /** Read server messages up to the next FramebufferUpdate, apply it and return its rectangles. */
  async readUpdate(): Promise<ReceivedRect[]> {
    for (;;) {
      const [type] = await this.#bytes.read(1);
      if (type === ServerMessageType.FramebufferUpdate) return this.#readRectangles();
      if (type === ServerMessageType.Bell) continue;
      if (type !== ServerMessageType.ServerCutText) throw new Error(`unexpected server message type ${type}`);
      const header = await this.#bytes.read(7);
      await this.#bytes.read(header.readUInt32BE(3));
    }
  }

  async #securityV3(): Promise<void> {
    const type = (await this.#bytes.read(4)).readUInt32BE(0);
    if (type === SecurityType.Invalid) throw new Error(`server refused: ${await this.#readReason()}`);
    if (type !== SecurityType.None) throw new Error(`server requires security type ${type}; this client knows only None`);
  }

  async #securityV7(): Promise<void> {
    const [count = 0] = await this.#bytes.read(1);
    if (count === 0) throw new Error(`server refused: ${await this.#readReason()}`);
    const offered = [...(await this.#bytes.read(count))];
    if (!offered.includes(SecurityType.None)) throw new Error(`server offers security types ${offered.join(', ')}, not None`);
    this.#send(Buffer.from([SecurityType.None]));
    if (this.version === 7) return; // 3.7 sends no SecurityResult after None
    const result = (await this.#bytes.read(4)).readUInt32BE(0);
    if (result !== SecurityResult.Ok) throw new Error(`security failed: ${await this.#readReason()}`);
  }

  async #readReason(): Promise<string> {
    const length = (await this.#bytes.read(4)).readUInt32BE(0);
    return (await this.#bytes.read(length)).toString('utf8');
  }

  async #serverInit(): Promise<ServerInit> {
    const head = await this.#bytes.read(24);
    this.#resize(head.readUInt16BE(0), head.readUInt16BE(2));
    this.pixelFormat = parsePixelFormat(head, 4);
    this.name = (await this.#bytes.read(head.readUInt32BE(20))).toString('utf8');
    return { width: this.width, height: this.height, pixelFormat: this.pixelFormat, name: this.name };
  }

  async #readRectangles(): Promise<ReceivedRect[]> {
    const count = (await this.#bytes.read(3)).readUInt16BE(1);
    const rects: ReceivedRect[] = [];
    for (let i = 0; i < count; i++) {
      const header = await this.#bytes.read(12);
      const rect = { x: header.readUInt16BE(0), y: header.readUInt16BE(2), width: header.readUInt16BE(4), height: header.readUInt16BE(6) };
      rects.push(await this.#readRectangle(rect, header.readInt32BE(8)));
    }
    return rects;
  }

  async #readRectangle(rect: Rect, encoding: number): Promise<ReceivedRect> {
    if (encoding === Encoding.Raw) {
      const format = this.pixelFormat!;
      const data = await this.#bytes.read(rect.width * rect.height * (format.bitsPerPixel / 8));
      this.#applyRaw(rect, data, format);
      return { ...rect, encoding, data };
    }
    if (encoding === Encoding.CopyRect) {
      const source = await this.#bytes.read(4);
      const from = { x: source.readUInt16BE(0), y: source.readUInt16BE(2) };
      this.#applyCopy(rect, from);
      return { ...rect, encoding, source: from };
    }
    if (encoding === Encoding.DesktopSize) {
      this.#resize(rect.width, rect.height);
      return { ...rect, encoding };
    }
    throw new Error(`unsupported encoding ${encoding}`);
  }

  #applyRaw(rect: Rect, data: Buffer, format: PixelFormat): void {
    const bytes = format.bitsPerPixel / 8;
    for (let row = 0; row < rect.height; row++) {
      for (let column = 0; column < rect.width; column++) {
        const offset = (row * rect.width + column) * bytes;
        const value = format.bigEndian ? data.readUIntBE(offset, bytes) : data.readUIntLE(offset, bytes);
        this.pixels[(rect.y + row) * this.width + rect.x + column] = toRgb(value, format);
      }
    }
  }

  #applyCopy(rect: Rect, from: { x: number; y: number }): void {
    const copy = new Uint32Array(rect.width * rect.height);
    for (let row = 0; row < rect.height; row++) {
      const start = (from.y + row) * this.width + from.x;
      copy.set(this.pixels.subarray(start, start + rect.width), row * rect.width);
    }
    for (let row = 0; row < rect.height; row++) {
      this.pixels.set(copy.subarray(row * rect.width, (row + 1) * rect.width), (rect.y + row) * this.width + rect.x);
    }
  }

  #resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.pixels = new Uint32Array(width * height);
  }
}

function toRgb(value: number, format: PixelFormat): number {
  const channel = (shift: number, max: number): number => (max ? Math.round((((value >>> shift) & max) * 255) / max) : 0);
  return (channel(format.redShift, format.redMax) << 16) | (channel(format.greenShift, format.greenMax) << 8) | channel(format.blueShift, format.blueMax);
}

/** The pixel format noVNC asks for: 32 bits, little-endian, red in the lowest byte. */
export const NOVNC_PIXEL_FORMAT: PixelFormat = Object.freeze({ ...NATIVE_PIXEL_FORMAT, redShift: 0, blueShift: 16 });

export interface RfbTcpConnection {
  rfb: RfbClient;
  socket: Socket;
  /** Resolves when the socket has closed, whichever side closed it. */
  closed: Promise<void>;
}

export function connectTcp(host: string, port: number): Promise<RfbTcpConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const rfb = new RfbClient((bytes) => socket.write(bytes));
    const closed = new Promise<void>((done) => {
      socket.once('close', function socketOnClose() {
        rfb.end(new Error(`RFB connection to ${host}:${port} closed`));
        done();
      });
    });
    socket.on('data', function socketOnData(chunk: Buffer) {
      rfb.push(chunk);
    });
    // Connect errors reject below; later ones end in 'close', which fails pending reads.
    socket.on('error', function socketOnError() {});
    socket.once('error', reject);
    socket.once('connect', function socketOnConnect() {
      socket.off('error', reject);
      resolve({ rfb, socket, closed });
    });
  });
}
