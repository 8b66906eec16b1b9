/**
 * The live sessions of this gateway: each admitted WebSocket is connected to its target
 * and bridged, or closed with the catalogue's code and reason. Starts, ends and refusals
 * are published as lifecycle events (observe/events.ts); the limits are counted here.
 */
import type { WebSocket } from 'ws';
import type { Identity } from '../auth/identity.js';
import type { Ticket } from '../auth/tickets.js';
import type { Config } from '../config/schema.js';
import type { Coordinator, LocalSessions, Seat } from '../coordination/coordinator.js';
import { CLOSE, describeSocketError, errors, formatDuration, GatewayError } from '../errors.js';
import { formatAddress } from '../net/address.js';
import { events } from '../observe/events.js';
import { Bridge, type BridgeEnd, type BridgeEndings, type Closing } from '../relay/bridge.js';
import { describe, type Connect, type ConnectTarget } from '../relay/connector.js';
import { chainFilters } from '../relay/stages.js';
import { Upstream } from '../relay/upstream.js';
import type { HandshakeResult } from '../rfb/handshake.js';
import { ClientMessageFilter } from '../rfb/view-only-filter.js';
import { FORMAT_VERSION } from '../recording/format.js';
import { Recorder } from '../recording/recorder.js';
import { HandshakePhase } from './handshake-phase.js';
import type { SessionSnapshot } from './snapshot.js';

/** What the gateway decided: who opens the session, from where, to what, and whether they may only watch. */
export interface Grant {
  /** The client's address (behind a trusted proxy: the forwarded one). */
  readonly address: string;
  readonly identity: Identity;
  readonly viewOnly: boolean;
  readonly target: ConnectTarget;
  /** The ticket that let them in: used up once the session is sure to open. */
  readonly ticket?: Ticket | undefined;
}

export interface Session {
  readonly id: string;
  readonly remoteAddress: string;
  readonly identity: Identity;
  readonly viewOnly: boolean;
  /** Whether its role can change while it runs: its input then passes the view-only filter from the start. */
  readonly switchable: boolean;
  readonly startedAt: number;
  readonly target: ConnectTarget;
  /** Set once the handshake is done and the relay runs. */
  bridge: Bridge | undefined;
}

interface LiveSession extends Session {
  viewOnly: boolean;
  /** Its place on the desktop (sharing.ts): given up when the session ends. */
  readonly seat: Seat;
  readonly ws: WebSocket;
  readonly connecting: AbortController;
  /** Set once the handshake is done. */
  handshake: HandshakeResult | undefined;
  /** How long the connect and then the RFB handshake took (ms), for the start event. */
  connectMs: number;
  handshakeMs: number;
  /** Present when the session is switchable: it can then switch between control and view-only. */
  filter: ClientMessageFilter | undefined;
  /** Present when its desktop records its sessions. */
  recorder: Recorder | undefined;
}

export interface SessionManagerOptions {
  /** Whom events name as their source. */
  gateway: object;
  connect: Connect;
  coordinator: Coordinator;
  session: Config['session'];
  limits: Config['limits'];
  recordings: Config['recordings'];
}

/** Sessions closed because the gateway stops get 1001, with the catalogue's sentence. */
const SHUTDOWN: Closing = { closeCode: CLOSE.GOING_AWAY, reason: errors.shuttingDown().reason };

export class SessionManager implements LocalSessions {
  readonly #sessions = new Map<string, LiveSession>();
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

  traffic(id: string): { bytesToUpstream: number; bytesToBrowser: number } | undefined {
    const bridge = this.#sessions.get(id)?.bridge;
    return bridge && { bytesToUpstream: bridge.bytesToUpstream, bytesToBrowser: bridge.bytesToBrowser };
  }

