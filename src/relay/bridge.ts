/**
 * The bridge: bytes both ways between a browser WebSocket and a VNC server's TCP socket.
 *
 * Back-pressure both ways keeps memory per session bounded whatever the peers do:
 * - browser -> VNC: when `tcp.write()` returns false the WebSocket stops reading
 *   (`ws.pause()`) until the TCP socket drains;
 * - VNC -> browser: when the WebSocket's buffered amount passes the high-water mark the
 *   TCP socket stops reading until a send completes with the buffer below half of it.
 *
 * No policy, wording, logging or metrics here: the session layer says how the ends the
 * bridge detects are worded (`endings`), and the bridge reports how it ended through `onEnd`.
 * Features that need to see the bytes plug in as stages (stages.ts), one per direction.
 */
import type { Socket } from 'node:net';
import type { RawData, WebSocket } from 'ws';
import { CLOSE, errors, truncateReason } from '../errors.js';
import { recycleReadBuffer, SHARED_READ_BUFFER, takeReadBuffer } from './read-buffers.js';
import type { BrowserTap, RelayStages, StageSession, UpstreamFilter } from './stages.js';

/**
 * Reads of at least this size are copied into a recycled 256 KiB buffer, smaller ones into
 * one of their own size: a session holds at most 4x its buffered bytes in read buffers.
 */
const POOLED_FROM = 64 * 1024;

/** How the gateway closes a session: a catalogue error's close code and reason. */
export interface Closing {
  readonly closeCode: number;
  readonly reason: string;
}

/** The ends the bridge detects, as the session layer words them. */
export interface BridgeEndings {
  /** No bytes either way for `idleTimeoutMs`. */
  idle(): Closing;
  /** `maxDurationMs` has passed. */
  expired(): Closing;
  /** The VNC server closed the connection, or broke it with `err`. */
  upstreamClosed(err?: Error): Closing;
  /** The browser answered no WebSocket ping for `keepaliveMs`: it or the path to it is gone. */
  noPong(): Closing;
}

export interface BridgeOptions {
  endings: BridgeEndings;
  highWaterMarkBytes: number;
  idleTimeoutMs: number;
  maxDurationMs: number;
  /**
   * A WebSocket ping every so often, 0 for none: keeps proxies that cut quiet connections (nginx
   * after 60 s) from cutting an idle desktop, and finds browsers that vanished without a close.
   */
  keepaliveMs: number;
  /** Hooks on the relay (a view-only filter, a recorder); none: the unstaged path. */
  stages?: RelayStages | undefined;
}

const TEXT_MESSAGE = errors.textMessage();

export interface BridgeEnd {
  /** The close code of the session: the one the gateway sent, or the one the browser sent. */
  code: number;
  reason: string;
  /** Who ended the session. */
  by: 'browser' | 'upstream' | 'gateway';
  bytesToUpstream: number;
  bytesToBrowser: number;
  /** What a stage threw, if one did (the session then closed with 1011): for the log. */
  stageError?: unknown;
}

export class Bridge implements StageSession {
  bytesToUpstream = 0;
  bytesToBrowser = 0;
  /** Pass to `net.connect()`: how the VNC side is read (see read-buffers.ts). */
  readonly upstreamRead: { buffer: Buffer; callback: (bytes: number, buffer: Buffer) => boolean };
  readonly #ws: WebSocket;
  #tcp: Socket | undefined;
  readonly #options: BridgeOptions;
  readonly #onEnd: (end: BridgeEnd) => void;
  readonly #toUpstream: UpstreamFilter | undefined;
  readonly #toBrowser: BrowserTap | undefined;
  /** `wsOnMessage`, or `wsOnMessageFiltered` when there is a browser -> VNC stage. */
  readonly #onBrowserMessage: (data: RawData, isBinary: boolean) => void;
  #idleTimer: NodeJS.Timeout | undefined;
  #durationTimer: NodeJS.Timeout | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  /** Whether the browser answered the last ping. */
  #ponged = true;
  #bytesAtLastIdleCheck = 0;
  #upstreamPaused = false;
  /** Pooled buffers being sent, oldest first: ws completes sends in order. */
  readonly #sending: Buffer[] = [];
  #closing: { code: number; reason: string; by: BridgeEnd['by'] } | undefined;
  #ended = false;
  #stageError: unknown;

