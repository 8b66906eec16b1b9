/**
 * The WebSocket upgrade, as ws's own server does it: protocol checks, then one access
 * decision, then the 101. Everything the gateway can know before the 101 is decided
 * before it: the path, shutdown, Host and Origin, the request itself, who is asking and
 * what they may open (admission.ts), the session limits, and the ticket used up last. A
 * refused upgrade gets a plain HTTP answer, never a WebSocket, and never causes a
 * connection to a VNC server.
 */
import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Auth } from '../auth/auth.js';
import { hostGuard, refuseOrigin } from '../auth/origin.js';
import type { RequestOrigin } from '../auth/proxy.js';
import { withoutCredentials } from '../auth/tickets.js';
import type { Config } from '../config/schema.js';
import type { Coordinator, Seat } from '../coordination/coordinator.js';
import { StoreUnavailable } from '../coordination/store.js';
import type { DesktopDirectory } from '../desktops/directory.js';
import { errors, GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import { viewKeyDigest } from '../coordination/coordinator.js';
import { MAX_CHANNELS_PER_SESSION, PRESENCE_MAX_MESSAGE_BYTES, type PresenceHub } from '../sessions/presence.js';
import type { SessionManager } from '../sessions/session-manager.js';
import type { Grant } from '../sessions/session-manager.js';
import type { Admission } from './admission.js';
import { decodePath, underBase } from './routes.js';
import { parseUpgradeQuery, parseViewKey, type SessionRequest } from './session-request.js';

/** The viewer's presence channel (sessions/presence.ts). */
export const PRESENCE_PATH = '/presence';

/** Where the gateway's WebSockets are: its base path, and the sessions' path (`*`: any). */
export type WebSocketPaths = Pick<Config, 'basePath' | 'websocketPath'>;

/** Which of the gateway's WebSockets an upgrade asks for: a session's, or the presence channel; undefined for neither. */
function webSocketKind(req: IncomingMessage, paths: WebSocketPaths): 'session' | 'presence' | undefined {
  const path = decodePath(req.url ?? '');
  if (req.headers.upgrade?.toLowerCase() !== 'websocket' || path === undefined) return undefined;
  const below = underBase(path, paths.basePath);
  if (below === PRESENCE_PATH) return 'presence';
  if (below !== undefined && (paths.websocketPath === '*' || below === paths.websocketPath)) return 'session';
  return undefined;
}

/** Whether an upgrade asks for one of the gateway's WebSockets. */
export function isWebSocketUpgrade(req: IncomingMessage, paths: WebSocketPaths): boolean {
  return webSocketKind(req, paths) !== undefined;
}

/** How long a refused upgrade's answer may take to leave before its connection is cut. */
const REFUSAL_FLUSH_MS = 2_000;

export interface UpgradeContext {
  /** Whom events name as their source. */
  gateway: object;
  config: Config;
  auth: Auth;
  admission: Admission;
  directory: DesktopDirectory;
  coordinator: Coordinator;
  sessions: SessionManager;
  presence: PresenceHub;
  /** Read the desktop sources again that may hold a name not found (token files, written a moment ago). */
  lookAgain(): Promise<void>;
  /** Whether the gateway is shutting down, or takes no new sessions. */
  closing(): boolean;
}

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export function createUpgradeHandler(ctx: UpgradeContext): UpgradeHandler {
  const { auth, sessions } = ctx;
  const refuseHost = hostGuard(ctx.config);
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false, // RFB is compressed already; deflate would cost CPU for nothing
    maxPayload: ctx.config.session.maxMessageBytes, // larger messages are closed with 1009
    // noVNC asks for "binary"; Chrome refuses the connection unless the server echoes it.
    handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
  });

  const presenceServer = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: PRESENCE_MAX_MESSAGE_BYTES });

  /** A presence channel opens for the viewer that holds its session's key, on any node. */
  async function openPresence(req: IncomingMessage, socket: Duplex, head: Buffer, query: URLSearchParams): Promise<void> {
    const key = parseViewKey(query);
    if (key === undefined) throw errors.malformedViewKey();
    const record = await ctx.presence.find(viewKeyDigest(key));
    if (!record) throw errors.noSessionForViewKey();
    // The key holder could open channels without end otherwise: each one costs a socket and a share of every presence update.
    if (ctx.presence.channelsOf(record.id, record.desktop) >= MAX_CHANNELS_PER_SESSION) throw errors.tooManyPresenceChannels(MAX_CHANNELS_PER_SESSION);
    if (socket.destroyed) return;
    presenceServer.handleUpgrade(req, socket, head, (ws) => ctx.presence.attach(ws, record));
    socket.off('error', ignoreSocketError);
  }

  /**
   * Who is asking, what for, whether they may, within the limits, and where they sit on the
   * desktop (coordinator.ts: held, shared, controlled, across nodes); the ticket is used up last.
   */
  async function admit(req: IncomingMessage, from: RequestOrigin, request: SessionRequest): Promise<{ grant: Grant; seat: Seat }> {
    if (request.wanted.kind === 'desktop' && !ctx.directory.get(request.wanted.name)) await ctx.lookAgain();
    const grant = await ctx.admission.decide(req, from, request, req.socket.localPort ?? 0);
    const overLimit = sessions.refuseOverLimit(grant);
    if (overLimit) throw overLimit.of(grant.identity.user);
    const desktop = grant.target.kind === 'desktop' ? ctx.directory.get(grant.target.name) : undefined;
    const seat = await ctx.coordinator.seat(grant, desktop, request.viewKey).catch((err: unknown) => {
      throw err instanceof GatewayError ? err.of(grant.identity.user) : err;
    });
    try {
      // Used up last, so a refusal above does not waste the ticket.
      if (grant.ticket) await auth.tickets?.redeem(grant.ticket);
    } catch (err) {
      void ctx.coordinator.leave(seat);
      throw err;
    }
    return { grant, seat };
  }

  function open(req: IncomingMessage, socket: Duplex, head: Buffer, from: RequestOrigin, grant: Grant, seat: Seat): void {
    // Again, now that nothing awaits between here and the session being counted:
    // concurrent upgrades may have passed the first check together.
    const refusal = socket.destroyed ? undefined : ctx.closing() ? errors.shuttingDown() : sessions.refuseOverLimit(grant)?.of(grant.identity.user);
    if (socket.destroyed || refusal) {
      void ctx.coordinator.leave(seat);
      if (refusal) refuse(socket, req, from, refusal);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => sessions.open(ws, grant, seat));
    socket.off('error', ignoreSocketError); // ws has its own listeners from here on
  }

  function refuse(socket: Duplex, req: IncomingMessage, from: RequestOrigin, error: GatewayError): void {
    events.upgradeRefused.publish(() => ({
      gateway: ctx.gateway,
      remote: from.address,
      user: error.user,
      desktop: asked(req.url),
      code: error.code,
      status: error.status,
      reason: error.message,
      origin: req.headers.origin,
      url: withoutCredentials(req.url),
    }));
    refuseUpgrade(socket, error);
  }

  return function handleUpgrade(req, socket, head) {
    const url = req.url ?? '';
    const kind = webSocketKind(req, ctx.config);
    if (kind === undefined) return answerPlainly(req, socket, head);
    socket.on('error', ignoreSocketError); // the HTTP server no longer listens for errors on an upgrading socket
    const from = auth.proxy.describe(req);
    if (ctx.closing()) return refuse(socket, req, from, errors.shuttingDown());
    const foreign = refuseHost(from) ?? refuseOrigin(req, ctx.config, from);
    if (foreign) return refuse(socket, req, from, foreign);
    const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    const failed = (err: unknown): void => {
      if (err instanceof GatewayError) return refuse(socket, req, from, err);
      if (err instanceof StoreUnavailable) return refuse(socket, req, from, errors.storeUnavailable().causedBy(err));
      events.failed.publish(() => ({ gateway: ctx.gateway, what: 'while admitting an upgrade', err, url: withoutCredentials(req.url) }));
      refuse(socket, req, from, errors.internal());
    };
    if (kind === 'presence') return void openPresence(req, socket, head, query).catch(failed);
    let request: SessionRequest;
    try {
      request = parseUpgradeQuery(query, ctx.config.defaultDesktop);
    } catch (err) {
      return refuse(socket, req, from, err as GatewayError);
    }
    admit(req, from, request).then(({ grant, seat }) => open(req, socket, head, from, grant, seat), failed);
  };
}

