/**
 * createGateway(config): the HTTP server, its routes, the WebSocket upgrade and the
 * lifecycle (listen, close, destroy). `handleRequest` and `handleUpgrade` are public so
 * the gateway can be mounted inside an existing Node.js HTTP server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { refuseOrigin } from './auth/origin.js';
import { DEMO_DESKTOP, type Config } from './config.js';
import { DesktopDirectory } from './desktops/directory.js';
import { DesktopStatus } from './desktops/status.js';
import { TargetPolicy } from './desktops/targets.js';
import { createLogger, type Logger } from './log.js';
import { buildConnector } from './relay/connector.js';
import { startDemoDesktop, type DemoDesktop } from './rfb/demo-server.js';
import { SessionManager, type Session } from './sessions/sessions.js';
import { createRequestHandler, decodePath } from './web/routes.js';

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
  /** Stop accepting, close sessions with 1001, wait up to `shutdownTimeoutMs`, then cut the rest. */
  close(): Promise<void>;
  /** Cut everything now. */
  destroy(): Promise<void>;
}

const WEBSOCKET_PATH = '/websockify';

export async function createGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.log.level);
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

  const handleRequest = createRequestHandler({
    directory,
    status: new DesktopStatus(config.probe),
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

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '';
    if (state === 'closing') return refuseUpgrade(socket, 503, 'The gateway is shutting down');
    if (decodePath(url) !== WEBSOCKET_PATH) return refuseUpgrade(socket, 404, 'Not found');
    const badOrigin = refuseOrigin(req, config);
    if (badOrigin) return refuse(req, socket, 403, badOrigin);
    const overLimit = sessions.refuseOverLimit(req.socket.remoteAddress ?? 'unknown');
    if (overLimit) return refuse(req, socket, 429, overLimit);
    const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    wss.handleUpgrade(req, socket, head, (ws) => void sessions.open(ws, req, query));
  }

  /** Refuse an upgrade with an HTTP status, logged like every refusal. */
  function refuse(req: IncomingMessage, socket: Duplex, status: number, reason: string): void {
    logger.warn({ remote: req.socket.remoteAddress, origin: req.headers.origin, url: req.url, status, reason }, 'upgrade refused');
    refuseUpgrade(socket, status, reason);
  }

  const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, handleRequest);
  server.on('upgrade', handleUpgrade);

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
      return address;
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

const STATUS_TEXT: Record<number, string> = { 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** Answer an upgrade we will not take with a plain HTTP response; no WebSocket is made. */
function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  socket.on('error', () => {});
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
