/**
 * The bridge: bytes both ways between a browser WebSocket and a VNC server's TCP socket.
 *
 * Back-pressure both ways keeps memory per session bounded whatever the peers do:
 * - browser -> VNC: when `tcp.write()` returns false the WebSocket stops reading
 *   (`ws.pause()`) until the TCP socket drains;
 * - VNC -> browser: when the WebSocket's buffered amount passes the high-water mark the
 *   TCP socket stops reading until a send completes with the buffer below half of it.
 *
 * No policy, logging or metrics here: the bridge reports how it ended through `onEnd`.
 */
import type { Socket } from 'node:net';
import type { RawData, WebSocket } from 'ws';
import { CLOSE, describeSocketError, ERRORS, truncateReason } from '../errors.js';
import { recycleReadBuffer, SHARED_READ_BUFFER, takeReadBuffer } from './read-buffers.js';

/**
 * Reads of at least this size are copied into a recycled 256 KiB buffer, smaller ones into
 * one of their own size: a session holds at most 4x its buffered bytes in read buffers.
 */
const POOLED_FROM = 64 * 1024;

export interface BridgeOptions {
  /** How close reasons name the VNC server to the user, e.g. "Desktop 'lab1'". */
  label: string;
  highWaterMarkBytes: number;
  idleTimeoutMs: number;
  maxDurationMs: number;
}

export interface BridgeEnd {
  /** The close code of the session: the one the gateway sent, or the one the browser sent. */
  code: number;
  reason: string;
  /** Who ended the session. */
  by: 'browser' | 'upstream' | 'gateway';
  bytesToUpstream: number;
  bytesToBrowser: number;
}

export class Bridge {
  bytesToUpstream = 0;
  bytesToBrowser = 0;
  /** Pass to `net.connect()`: how the VNC side is read (see read-buffers.ts). */
  readonly upstreamRead: { buffer: Buffer; callback: (bytes: number, buffer: Buffer) => boolean };
  readonly #ws: WebSocket;
  #tcp: Socket | undefined;
  readonly #options: BridgeOptions;
  readonly #onEnd: (end: BridgeEnd) => void;
  #idleTimer: NodeJS.Timeout | undefined;
  #durationTimer: NodeJS.Timeout | undefined;
  #bytesAtLastIdleCheck = 0;
  #upstreamPaused = false;
  /** Pooled buffers being sent, oldest first: ws completes sends in order. */
  readonly #sending: Buffer[] = [];
  #closing: { code: number; reason: string; by: BridgeEnd['by'] } | undefined;
  #ended = false;

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
    this.upstreamRead = { buffer: SHARED_READ_BUFFER, callback: this.tcpOnRead };
  }

  /** Start relaying once the VNC server is connected (with `upstreamRead` as its reader). */
  start(tcp: Socket): void {
    this.#tcp = tcp;
    const ws = this.#ws;
    ws.on('message', this.wsOnMessage);
    ws.on('close', this.wsOnClose);
    tcp.on('drain', this.tcpOnDrain);
    tcp.on('end', this.tcpOnEnd);
    tcp.on('error', this.tcpOnError);
    tcp.on('close', this.tcpOnClose);
    // One timer per session, checked against the byte counters instead of being reset on
    // every chunk: the hot path only increments counters.
    this.#idleTimer = setTimeout(this.idleCheck.bind(this), this.#options.idleTimeoutMs);
    this.#durationTimer = setTimeout(
      () => this.close(ERRORS.DG_ERR_SESSION_EXPIRED.closeCode, `Session reached its maximum duration of ${formatDuration(this.#options.maxDurationMs)}`),
      this.#options.maxDurationMs,
    );
    ws.resume();
  }

  /** Bytes this session holds in the gateway right now, both directions. */
  get bufferedBytes(): number {
    return this.#ws.bufferedAmount + (this.#tcp?.writableLength ?? 0);
  }

  /** Close the session from the gateway's side. Idempotent; the first reason wins. */
  close(code: number, reason: string): void {
    if (this.#closing) return;
    this.#closing = { code, reason: truncateReason(reason), by: 'gateway' };
    this.#shutdown();
  }

  private wsOnMessage(data: RawData, isBinary: boolean): void {
    if (this.#closing) return;
    if (!isBinary) {
      this.close(CLOSE.UNSUPPORTED_DATA, 'Text messages are not supported: the RFB stream is binary');
      return;
    }
    const chunk = data as Buffer; // binaryType is 'nodebuffer'
    this.bytesToUpstream += chunk.length;
    if (!this.#tcp?.write(chunk)) this.#ws.pause();
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
    this.#upstreamClosed('closed the connection');
  }

  private tcpOnError(err: Error): void {
    this.#upstreamClosed(`broke the connection (${describeSocketError(err)})`);
  }

  private tcpOnClose(): void {
    this.#upstreamClosed('closed the connection');
  }

  #upstreamClosed(what: string): void {
    if (this.#closing) return;
    this.#closing = { code: ERRORS.DG_ERR_UPSTREAM.closeCode, reason: truncateReason(`${this.#options.label} ${what}`), by: 'upstream' };
    this.#shutdown();
  }

  private wsOnClose(code: number, reason: Buffer): void {
    this.#closing ??= { code, reason: reason.toString(), by: 'browser' };
    this.#shutdown();
    this.#finish();
  }

  private idleCheck(): void {
    const total = this.bytesToUpstream + this.bytesToBrowser;
    if (total !== this.#bytesAtLastIdleCheck) {
      this.#bytesAtLastIdleCheck = total;
      this.#idleTimer?.refresh();
      return;
    }
    this.close(ERRORS.DG_ERR_IDLE_TIMEOUT.closeCode, `Session closed after ${formatDuration(this.#options.idleTimeoutMs)} without activity`);
  }

  /** Close both sides; the session ends when the WebSocket reports 'close'. */
  #shutdown(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#durationTimer);
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
    ws.off('message', this.wsOnMessage);
    ws.off('close', this.wsOnClose);
    this.#tcp?.off('drain', this.tcpOnDrain);
    this.#tcp?.off('end', this.tcpOnEnd);
    this.#tcp?.off('close', this.tcpOnClose);
    // The TCP error listener stays: a late error on a destroyed socket must not crash the
    // process. (The WebSocket's is the session's, added before connecting.)
    const closing = this.#closing ?? { code: CLOSE.NORMAL, reason: '', by: 'gateway' as const };
    this.#onEnd({ ...closing, bytesToUpstream: this.bytesToUpstream, bytesToBrowser: this.bytesToBrowser });
  }
}


/** "90 s", "1 minute", "12 hours": for close reasons people read. */
export function formatDuration(ms: number): string {
  const plural = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return plural(ms / 3_600_000, 'hour');
  if (ms >= 60_000 && ms % 60_000 === 0) return plural(ms / 60_000, 'minute');
  return `${Math.round(ms / 100) / 10} s`;
}
