/**
 * The sessions of this gateway: each accepted WebSocket is resolved to a target, connected
 * and bridged, or closed with the documented code and reason. Logs one line when a
 * session starts and one when it ends; refusals are logged with the reason.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Identity } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import type { DesktopDirectory } from '../desktops/directory.js';
import { CLOSE, GatewayError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import { Bridge, type BridgeEnd } from '../relay/bridge.js';
import { describe, type Connect, type ConnectTarget } from '../relay/connector.js';

/** What the upgrade decided: who opens the session, from where, and whether they may only watch. */
export interface Grant {
  /** The client's address (behind a trusted proxy: the forwarded one). */
  readonly address: string;
  readonly identity: Identity;
  readonly viewOnly: boolean;
}

export interface Session {
  readonly id: string;
  readonly remoteAddress: string;
  readonly identity: Identity;
  readonly viewOnly: boolean;
  readonly startedAt: number;
  /** Set once the request is resolved. */
  target: ConnectTarget | undefined;
  /** Set once the VNC server is connected. */
  bridge: Bridge | undefined;
}

interface LiveSession extends Session {
  readonly ws: WebSocket;
  readonly connecting: AbortController;
}

export interface SessionManagerOptions {
  directory: DesktopDirectory;
  connect: Connect;
  session: Config['session'];
  limits: Config['limits'];
  logger: Logger;
}

const SHUTDOWN_REASON = 'The gateway is shutting down';

export class SessionManager {
  readonly #sessions = new Set<LiveSession>();
  readonly #perAddress = new Counter();
  readonly #perUser = new Counter();
  readonly #options: SessionManagerOptions;
  #shuttingDown = false;
  readonly #emptyWaiters = new Set<() => void>();

  constructor(options: SessionManagerOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#sessions.size;
  }

  [Symbol.iterator](): IterableIterator<Session> {
    return this.#sessions.values();
  }

  /** Why one more session for this grant would exceed a limit, or undefined if it may open. */
  refuseOverLimit({ address, identity }: Grant): string | undefined {
    const { maxSessions, maxSessionsPerAddress, maxSessionsPerUser } = this.#options.limits;
    const { user } = identity;
    if (this.#sessions.size >= maxSessions) return `The gateway is at its limit of ${maxSessions} sessions`;
    if (this.#perAddress.get(address) >= maxSessionsPerAddress) return `Too many sessions from ${address} (limit ${maxSessionsPerAddress})`;
    // In mode none everyone is the same anonymous user: only the address limit can tell them apart.
    if (identity.via !== 'none' && this.#perUser.get(user) >= maxSessionsPerUser) return `Too many sessions for ${user} (limit ${maxSessionsPerUser})`;
    return undefined;
  }

  /** Take over an accepted WebSocket: resolve, connect, bridge — or close with a reason. */
  async open(ws: WebSocket, request: IncomingMessage, query: URLSearchParams, grant: Grant): Promise<void> {
    const session: LiveSession = {
      id: randomUUID(),
      remoteAddress: grant.address,
      identity: grant.identity,
      viewOnly: grant.viewOnly,
      startedAt: Date.now(),
      target: undefined,
      bridge: undefined,
      ws,
      connecting: new AbortController(),
    };
    this.#sessions.add(session);
    this.#perAddress.add(session.remoteAddress);
    this.#perUser.add(session.identity.user);
    // Hold the browser's bytes until the VNC side exists; RFB clients wait for the server first.
    ws.pause();
    ws.on('error', noop); // for the whole session: the 'close' that follows every error ends it
    // Aborting builds an error object: only worth it while the connect is still pending.
    ws.once('close', () => {
      if (!session.bridge) session.connecting.abort();
    });
    try {
      const target = await this.#options.directory.resolve(query, request.socket.localPort ?? 0);
      session.target = target;
      const { highWaterMarkBytes, idleTimeoutMs, maxDurationMs } = this.#options.session;
      const options = { label: describe(target), highWaterMarkBytes, idleTimeoutMs, maxDurationMs };
      const bridge = new Bridge(ws, options, (end) => this.#ended(session, end));
      const tcp = await this.#options.connect(target, {
        signal: session.connecting.signal,
        onread: bridge.upstreamRead,
        // Node's default of 16 KiB is less than one 64 KiB noVNC message: the WebSocket would
        // be paused and resumed after every message.
        writableHighWaterMark: highWaterMarkBytes,
      });
      if (ws.readyState === ws.OPEN) this.#start(session, bridge, tcp);
      else {
        tcp.destroy();
        this.#leftEarly(session);
      }
    } catch (err) {
      if (ws.readyState === ws.OPEN || this.#shuttingDown) this.#refused(session, err);
      else this.#leftEarly(session);
    }
  }

  /** The browser went away before the session was bridged. */
  #leftEarly(session: LiveSession): void {
    this.#ended(session, { code: CLOSE.GOING_AWAY, reason: 'browser left while connecting', by: 'browser', bytesToUpstream: 0, bytesToBrowser: 0 });
  }

  #start(session: LiveSession, bridge: Bridge, tcp: Socket): void {
    const target = session.target as ConnectTarget;
    session.bridge = bridge;
    bridge.start(tcp);
    this.#options.logger.info(
      { session: session.id, desktop: target.name, remote: session.remoteAddress, user: session.identity.user, viewOnly: session.viewOnly, upstream: `${target.host}:${target.port}` },
      'session start',
    );
  }