  constructor(ws: WebSocket, options: BridgeOptions, onEnd: (end: BridgeEnd) => void) {
    this.#ws = ws;
    this.#options = options;
    this.#onEnd = onEnd;

    this.wsOnMessage = this.wsOnMessage.bind(this);
    this.wsOnClose = this.wsOnClose.bind(this);
    this.wsOnSent = this.wsOnSent.bind(this);
    this.wsOnSentPooled = this.wsOnSentPooled.bind(this);
    this.tcpOnRead = this.tcpOnRead.bind(this);
    this.tcpOnDrain = this.tcpOnDrain.bind(this);
    this.tcpOnEnd = this.tcpOnEnd.bind(this);
    this.tcpOnError = this.tcpOnError.bind(this);
    this.tcpOnClose = this.tcpOnClose.bind(this);
    this.wsOnPong = this.wsOnPong.bind(this);
    // Each direction's handler is chosen here, once per session, instead of testing for a stage
    // on every message or read: with no stage the relay runs exactly the unstaged handlers (no
    // call, branch or allocation added per chunk), and a stage costs only its own direction.
    // The read callback has to be fixed before connecting (net.connect takes `upstreamRead`).
    this.#toUpstream = options.stages?.toUpstream;
    this.#toBrowser = options.stages?.toBrowser;
    this.#onBrowserMessage = this.#toUpstream ? this.wsOnMessageFiltered.bind(this) : this.wsOnMessage;
    const onUpstreamRead = this.#toBrowser ? this.tcpOnReadTapped.bind(this) : this.tcpOnRead;
    this.upstreamRead = { buffer: SHARED_READ_BUFFER, callback: onUpstreamRead };
  }

