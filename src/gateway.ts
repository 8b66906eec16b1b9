/**
 * createGateway(config): the HTTP server, its routes, the WebSocket upgrade and the
 * lifecycle (listen, close, destroy). `handleRequest` and `handleUpgrade` are public so
 * the gateway can be mounted inside an existing Node.js HTTP server.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { WebSocketServer } from 'ws';
import { Auth } from './auth/auth.js';
import { accessTo } from './auth/identity.js';
import { hostGuard, refuseOrigin } from './auth/origin.js';
import type { RequestOrigin } from './auth/proxy.js';
import { withoutTicket, type Ticket } from './auth/tickets.js';
import { GatewayError } from './errors.js';
import { DEMO_DESKTOP, isLoopbackHost, type Config } from './config/schema.js';
import { DesktopDirectory } from './desktops/directory.js';
import { DesktopStatus } from './desktops/status.js';
import { TargetPolicy } from './desktops/targets.js';
import { createLogger, type Logger } from './observe/log.js';
import { buildConnector } from './relay/connector.js';
import { startDemoDesktop, type DemoDesktop } from './demo/server.js';
import { SessionManager, type Grant, type Session } from './sessions/session-manager.js';
import { createRequestHandler, decodePath } from './http/routes.js';

export interface GatewayOptions {
  /** Defaults to a pino logger at `config.log.level`. */
  logger?: Logger;
}

export interface Gateway {
  readonly config: Config;
  /** The gateway's own HTTP server; `listen()` binds it to `config.listen`. */
  readonly server: Server;
  readonly sessions: Iterable<Session> & { readonly size: number };
  /** The built-in demo desktop, when it is served. */
  readonly demo: DemoDesktop | undefined;
  handleRequest(req: IncomingMessage, res: ServerResponse): void;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  listen(): Promise<AddressInfo>;
  /** Re-read the users file and the TLS certificate and key (SIGHUP); sessions stay up. On error nothing changes. */
  reload(): Promise<void>;
  /** Stop accepting, close sessions with 1001, wait up to `shutdownTimeoutMs`, then cut the rest. */
  close(): Promise<void>;
  /** Cut everything now. */
  destroy(): Promise<void>;
}

const WEBSOCKET_PATH = '/websockify';