  /** Copies of the live sessions, for the public API and admin views. */
  snapshot(): SessionSnapshot[] {
    return [...this.#sessions.values()].map((s) => ({
      id: s.id,
      desktop: s.target.name,
      user: s.identity.user,
      remoteAddress: s.remoteAddress,
      viewOnly: s.viewOnly,
      sharing: s.seat.record.sharing,
      startedAt: new Date(s.startedAt),
      connected: s.bridge !== undefined,
      security: s.handshake?.security,
      droppedMessages: s.filter?.dropped ?? 0,
      bytesToUpstream: s.bridge?.bytesToUpstream ?? 0,
      bytesToBrowser: s.bridge?.bytesToBrowser ?? 0,
      bufferedBytes: s.bridge?.bufferedBytes ?? 0,
    }));
  }

  /** Why one more session for this grant would exceed a limit, or undefined if it may open. */
  refuseOverLimit({ address, identity }: Grant): GatewayError | undefined {
    const { maxSessions, maxSessionsPerAddress, maxSessionsPerUser } = this.#options.limits;
    const { user } = identity;
    if (this.#sessions.size >= maxSessions) return errors.gatewayFull(maxSessions);
    if (this.#perAddress.get(address) >= maxSessionsPerAddress) return errors.tooManyFromAddress(address, maxSessionsPerAddress);
    // In mode none everyone is the same anonymous user: only the address limit can tell them apart.
    if (identity.via !== 'none' && this.#perUser.get(user) >= maxSessionsPerUser) return errors.tooManyForUser(user, maxSessionsPerUser);
    return undefined;
  }

  /** Take over an admitted WebSocket, seated on its desktop: connect, bridge — or close with a reason. */
  open(ws: WebSocket, grant: Grant, seat: Seat): void {
    const session: LiveSession = {
      id: seat.record.id,
      seat,
      remoteAddress: grant.address,
      identity: grant.identity,
      viewOnly: seat.role === 'view',
      switchable: seat.record.switchable,
      startedAt: Date.now(),
      target: grant.target,
      bridge: undefined,
      ws,
      connecting: new AbortController(),
      handshake: undefined,
      filter: undefined,
      recorder: undefined,
      connectMs: 0,
      handshakeMs: 0,
    };
    this.#sessions.set(session.id, session);
    this.#perAddress.add(session.remoteAddress);
    this.#perUser.add(session.identity.user);
    // Hold the browser's bytes until the VNC side exists; RFB clients wait for the server first.
    ws.pause();
    ws.on('error', noop); // for the whole session: the 'close' that follows every error ends it
    // Aborting builds an error object: only worth it while the connect is still pending.
    ws.once('close', () => {
      if (!session.bridge) session.connecting.abort();
    });
    void this.#connect(session);
  }

  async #connect(session: LiveSession): Promise<void> {
    const { ws, target } = session;
    const upstream = new Upstream();
    const began = performance.now();
    try {
      const socket = await this.#options.connect(target, {
        signal: session.connecting.signal,
        onread: upstream.onread,
        // Node's default of 16 KiB is less than one 64 KiB noVNC message: the WebSocket would
        // be paused and resumed after every message.
        writableHighWaterMark: this.#options.session.highWaterMarkBytes,
      });
      upstream.connected(socket);
      session.connectMs = performance.now() - began;
      const phase = new HandshakePhase(session, upstream, this.#options.session);
      session.handshake = await phase.run();
      session.handshakeMs = performance.now() - began - session.connectMs;
      // The handshake refuses this already; a session that may be view-only must never run unfiltered.
      if ((session.viewOnly || session.switchable) && !session.handshake.followed) throw errors.viewOnlyNotFollowed(describe(target));
      if (ws.readyState === ws.OPEN) this.#start(session, upstream, phase);
      else {
        phase.finish();
        upstream.socket.destroy();
        this.#leftEarly(session);
      }
    } catch (err) {
      upstream.destroy();
      if (ws.readyState === ws.OPEN || this.#shuttingDown) this.#refused(session, err);
      else this.#leftEarly(session);
    }
  }

  /** How this session's bridge words the ends it detects. */
  #endings(target: ConnectTarget): BridgeEndings {
    const { idleTimeoutMs, maxDurationMs, keepaliveMs } = this.#options.session;
    const label = describe(target);
    return {
      idle: () => errors.idle(formatDuration(idleTimeoutMs)),
      expired: () => errors.expired(formatDuration(maxDurationMs)),
      noPong: () => errors.noPong(formatDuration(keepaliveMs)),
      upstreamClosed: (err) => (err ? errors.upstreamBroke(label, describeSocketError(err)) : errors.upstreamClosed(label)),
    };
  }

  /** The browser went away before the session was bridged. */
  #leftEarly(session: LiveSession): void {
    this.#ended(session, { code: CLOSE.GOING_AWAY, reason: 'browser left while connecting', by: 'browser', bytesToUpstream: 0, bytesToBrowser: 0 });
  }

  /** The relay, from the end of the handshake on; a filter only where the session needs one. */
  #start(session: LiveSession, upstream: Upstream, phase: HandshakePhase): void {
    const { target, ws } = session;
    const { highWaterMarkBytes, idleTimeoutMs, maxDurationMs, keepaliveMs } = this.#options.session;
    const filtered = (session.viewOnly || session.switchable) && session.handshake?.followed;
    const filter = filtered ? new ClientMessageFilter({ viewOnly: session.viewOnly }) : undefined;
    const recorder = this.#recorder(session);
    // The recorder sees what the browser sent, before a view-only filter drops any of it.
    const toUpstream = recorder ? chainFilters(recorder.toUpstream, filter) : filter;
    const stages = toUpstream && { toUpstream, toBrowser: recorder?.toBrowser };
    const options = { endings: this.#endings(target), highWaterMarkBytes, idleTimeoutMs, maxDurationMs, keepaliveMs, stages };
    const bridge = new Bridge(ws, options, (end) => this.#ended(session, end));
    session.filter = filter;
    session.recorder = recorder;
    session.bridge = bridge;
    recorder?.attach(bridge);
    if (target.record && !recorder && target.record.onFailure === 'end') bridge.close(errors.recordingFailed());
    // In one go, so no byte falls between the handshake and the relay.
    const early = phase.finish();
    upstream.routeTo(bridge.upstreamRead.callback);
    upstream.socket.resume(); // the handshake may have paused it; the relay pauses it itself from now on
    bridge.start(upstream.socket, early);
    const security = session.handshake?.security ?? 'unknown';
    const followed = session.handshake?.followed ?? false;
    events.sessionStarted.publish(() => ({
      gateway: this.#options.gateway,
      session: session.id,
      desktop: target.name,
      remote: session.remoteAddress,
      user: session.identity.user,
      viewOnly: session.viewOnly,
      upstream: formatAddress(target),
      security,
      followed,
      connectMs: Math.round(session.connectMs * 100) / 100,
      handshakeMs: Math.round(session.handshakeMs * 100) / 100,
      recording: recorder?.id,
    }));
  }

  /** The session's recorder, when its desktop records; none when the handshake gave no ServerInit to replay (told as a stopped recording). */
  #recorder(session: LiveSession): Recorder | undefined {
    const { target, handshake } = session;
    const record = target.record;
    if (!record) return undefined;
    const { gateway, recordings, coordinator } = this.#options;
    const stopped = (problem: string, err?: unknown): void =>
      events.recordingStopped.publish(() => ({
        gateway,
        session: session.id,
        desktop: target.name,
        remote: session.remoteAddress,
        user: session.identity.user,
        recording: session.id,
        problem,
        then: record.onFailure === 'end' ? 'session ended' : 'session goes on unrecorded',
        err,
      }));
    if (!handshake?.serverInit || !handshake.desktop) {
      stopped('the viewer chose a security type the gateway cannot follow, so there is nothing to replay');
      return undefined;
    }
    const { width, height, name } = handshake.desktop;
    return new Recorder({
      dir: record.dir ?? (recordings.dir as string), // the schema requires one of the two
      header: {
        format: FORMAT_VERSION,
        id: session.id,
        desktop: target.name,
        user: session.identity.user,
        node: coordinator.store.shared ? coordinator.store.node : undefined,
        start: new Date().toISOString(),
        serverInit: handshake.serverInit.toString('base64'),
        width,
        height,
        name,
        input: record.input,
      },
      onFailure: record.onFailure,
      maxQueuedBytes: recordings.maxQueuedBytes,
      maxBytes: record.maxBytesPerSession,
      onProblem: stopped,
    });
  }

  /**
   * Switch a running session between control and view-only, at the next message boundary.
   * Only switchable sessions (opened view-only, or on a controlled desktop) have the filter
   * this needs: the others relay unparsed, so nothing knows where their next message begins.
   */
  setViewOnly(id: string, viewOnly: boolean): boolean {
    const session = this.#sessions.get(id);
    if (!session?.switchable) return false;
    if (session.viewOnly === viewOnly) return true;
    session.viewOnly = viewOnly;
    if (session.filter) session.filter.viewOnly = viewOnly; // else the relay starts with it, at the current mode
    const { gateway } = this.#options;
    events.sessionModeChanged.publish(() => ({
      gateway,
      session: session.id,
      desktop: session.target.name,
      remote: session.remoteAddress,
      user: session.identity.user,
      viewOnly,
    }));
    return true;
  }

  #refused(session: LiveSession, err: unknown): void {
    const { gateway } = this.#options;
    const error = this.#shuttingDown ? errors.shuttingDown() : err instanceof GatewayError ? err : errors.internal().causedBy(err);
    const code = this.#shuttingDown ? CLOSE.GOING_AWAY : error.closeCode;
    events.sessionRefused.publish(() => ({
      gateway,
      session: session.id,
      desktop: session.target.name,
      remote: session.remoteAddress,
      user: session.identity.user,
      code,
      error: error.code,
      reason: error.message,
    }));
    if (!(err instanceof GatewayError)) events.failed.publish(() => ({ gateway, what: 'while opening a session', err }));
    const { ws } = session;
    ws.resume(); // paused since open(): it must read the browser's half of the closing handshake
    if (ws.readyState === ws.OPEN) ws.close(code, error.reason);
    this.#forget(session);
  }

  #ended(session: LiveSession, end: BridgeEnd): void {
    const { gateway } = this.#options;
    if (end.stageError !== undefined) events.failed.publish(() => ({ gateway, what: 'in a relay stage', err: end.stageError }));
    events.sessionEnded.publish(() => ({
      gateway,
      session: session.id,
      desktop: session.target.name,
      remote: session.remoteAddress,
      user: session.identity.user,
      durationMs: Date.now() - session.startedAt,
      bytesToUpstream: end.bytesToUpstream,
      bytesToBrowser: end.bytesToBrowser,
      code: end.code,
      reason: end.reason,
      by: end.by,
      droppedMessages: session.filter?.dropped ?? 0,
      recording: session.recorder?.id,
    }));
    void session.recorder?.finish();
    this.#forget(session);
  }

  #forget(session: LiveSession): void {
    if (!this.#sessions.delete(session.id)) return;
    void this.#options.coordinator.leave(session.seat);
    this.#perAddress.remove(session.remoteAddress);
    this.#perUser.remove(session.identity.user);
    if (this.#sessions.size === 0) for (const done of this.#emptyWaiters) done();
  }

  /** End the sessions that match with the error's close code and reason (a logout, a removed user); returns how many. */
  endWhere(match: (session: Session) => boolean, error: GatewayError): number {
    let ended = 0;
    for (const session of this.#sessions.values()) {
      if (!match(session)) continue;
      ended += 1;
      this.#end(session, error);
    }
    return ended;
  }

  end(id: string, error: GatewayError): boolean {
    const session = this.#sessions.get(id);
    if (session) this.#end(session, error);
    return session !== undefined;
  }

  #end(session: LiveSession, error: GatewayError): void {
    if (session.bridge) session.bridge.close(error);
    else session.connecting.abort(error);
  }

  /** Close every session with 1001; resolves when all have ended or after `timeoutMs`. */
  async closeAll(timeoutMs: number): Promise<void> {
    this.#shuttingDown = true;
    for (const session of this.#sessions.values()) {
      if (session.bridge) session.bridge.close(SHUTDOWN);
      else session.connecting.abort();
    }
    await this.#whenEmpty(timeoutMs);
  }

  /** Cut every session now, without closing handshakes; resolves when all have ended. */
  async destroyAll(): Promise<void> {
    this.#shuttingDown = true;
    for (const session of this.#sessions.values()) {
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
