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
import { CLOSE, describeSocketError, truncateReason } from '../errors.js';

export interface BridgeOptions {
  /** How close reasons name the VNC server to the user, e.g. "Desktop 'lab1'". */
  label: string;
  highWaterMarkBytes: number;
  idleTimeoutMs: number;
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
  readonly #ws: WebSocket;
  readonly #tcp: Socket;
  readonly #options: BridgeOptions;
  readonly #onEnd: (end: BridgeEnd) => void;
  readonly #idleTimer: NodeJS.Timeout;
  #bytesAtLastIdleCheck = 0;
  #upstreamPaused = false;
  #closing: { code: number; reason: string; by: BridgeEnd['by'] } | undefined;
  #ended = false;

  constructor(ws: WebSocket, tcp: Socket, options: BridgeOptions, onEnd: (end: BridgeEnd) => void) {
    this.#ws = ws;
    this.#tcp = tcp;
    this.#options = options;
    this.#onEnd = onEnd;

    this.wsOnMessage = this.wsOnMessage.bind(this);
    this.wsOnClose = this.wsOnClose.bind(this);
    this.wsOnSent = this.wsOnSent.bind(this);
    this.tcpOnData = this.tcpOnData.bind(this);
    this.tcpOnDrain = this.tcpOnDrain.bind(this);
    this.tcpOnEnd = this.tcpOnEnd.bind(this);
    this.tcpOnError = this.tcpOnError.bind(this);
    this.tcpOnClose = this.tcpOnClose.bind(this);

    ws.on('message', this.wsOnMessage);
    ws.on('close', this.wsOnClose);
    ws.on('error', noop); // the 'close' that follows every error ends the session
    tcp.on('data', this.tcpOnData);
    tcp.on('drain', this.tcpOnDrain);
    tcp.on('end', this.tcpOnEnd);
    tcp.on('error', this.tcpOnError);
    tcp.on('close', this.tcpOnClose);

    // One timer per session, checked against the byte counters instead of being reset on
    // every chunk: the hot path only increments counters.
    this.#idleTimer = setTimeout(this.idleCheck.bind(this), options.idleTimeoutMs);
  }

  /** Bytes this session holds in the gateway right now, both directions. */
  get bufferedBytes(): number {
    return this.#ws.bufferedAmount + this.#tcp.writableLength;
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
    if (!this.#tcp.write(chunk)) this.#ws.pause();
  }

  private tcpOnDrain(): void {
    this.#ws.resume();
  }

  private tcpOnData(chunk: Buffer): void {
    this.bytesToBrowser += chunk.length;
    this.#ws.send(chunk, this.wsOnSent);
    if (this.#ws.bufferedAmount > this.#options.highWaterMarkBytes) {
      this.#upstreamPaused = true;
      this.#tcp.pause();
    }
  }

  private wsOnSent(): void {
    if (this.#upstreamPaused && this.#ws.bufferedAmount <= this.#options.highWaterMarkBytes / 2) {
      this.#upstreamPaused = false;
      this.#tcp.resume();
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
    this.#closing = { code: 4500, reason: truncateReason(`${this.#options.label} ${what}`), by: 'upstream' };
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
      this.#idleTimer.refresh();
      return;
    }
    const minutes = Math.round(this.#options.idleTimeoutMs / 60_000);
    const span = minutes >= 1 ? `${minutes} minute${minutes === 1 ? '' : 's'}` : `${this.#options.idleTimeoutMs / 1000} s`;
    this.close(4408, `Session closed after ${span} without activity`);
  }

  /** Close both sides; the session ends when the WebSocket reports 'close'. */
  #shutdown(): void {
    clearTimeout(this.#idleTimer);
    this.#tcp.destroy();
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
    const tcp = this.#tcp;
    ws.off('message', this.wsOnMessage);
    ws.off('close', this.wsOnClose);
    tcp.off('data', this.tcpOnData);
    tcp.off('drain', this.tcpOnDrain);
    tcp.off('end', this.tcpOnEnd);
    tcp.off('close', this.tcpOnClose);
    // The error listeners stay: a late error on a destroyed socket must not crash the process.
    const closing = this.#closing ?? { code: CLOSE.NORMAL, reason: '', by: 'gateway' as const };
    this.#onEnd({ ...closing, bytesToUpstream: this.bytesToUpstream, bytesToBrowser: this.bytesToBrowser });
  }
}

function noop(): void {}
