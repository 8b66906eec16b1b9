/**
 * The built-in demo desktop: a small RFB 3.8 server drawing one shared screen. It is the
 * gateway's default target when no desktop is configured, and a deterministic fixture
 * (with `clock: false`) for tests and benchmarks. It knows nothing about the gateway.
 *
 * Viewers type into a text box and draw with the left button (the right button clears
 * the drawing). Every change reaches every viewer, each in its own pixel format, only
 * when it asked for an update and has drained what it was sent before.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { DemoScene } from './scene.js';
import { createPixelEncoder, NATIVE_PIXEL_FORMAT, union, type DirtyTracker, type Point } from './framebuffer.js';
import {
  Button,
  clientMessageLength,
  encodeCopyRect,
  encodeRectHeader,
  encodeServerInit,
  encodeUpdateHeader,
  Encoding,
  parseClientMessage,
  parseProtocolVersion,
  PROTOCOL_VERSION_LENGTH,
  RFB_VERSION_3_8,
  RfbProtocolError,
  SecurityResult,
  SecurityType,
  type ClientMessage,
  type ProtocolMinor,
  type Rect,
} from '../rfb/protocol.js';

export interface DemoDesktopOptions {
  host?: string;
  port?: number;
  width?: number;
  height?: number;
  name?: string;
  /** Show a clock that changes every second; turn off for a deterministic screen. */
  clock?: boolean;
}

export interface DemoDesktop {
  readonly host: string;
  /** The bound port, also when 0 asked for an ephemeral one. */
  readonly port: number;
  /** What the text box holds: lines typed (or pasted) by viewers, joined by "\n". */
  readonly text: string;
  /** Connected viewers, including those still in the handshake. */
  readonly clientCount: number;
  /** Disconnect every viewer and stop listening; resolves when all is closed. Idempotent. */
  close(): Promise<void>;
}

type Phase = 'version' | 'security' | 'init' | 'messages';

/**
 * Pixels one viewer may draw before the desktop reads anything more from it: some 15,000
 * pen stamps, a few milliseconds. A burst of input (thousands of strokes in one packet)
 * then takes turns with the rest of the event loop instead of freezing it, and what is not
 * read yet waits in the socket, under TCP back-pressure, not in a queue here.
 */
const DRAWING_BUDGET_PER_TURN = 128 * 1024;

interface UpdateRequest {
  rect: Rect;
  incremental: boolean;
}

/** One viewer: the RFB handshake, its messages, and its own pixel format and pending request. */
class DemoConnection {
  readonly #socket: Socket;
  readonly #scene: DemoScene;
  readonly #name: string;
  readonly #tracker: DirtyTracker;
  readonly #onClose: () => void;
  #phase: Phase = 'version';
  #minor: ProtocolMinor = 8;
  #inbox: Buffer = Buffer.alloc(0);
  #encode = createPixelEncoder(NATIVE_PIXEL_FORMAT);
  #request: UpdateRequest | undefined;
  #waitingForDrain = false;
  /** Set while reading is paused because this turn's drawing budget is spent. */
  #nextTurn: NodeJS.Immediate | undefined;
  #pen: Point | undefined;
  #buttons = 0;

