/**
 * The handshake phase of one session: wires the browser's WebSocket and the VNC server's
 * connection to the RFB handshake (rfb/handshake.ts), words what each side does wrong, and
 * hands the relay whatever either side sent after the handshake's last byte.
 */
import type { RawData, WebSocket } from 'ws';
import type { Config } from '../config/schema.js';
import { errors, formatDuration, GatewayError } from '../errors.js';
import { describe, type ConnectTarget } from '../relay/connector.js';
import type { Upstream } from '../relay/upstream.js';
import { handshake, PLAIN_VNC, type HandshakeResult } from '../rfb/handshake.js';
import { HandshakeReader } from '../rfb/handshake-reader.js';

/** What either side may send beyond what the handshake reads before its transport is paused. */
const LIMIT_BYTES = 64 * 1024;

interface PhaseSession {
  readonly ws: WebSocket;
  readonly target: ConnectTarget;
  readonly viewOnly: boolean;
  readonly switchable: boolean;
  readonly connecting: AbortController;
}

export class HandshakePhase {
  readonly #session: PhaseSession;
  readonly #upstream: Upstream;
  readonly #config: Config['session'];
  readonly #fromBrowser: HandshakeReader;
  readonly #fromUpstream: HandshakeReader;

  constructor(session: PhaseSession, upstream: Upstream, config: Config['session']) {
    this.#session = session;
    this.#upstream = upstream;
    this.#config = config;
    const label = describe(session.target);
    this.#fromBrowser = new HandshakeReader(
      {
        timedOut: (waitingFor, ms) => errors.viewerTimeout(waitingFor, formatDuration(ms)),
        ended: () => errors.viewerBrokeProtocol('it closed the connection'),
      },
      LIMIT_BYTES,
      { pause: () => session.ws.pause(), resume: () => session.ws.resume() },
    );
    this.#fromUpstream = new HandshakeReader(
      {
        timedOut: (waitingFor, ms) => errors.handshakeTimeout(label, waitingFor, formatDuration(ms)),
        ended: (waitingFor) => errors.vncClosed(label, waitingFor),
      },
      LIMIT_BYTES,
      { pause: () => upstream.socket.pause(), resume: () => upstream.socket.resume() },
    );
    this.browserOnMessage = this.browserOnMessage.bind(this);
    this.onAbort = this.onAbort.bind(this);
  }

  /** Resolves when the relay may start; rejects with a GatewayError, everything detached. */
  async run(): Promise<HandshakeResult> {
    const { ws, target, connecting } = this.#session;
    const upstream = this.#upstream;
    ws.on('message', this.browserOnMessage);
    upstream.routeTo((bytes, buffer) => {
      this.#fromUpstream.push(Buffer.from(buffer.subarray(0, bytes))); // the read buffer is shared: copy
      return true;
    });
    upstream.onClose(() => this.#fromUpstream.end());
    connecting.signal.addEventListener('abort', this.onAbort, { once: true });
    ws.resume(); // paused since the upgrade: the viewer's first bytes are for the handshake
    const browser = { reader: this.#fromBrowser, write: (bytes: Buffer) => ws.send(bytes) };
    const server = {
      reader: this.#fromUpstream,
      write: (bytes: Buffer) => upstream.socket.write(bytes),
      startTls: upstream.startTls.bind(upstream),
    };
    const { handshakeTimeoutMs, idleTimeoutMs } = this.#config;
    const options = {
      label: describe(target),
      host: target.host,
      vnc: target.vnc ?? PLAIN_VNC,
      // A session that is or may become view-only needs the filter, which must know where messages begin.
      mustFollow: this.#session.viewOnly || this.#session.switchable,
      timeoutMs: handshakeTimeoutMs,
      personTimeoutMs: idleTimeoutMs,
    };
    try {
      return await handshake(browser, server, options);
    } catch (err) {
      this.#failBoth(err instanceof GatewayError ? err : errors.internal().causedBy(err)); // clears the other side's pending read and its timer
      this.finish();
      throw err;
    }
  }

  /** Detach from both sides; returns what each sent after the handshake, for the relay. */
  finish(): { fromBrowser: Buffer; fromUpstream: Buffer } {
    const { ws, connecting } = this.#session;
    ws.off('message', this.browserOnMessage);
    ws.pause(); // the relay resumes it once it listens
    this.#upstream.routeTo(() => false);
    this.#upstream.onClose(() => {});
    connecting.signal.removeEventListener('abort', this.onAbort);
    return { fromBrowser: this.#fromBrowser.rest(), fromUpstream: this.#fromUpstream.rest() };
  }

  private browserOnMessage(data: RawData, isBinary: boolean): void {
    if (isBinary)
      this.#fromBrowser.push(data as Buffer); // binaryType is 'nodebuffer'
    else this.#failBoth(errors.textMessage()); // at once, whichever side the handshake waits for
  }

  private onAbort(): void {
    const reason: unknown = this.#session.connecting.signal.reason;
    this.#failBoth(reason instanceof GatewayError ? reason : errors.shuttingDown());
  }

  /** The handshake cannot finish: fail what it reads, and cut the VNC side, which also ends a TLS handshake in progress. */
  #failBoth(error: GatewayError): void {
    this.#fromBrowser.fail(error);
    this.#fromUpstream.fail(error);
    this.#upstream.destroy();
  }
}