export async function createGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.log.level);
  const auth = await Auth.create(config);
  const tlsFiles = config.tls && (await readTlsFiles(config.tls));
  const directory = new DesktopDirectory(config.desktops, new TargetPolicy(config.targets.allow));
  const demo = config.demo ? await startDemoDesktop({ host: '127.0.0.1', port: 0 }) : undefined;
  if (demo) directory.add({ name: DEMO_DESKTOP, host: demo.host, port: demo.port, description: 'Built-in demo desktop' });

  const sessions = new SessionManager({
    directory,
    connect: buildConnector({ timeoutMs: config.session.connectTimeoutMs }),
    session: config.session,
    limits: config.limits,
    logger,
  });
  let state: 'idle' | 'listening' | 'closing' = 'idle';
  const refuseHost = hostGuard(config);

  const handleRequest = createRequestHandler({
    config,
    directory,
    status: new DesktopStatus(config.probe),
    auth,
    sessions,
    logger,
    ready: () => state === 'listening',
  });

  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false, // RFB is compressed already; deflate would cost CPU for nothing
    maxPayload: config.session.maxMessageBytes, // larger messages are closed with 1009
    // noVNC asks for "binary"; Chrome refuses the connection unless the server echoes it.
    handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
  });

  /**
   * Everything is decided here, before the WebSocket exists: a refused upgrade gets an HTTP
   * status and never causes a TCP connection to a VNC server.
   */
  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '';
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || decodePath(url) !== WEBSOCKET_PATH) return answerPlainly(req, socket, head);
    socket.on('error', ignoreSocketError); // the HTTP server no longer listens for errors on an upgrading socket
    const from = auth.proxy.describe(req);
    if (state === 'closing') return refuseUpgrade(socket, 503, 'The gateway is shutting down');
    const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    const foreign = refuseHost(from) ?? refuseOrigin(req, config, from);
    if (foreign) return refuse(socket, { from, req, query, status: 403, reason: foreign });
    authorize(req, from, query).then(
      (decision) => {
        if ('refusal' in decision) {
          const { refusal, user } = decision;
          return refuse(socket, { from, req, query, status: refusal.status, reason: refusal.message, user });
        }
        if (socket.destroyed) return;
        if (state === 'closing') return refuseUpgrade(socket, 503, 'The gateway is shutting down');
        // Again, now that nothing awaits between here and the session being counted:
        // concurrent upgrades may have passed the first check together.
        const overLimit = sessions.refuseOverLimit(decision.grant);
        if (overLimit) return refuse(socket, { from, req, query, status: 429, reason: overLimit, user: decision.grant.identity.user });
        wss.handleUpgrade(req, socket, head, (ws) => void sessions.open(ws, req, query, decision.grant));
        socket.off('error', ignoreSocketError); // ws has its own listeners from here on
      },
      (err: unknown) => {
        logger.error({ err }, 'unexpected error while authorizing an upgrade');
        refuse(socket, { from, req, query, status: 500, reason: 'Unexpected gateway error' });
      },
    );
  }

  /** Who is asking, whether they may open what they ask for, and within which limits. */
  async function authorize(req: IncomingMessage, from: RequestOrigin, query: URLSearchParams): Promise<Decision> {
    const desktops = query.getAll('desktop');
    const name = desktops.length === 1 && !query.has('target') ? desktops[0] : undefined;
    const token = query.get('ticket');
    let user: string | undefined;
    try {
      let grant: Grant;
      let ticket: Ticket | undefined;
      if (token !== null) {
        if (!auth.tickets) throw new GatewayError('DG_ERR_UNAUTHENTICATED', 'Tickets are not enabled on this gateway');
        if (name === undefined || query.getAll('ticket').length !== 1) {
          throw new GatewayError('DG_ERR_BAD_REQUEST', 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET');
        }
        ticket = await auth.tickets.check(token, name);
        user = ticket.user;
        grant = { address: from.address, identity: { user, groups: [], via: 'ticket' }, viewOnly: ticket.viewOnly };
      } else {
        const identity = await auth.identify(req, from);
        if (!identity) throw new GatewayError('DG_ERR_UNAUTHENTICATED', auth.mode === 'password' ? 'Log in first' : 'Authentication required');
        user = identity.user;
        const desktop = name === undefined ? undefined : directory.get(name);
        const access = desktop ? accessTo(desktop, identity) : 'full'; // unknown desktops close with 4404 once open
        if (access === 'none') throw new GatewayError('DG_ERR_FORBIDDEN', `${user} may not open desktop '${name}'`);
        grant = { address: from.address, identity, viewOnly: access === 'view' };
      }
      const overLimit = sessions.refuseOverLimit(grant);
      if (overLimit) throw new GatewayError('DG_ERR_TOO_MANY_SESSIONS', overLimit);
      // Used up last, so a refusal above does not waste the ticket.
      if (ticket && token !== null) await auth.tickets?.redeem(token, ticket.desktop);
      return { grant };
    } catch (err) {
      if (err instanceof GatewayError) return { refusal: err, user };
      throw err;
    }
  }

  /** Refuse an upgrade with an HTTP status, logged like every refusal. */
  function refuse(socket: Duplex, r: Refusal): void {
    const desktop = r.query.get('desktop') ?? r.query.get('target') ?? undefined;
    logger.warn(
      { remote: r.from.address, user: r.user, desktop, origin: r.req.headers.origin, url: withoutTicket(r.req.url), status: r.status, reason: r.reason },
      'upgrade refused',
    );
    refuseUpgrade(socket, r.status, r.reason);
  }

  const httpOptions = {
    headersTimeout: config.http.headersTimeoutMs,
    requestTimeout: config.http.requestTimeoutMs,
    maxHeaderSize: config.http.maxHeaderBytes,
    // Node checks the two timeouts above every 30 s by default: a slow-loris client would get up to 30 s more.
    connectionsCheckingInterval: Math.min(1_000, config.http.headersTimeoutMs),
  };
  const server: Server = tlsFiles
    ? createHttpsServer({ ...httpOptions, ...tlsFiles, handshakeTimeout: config.http.headersTimeoutMs }, handleRequest)
    : createServer(httpOptions, handleRequest);
  // A connection on which nothing moves, say a client that stopped reading a response, is closed.
  server.setTimeout(config.http.idleTimeoutMs);
  server.on('upgrade', handleUpgrade);
  if (tlsFiles) server.on('tlsClientError', (err) => logger.debug({ err: err.message }, 'TLS handshake failed'));

  let closed: Promise<void> | undefined;
  async function shutDown(graceMs: number): Promise<void> {
    state = 'closing';
    server.close();
    server.closeIdleConnections();
    await sessions.closeAll(graceMs);
    await sessions.destroyAll();
    server.closeAllConnections();
    await demo?.close();
    logger.info('gateway stopped');
  }

  return {
    config,
    server,
    sessions,
    demo,
    handleRequest,
    handleUpgrade,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.listen.port, config.listen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      state = 'listening';
      const address = server.address() as AddressInfo;
      logger.info({ address: address.address, port: address.port, desktops: directory.list().map((d) => d.name) }, 'gateway listening');
      if (auth.mode === 'none' && !isLoopbackHost(config.listen.host)) {
        logger.warn({ address: address.address }, 'NO AUTHENTICATION (insecureNoAuth): anyone who can reach this port can open every desktop');
      }
      return address;
    },
    async reload() {
      // Everything is read before anything changes: a bad certificate must not leave a new users file half-applied.
      const tls = config.tls && (await readTlsFiles(config.tls));
      await auth.reload();
      if (tls) (server as HttpsServer).setSecureContext(tls);
      sessions.endWhere((s) => !auth.stillKnows(s.identity), new GatewayError('DG_ERR_UNAUTHENTICATED', 'Your account was removed or its password changed: log in again'));
      logger.info({ usersFile: auth.mode === 'password', tls: Boolean(config.tls) }, 'reloaded');
    },
    close() {
      closed ??= shutDown(config.shutdownTimeoutMs);
      return closed;
    },
    destroy() {
      void sessions.destroyAll();
      closed ??= shutDown(0);
      return closed;
    },
  };
}