  /**
   * Start relaying once the VNC server is connected, its reads sent to `upstreamRead`.
   * `early` holds what each side sent after the handshake and before the relay began.
   */
  start(tcp: Socket, early: { fromBrowser?: Buffer; fromUpstream?: Buffer } = {}): void {
    this.#tcp = tcp;
    const ws = this.#ws;
    ws.on('message', this.#onBrowserMessage);
    ws.on('close', this.wsOnClose);
    tcp.on('drain', this.tcpOnDrain);
    tcp.on('end', this.tcpOnEnd);
    tcp.on('error', this.tcpOnError);
    tcp.on('close', this.tcpOnClose);
    // One timer per session, checked against the byte counters instead of being reset on
    // every chunk: the hot path only increments counters.
    this.#idleTimer = setTimeout(this.idleCheck.bind(this), this.#options.idleTimeoutMs);
    this.#durationTimer = setTimeout(() => this.close(this.#options.endings.expired()), this.#options.maxDurationMs);
    if (this.#options.keepaliveMs > 0) {
      ws.on('pong', this.wsOnPong);
      this.#keepaliveTimer = setInterval(this.keepaliveCheck.bind(this), this.#options.keepaliveMs);
    }
    if (early.fromUpstream?.length) this.#sendEarly(early.fromUpstream);
    if (early.fromBrowser?.length) this.#onBrowserMessage(early.fromBrowser, true);
    ws.resume();
  }

  /** Bytes the VNC server sent with the end of the handshake: the tap sees them, then the browser. */
  #sendEarly(chunk: Buffer): void {
    try {
      this.#toBrowser?.tap(chunk, this);
    } catch (err) {
      this.#stageFailed(err);
      return;
    }
    if (this.#closing) return;
    this.bytesToBrowser += chunk.length;
    this.#ws.send(chunk, this.wsOnSent);
  }

  /** Bytes this session holds in the gateway right now, both directions. */
  get bufferedBytes(): number {
    return this.#ws.bufferedAmount + (this.#tcp?.writableLength ?? 0);
  }

  /** Close the session from the gateway's side. Idempotent; the first reason wins. */
  close(closing: Closing): void {
    if (this.#closing) return;
    this.#closing = { code: closing.closeCode, reason: truncateReason(closing.reason), by: 'gateway' };
    this.#shutdown();
  }

  private wsOnMessage(data: RawData, isBinary: boolean): void {
    if (this.#closing) return;
    if (!isBinary) {
      this.close(TEXT_MESSAGE);
      return;
    }
    const chunk = data as Buffer; // binaryType is 'nodebuffer'
    this.bytesToUpstream += chunk.length;
    if (!this.#tcp?.write(chunk)) this.#ws.pause();
  }

  /** The browser -> VNC filter, then `wsOnMessage` with what it passed: one write path. */
  private wsOnMessageFiltered(data: RawData, isBinary: boolean): void {
    if (this.#closing || !isBinary) {
      this.wsOnMessage(data, isBinary); // closes on a text message: filters see binary only
      return;
    }
    let message: Buffer | null | undefined;
    try {
      message = this.#toUpstream?.filter(data as Buffer, this);
    } catch (err) {
      this.#stageFailed(err);
      return;
    }
    if (message) this.wsOnMessage(message, true); // does nothing if the filter closed the session
  }

  private tcpOnDrain(): void {
    this.#ws.resume();
  }

  private tcpOnRead(bytes: number, shared: Buffer): boolean {
    if (this.#closing) return false;
    this.bytesToBrowser += bytes;
    if (bytes < POOLED_FROM) {
      this.#ws.send(Buffer.from(shared.subarray(0, bytes)), this.wsOnSent);
    } else {
      const pooled = takeReadBuffer();
      shared.copy(pooled, 0, 0, bytes);
      this.#sending.push(pooled);
      this.#ws.send(pooled.subarray(0, bytes), this.wsOnSentPooled);
    }
    if (this.#ws.bufferedAmount > this.#options.highWaterMarkBytes) {
      this.#upstreamPaused = true;
      this.#tcp?.pause();
    }
    return true;
  }

  /** The VNC -> browser tap, then `tcpOnRead`: the tap sees the chunk while it is valid. */
  private tcpOnReadTapped(bytes: number, shared: Buffer): boolean {
    if (this.#closing) return false;
    try {
      this.#toBrowser?.tap(shared.subarray(0, bytes), this);
    } catch (err) {
      this.#stageFailed(err);
      return false;
    }
    return this.tcpOnRead(bytes, shared); // false, sending nothing, if the tap closed the session
  }

  /** A stage threw: a bug, not the peers' doing. The session ends with 1011; onEnd carries the error. */
  #stageFailed(err: unknown): void {
    this.#stageError ??= err;
    this.close(errors.internal());
  }

  private wsOnSentPooled(): void {
    const buffer = this.#sending.shift();
    if (buffer) recycleReadBuffer(buffer);
    this.wsOnSent();
  }

  private wsOnSent(): void {
    if (this.#upstreamPaused && this.#ws.bufferedAmount <= this.#options.highWaterMarkBytes / 2) {
      this.#upstreamPaused = false;
      this.#tcp?.resume();
    }
  }

  private tcpOnEnd(): void {
    this.#upstreamClosed();
  }

  private tcpOnError(err: Error): void {
    this.#upstreamClosed(err);
  }

  private tcpOnClose(): void {
    this.#upstreamClosed();
  }

  #upstreamClosed(err?: Error): void {
    if (this.#closing) return;
    const { closeCode, reason } = this.#options.endings.upstreamClosed(err);
    this.#closing = { code: closeCode, reason: truncateReason(reason), by: 'upstream' };
    this.#shutdown();
  }

  private wsOnClose(code: number, reason: Buffer): void {
    this.#closing ??= { code, reason: reason.toString(), by: 'browser' };
    this.#shutdown();
    this.#finish();
  }

  private wsOnPong(): void {
    this.#ponged = true;
  }

  /** Pings do not count as activity: the idle timeout measures RFB bytes only. */
  private keepaliveCheck(): void {
    if (this.#ponged) {
      this.#ponged = false;
      this.#ws.ping();
      return;
    }
    // No closing handshake: a peer that answers no ping would not answer a close frame either.
    const { closeCode, reason } = this.#options.endings.noPong();
    this.#closing ??= { code: closeCode, reason: truncateReason(reason), by: 'gateway' };
    this.#shutdown();
    this.#ws.terminate();
  }

  private idleCheck(): void {
    const total = this.bytesToUpstream + this.bytesToBrowser;
    if (total !== this.#bytesAtLastIdleCheck) {
      this.#bytesAtLastIdleCheck = total;
      this.#idleTimer?.refresh();
      return;
    }
    this.close(this.#options.endings.idle());
  }

  /** Close both sides; the session ends when the WebSocket reports 'close'. */
  #shutdown(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#durationTimer);
    clearInterval(this.#keepaliveTimer);
    this.#tcp?.destroy();
    const ws = this.#ws;
    ws.resume(); // a paused WebSocket would never read the browser's half of the closing handshake
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
      ws.close(this.#closing?.code ?? CLOSE.NORMAL, this.#closing?.reason);
    }
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    const ws = this.#ws;
    ws.off('message', this.#onBrowserMessage);
    ws.off('close', this.wsOnClose);
    ws.off('pong', this.wsOnPong);
    this.#tcp?.off('drain', this.tcpOnDrain);
    this.#tcp?.off('end', this.tcpOnEnd);
    this.#tcp?.off('close', this.tcpOnClose);
    // The TCP error listener stays: a late error on a destroyed socket must not crash the
    // process. (The WebSocket's is the session's, added before connecting.)
    const closing = this.#closing ?? { code: CLOSE.NORMAL, reason: '', by: 'gateway' as const };
    const { bytesToUpstream, bytesToBrowser } = this;
    this.#onEnd({ ...closing, bytesToUpstream, bytesToBrowser, stageError: this.#stageError });
  }
}