  constructor(socket: Socket, scene: DemoScene, name: string, onClose: () => void) {
    this.#socket = socket;
    this.#scene = scene;
    this.#name = name;
    this.#onClose = onClose;
    this.#tracker = scene.framebuffer.track();
    socket.setNoDelay(true); // input echoes are latency-bound
    socket.on('data', this.#socketOnData);
    socket.on('error', socketOnError);
    socket.once('close', this.#socketOnClose);
    this.#write(Buffer.from(RFB_VERSION_3_8, 'latin1'));
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Answer the pending update request if there is something to send and room to send it. */
  serve(): void {
    if (!this.#request || this.#waitingForDrain || !this.#socket.writable) return;
    const damage = this.#tracker.take(this.#request.rect, this.#request.incremental);
    if (!damage) return; // an incremental request waits until something changes
    this.#request = undefined;
    const parts: Buffer[] = [];
    if (damage.copy) parts.push(encodeCopyRect(damage.copy.rect, damage.copy.srcX, damage.copy.srcY));
    if (damage.raw) parts.push(encodeRectHeader(damage.raw, Encoding.Raw), this.#encode(this.#scene.framebuffer, damage.raw));
    this.#write(Buffer.concat([encodeUpdateHeader(damage.copy && damage.raw ? 2 : 1), ...parts]));
  }

  readonly #socketOnData = (chunk: Buffer): void => {
    this.#inbox = this.#inbox.length ? Buffer.concat([this.#inbox, chunk]) : chunk;
    this.#handleInbox();
  };

  readonly #socketOnClose = (): void => {
    clearImmediate(this.#nextTurn);
    this.#scene.framebuffer.untrack(this.#tracker);
    this.#onClose();
  };

  readonly #onNextTurn = (): void => {
    this.#nextTurn = undefined;
    this.#handleInbox();
    if (!this.#nextTurn) this.#socket.resume();
  };

  /** Handle the complete messages in the inbox, or as many as this turn's drawing budget allows. */
  #handleInbox(): void {
    const framebuffer = this.#scene.framebuffer;
    const budgetEnd = framebuffer.pixelsWritten + DRAWING_BUDGET_PER_TURN;
    try {
      for (let length = this.#nextLength(); length > 0; length = this.#nextLength()) {
        const message = this.#inbox.subarray(0, length);
        this.#inbox = this.#inbox.subarray(length);
        this.#handle(message);
        if (framebuffer.pixelsWritten >= budgetEnd) return this.#waitForNextTurn();
      }
    } catch (err) {
      // A broken viewer loses its own connection; the desktop and other viewers carry on.
      this.#socket.destroy(err as Error);
    }
  }

  /** Stop reading until the event loop has had its turn (timers, other sockets, updates going out). */
  #waitForNextTurn(): void {
    this.#socket.pause();
    this.#nextTurn = setImmediate(this.#onNextTurn);
  }

  readonly #socketOnDrain = (): void => {
    this.#waitingForDrain = false;
    this.serve();
  };

  #write(bytes: Buffer): void {
    if (this.#socket.write(bytes)) return;
    // The viewer is slow: build nothing more for it until the kernel takes what it has.
    this.#waitingForDrain = true;
    this.#socket.once('drain', this.#socketOnDrain);
  }

  #nextLength(): number {
    if (this.#phase === 'messages') return clientMessageLength(this.#inbox);
    const length = this.#phase === 'version' ? PROTOCOL_VERSION_LENGTH : 1;
    return this.#inbox.length >= length ? length : 0;
  }

  #handle(bytes: Buffer): void {
    switch (this.#phase) {
      case 'version':
        return this.#onVersion(bytes);
      case 'security':
        return this.#onSecurityChoice(bytes);
      case 'init':
        return this.#onClientInit();
      case 'messages':
        return this.#onMessage(parseClientMessage(bytes));
    }
  }