type Decision = { grant: Grant } | { refusal: GatewayError; user: string | undefined };

interface Refusal {
  from: RequestOrigin;
  req: IncomingMessage;
  query: URLSearchParams;
  status: number;
  reason: string;
  user?: string | undefined;
}

function ignoreSocketError(): void {}

async function readTlsFiles(tls: NonNullable<Config['tls']>): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (file: string, key: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new Error(`cannot read ${key} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const files = { cert: await read(tls.cert, 'tls.cert'), key: await read(tls.key, 'tls.key') };
  createSecureContext(files); // a bad pair fails here, with OpenSSL's reason
  // OpenSSL compares a key with the certificate only when both are of one type (say EC):
  // an RSA key beside an EC certificate passes, and no handshake could succeed.
  if (!new X509Certificate(files.cert).checkPrivateKey(createPrivateKey(files.key))) {
    throw new Error(`the key in tls.key ${tls.key} does not belong to the certificate in tls.cert ${tls.cert}`);
  }
  return files;
}

/** How long a refused upgrade's answer may take to leave before its connection is cut. */
const REFUSAL_FLUSH_MS = 2_000;

/**
 * Answer an upgrade we will not take with a plain HTTP response; no WebSocket is made. The
 * connection is closed once the answer has left, or after a short deadline: a client that
 * keeps its side open must not hold a socket (and a file descriptor) for good.
 */
function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  const deadline = setTimeout(() => socket.destroy(), REFUSAL_FLUSH_MS);
  socket.once('close', () => clearTimeout(deadline));
  socket.once('finish', () => socket.destroy());
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
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
