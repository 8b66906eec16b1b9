/**
 * The connection to a VNC server, whoever is reading it: the RFB handshake first, then the
 * bridge. A plain socket (TCP or Unix) reads into the shared read buffer (see read-buffers.ts)
 * through `onread`, which Node fixes when the socket is created, so its reads go through a route
 * that can be pointed elsewhere. After a TLS upgrade (VeNCrypt, or TLS from the first byte) the
 * TLS socket reads with 'data' events, sent down the same route. TLS runs over a Unix socket as
 * over TCP; with no host name there, the certificate names `vnc.serverName` (the schema asks
 * for it) or is pinned.
 */
import type { Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { SHARED_READ_BUFFER } from './read-buffers.js';

/** Takes `bytes` bytes of `buffer`; returns false to stop reading for now (as net's `onread`). */
export type ReadCallback = (bytes: number, buffer: Buffer) => boolean;

export class Upstream {
  /** Pass to `net.connect()` as `onread`. */
  readonly onread: { buffer: Buffer; callback: ReadCallback };
  #socket: Socket | undefined;
  #route: ReadCallback = () => true;
  #onClose: () => void = noop;

  constructor() {
    this.onread = { buffer: SHARED_READ_BUFFER, callback: (bytes, buffer) => this.#route(bytes, buffer) };
  }

  get socket(): Socket {
    if (!this.#socket) throw new Error('Upstream: not connected yet');
    return this.#socket;
  }

  /** The socket `net.connect()` returned, created with `onread`. */
  connected(socket: Socket): void {
    this.#hold(socket);
  }

  /** Call `onClose` when the connection closes, until the next call (the bridge watches it itself). */
  onClose(onClose: () => void): void {
    this.#onClose = onClose;
  }

  /** Give up on the connection, if there is one. */
  destroy(): void {
    this.#socket?.destroy();
  }

  /** Send every read from now on to `callback`. */
  routeTo(callback: ReadCallback): void {
    this.#route = callback;
  }

  /**
   * Speak TLS on the connection from here on. Resolves once the TLS handshake is done and
   * `verify` accepted the server; rejects with what failed, leaving the socket destroyed.
   */
  async startTls(options: ConnectionOptions, verify: (socket: TLSSocket) => void = () => {}): Promise<void> {
    const plain = this.socket;
    const secure = tlsConnect({ ...options, socket: plain });
    secure.on('data', (chunk: Buffer) => {
      if (!this.#route(chunk.length, chunk)) secure.pause();
    });
    this.#hold(secure);
    try {
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve);
        secure.once('error', reject);
        plain.once('close', () => reject(new Error('the connection closed during the TLS handshake')));
      });
      verify(secure);
    } catch (err) {
      secure.destroy();
      throw err;
    }
  }

  #hold(socket: Socket): void {
    this.#socket = socket;
    // For the socket's whole life: a late error must not crash the process, and 'close' follows every error.
    socket.on('error', noop);
    socket.on('close', () => this.#onClose());
  }
}

function noop(): void {}