function ignoreSocketError(): void {}

/** The desktop or target a refused upgrade asked for, as written, for the log. */
function asked(url: string | undefined): string | undefined {
  const query = new URLSearchParams(url?.split('?', 2)[1] ?? '');
  return query.get('desktop') ?? query.get('token') ?? query.get('target') ?? undefined;
}

/**
 * Answer an upgrade we will not take with a plain HTTP response; no WebSocket is made. The
 * connection is closed once the answer has left, or after a short deadline: a client that
 * keeps its side open must not hold a socket (and a file descriptor) for good.
 */
function refuseUpgrade(socket: Duplex, error: GatewayError): void {
  const deadline = setTimeout(() => socket.destroy(), REFUSAL_FLUSH_MS);
  socket.once('close', () => clearTimeout(deadline));
  socket.once('finish', () => socket.destroy());
  const body = `${error.message}\n`;
  socket.end(
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/**
 * Node hands every request with an Upgrade header to 'upgrade', and `curl --http2` offers
 * h2c on each plain-HTTP request, bodies included. Anything but a WebSocket upgrade of the
 * WebSocket path is the HTTP/1.1 request it also is: it goes back, as written less its
 * Upgrade header, to the server that accepted the connection, and is answered like any other.
 */
function answerPlainly(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]?.toLowerCase() !== 'upgrade') lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  }
  // Node decodes header bytes as Latin-1: encoding them back the same way restores them exactly.
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  const { server, encrypted } = socket as Duplex & { server: Server; encrypted?: boolean };
  server.emit(encrypted ? 'secureConnection' : 'connection', socket);
}