  #refused(session: LiveSession, err: unknown): void {
    const error =
      this.#shuttingDown ? new GatewayError('DG_ERR_NOT_READY', SHUTDOWN_REASON)
      : err instanceof GatewayError ? err
      : new GatewayError('DG_ERR_UPSTREAM', 'Unexpected gateway error', { cause: err });
    const code = this.#shuttingDown ? CLOSE.GOING_AWAY : error.closeCode;
    this.#options.logger.warn(
      { session: session.id, desktop: session.target?.name, remote: session.remoteAddress, user: session.identity.user, code, err: error.code, reason: error.message },
      'session refused',
    );
    if (!(err instanceof GatewayError)) this.#options.logger.error({ err }, 'unexpected error while opening a session');
    const { ws } = session;
    ws.resume(); // paused since open(): it must read the browser's half of the closing handshake
    if (ws.readyState === ws.OPEN) ws.close(code, error.reason);
    this.#forget(session);
  }

  #ended(session: LiveSession, end: BridgeEnd): void {
    this.#options.logger.info(
      {
        session: session.id,
        desktop: session.target?.name,
        remote: session.remoteAddress,
        user: session.identity.user,
        durationMs: Date.now() - session.startedAt,
        bytesToUpstream: end.bytesToUpstream,
        bytesToBrowser: end.bytesToBrowser,
        code: end.code,
        reason: end.reason,
        by: end.by,
      },
      'session end',
    );
    this.#forget(session);
  }

  #forget(session: LiveSession): void {
    if (!this.#sessions.delete(session)) return;
    this.#perAddress.remove(session.remoteAddress);
    this.#perUser.remove(session.identity.user);
    if (this.#sessions.size === 0) for (const done of this.#emptyWaiters) done();
  }

  /** End the sessions that match with the error's close code and reason (a logout, a removed user); returns how many. */
  endWhere(match: (session: Session) => boolean, error: GatewayError): number {
    let ended = 0;
    for (const session of this.#sessions) {
      if (!match(session)) continue;
      ended += 1;
      if (session.bridge) session.bridge.close(error.closeCode, error.reason);
      else session.connecting.abort(error);
    }
    return ended;
  }

  /** Close every session with 1001; resolves when all have ended or after `timeoutMs`. */
  async closeAll(timeoutMs: number): Promise<void> {
    this.#shuttingDown = true;
    for (const session of this.#sessions) {
      if (session.bridge) session.bridge.close(CLOSE.GOING_AWAY, SHUTDOWN_REASON);
      else session.connecting.abort();
    }
    await this.#whenEmpty(timeoutMs);
  }

  /** Cut every session now, without closing handshakes; resolves when all have ended. */
  async destroyAll(): Promise<void> {
    this.#shuttingDown = true;
    for (const session of this.#sessions) {
      session.connecting.abort();
      session.ws.terminate();
    }
    await this.#whenEmpty();
  }

  /** Resolves once no session is left, or after `timeoutMs` when given. */
  #whenEmpty(timeoutMs?: number): Promise<void> {
    if (this.#sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#emptyWaiters.delete(done);
        resolve();
      };
      const timer = timeoutMs === undefined ? undefined : setTimeout(done, timeoutMs);
      this.#emptyWaiters.add(done);
    });
  }
}

function noop(): void {}

/** Sessions per key (address, user); keys with none are dropped, so the map stays as small as the live set. */
class Counter {
  readonly #counts = new Map<string, number>();

  get(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.#counts.set(key, this.get(key) + 1);
  }

  remove(key: string): void {
    const left = this.get(key) - 1;
    if (left <= 0) this.#counts.delete(key);
    else this.#counts.set(key, left);
  }
}