  #onVersion(bytes: Buffer): void {
    this.#minor = parseProtocolVersion(bytes);
    if (this.#minor === 3) {
      // RFB 3.3 has no negotiation: the server names the security type as a u32.
      this.#write(u32(SecurityType.None));
      this.#phase = 'init';
    } else {
      this.#write(Buffer.from([1, SecurityType.None]));
      this.#phase = 'security';
    }
  }

  #onSecurityChoice(bytes: Buffer): void {
    if (bytes[0] !== SecurityType.None) {
      throw new RfbProtocolError('RFB_ERR_SECURITY', `the viewer chose security type ${bytes[0]}; only None (1) was offered`);
    }
    // RFB 3.7 sends no SecurityResult after None; 3.8 always does.
    if (this.#minor === 8) this.#write(u32(SecurityResult.Ok));
    this.#phase = 'init';
  }

  /** The shared flag is ignored: every viewer shares the one desktop. */
  #onClientInit(): void {
    const { width, height } = this.#scene.framebuffer;
    this.#write(encodeServerInit(width, height, NATIVE_PIXEL_FORMAT, this.#name));
    this.#phase = 'messages';
  }

  #onMessage(message: ClientMessage): void {
    switch (message.type) {
      case 'setPixelFormat':
        this.#encode = createPixelEncoder(message.format); // throws, closing us, for colour maps
        return;
      case 'setEncodings':
        this.#tracker.acceptsCopyRect = message.encodings.includes(Encoding.CopyRect);
        return;
      case 'updateRequest':
        this.#onUpdateRequest(message);
        return;
      case 'key':
        if (message.down) this.#scene.key(message.keysym);
        return;
      case 'pointer':
        this.#onPointer(message.buttons, { x: message.x, y: message.y });
        return;
      case 'cutText':
        this.#scene.type(message.text);
        return;
    }
  }

  /** Requests that arrive while one is pending merge into it, so at most one is held. */
  #onUpdateRequest(request: UpdateRequest): void {
    const rect = clipTo(request.rect, this.#scene.framebuffer.bounds);
    const pending = this.#request;
    this.#request = pending
      ? { rect: union(pending.rect, rect), incremental: pending.incremental && request.incremental }
      : { rect, incremental: request.incremental };
    this.serve();
  }

  #onPointer(buttons: number, at: Point): void {
    if (buttons & Button.Left) {
      this.#scene.stroke(this.#pen ?? at, at);
      this.#pen = at;
    } else {
      this.#pen = undefined;
    }
    if (buttons & Button.Right && !(this.#buttons & Button.Right)) this.#scene.clearCanvas();
    this.#buttons = buttons;
  }
}

/** Errors always end in 'close', where the connection is cleaned up. */
function socketOnError(): void {}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value, 0);
  return bytes;
}

/** The part of `rect` on screen; an empty rectangle at the origin when none is. */
function clipTo(rect: Rect, bounds: Rect): Rect {
  const x = Math.min(rect.x, bounds.width);
  const y = Math.min(rect.y, bounds.height);
  return { x, y, width: Math.min(rect.width, bounds.width - x), height: Math.min(rect.height, bounds.height - y) };
}

/** Big enough for the text box to fit, small enough to allocate. */
const SIZE_LIMITS = { width: [320, 8192], height: [240, 8192] } as const;

export async function startDemoDesktop(options: DemoDesktopOptions = {}): Promise<DemoDesktop> {
  const { host = '127.0.0.1', port = 0, width = 1024, height = 768, name = 'deskgate demo', clock = true } = options;
  checkSize('width', width);
  checkSize('height', height);
  const connections = new Set<DemoConnection>();
  let flush: NodeJS.Immediate | undefined;
  let clockTimer: NodeJS.Timeout | undefined;

  // Changes from one batch of input go out as one update, not one per message.
  const scene = new DemoScene(width, height, function sceneOnChange() {
    flush ??= setImmediate(flushUpdates);
  });
  function flushUpdates(): void {
    flush = undefined;
    for (const connection of connections) connection.serve();
  }
  function clockOnTick(): void {
    scene.showTime(new Date());
    // Aim just past the next whole second so the display never skips one.
    clockTimer = setTimeout(clockOnTick, 1005 - (Date.now() % 1000)).unref();
  }

  const server = createServer(function serverOnConnection(socket) {
    const connection = new DemoConnection(socket, scene, name, () => connections.delete(connection));
    connections.add(connection);
  });
  await listen(server, port, host);
  server.on('error', serverOnError);
  if (clock) clockOnTick();

  let closed: Promise<void> | undefined;
  return {
    host,
    port: (server.address() as AddressInfo).port,
    get text() {
      return scene.text;
    },
    get clientCount() {
      return connections.size;
    },
    close() {
      closed ??= new Promise((resolve) => {
        clearTimeout(clockTimer);
        clearImmediate(flush);
        server.close(() => resolve());
        for (const connection of connections) connection.destroy();
      });
      return closed;
    },
  };
}

function checkSize(option: keyof typeof SIZE_LIMITS, value: number): void {
  const [min, max] = SIZE_LIMITS[option];
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`demo desktop ${option} must be a whole number of pixels from ${min} to ${max}, got ${value}`);
  }
}

/** Accept errors (say, out of file descriptors) cost one connection; the listener goes on. */
function serverOnError(): void {}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
