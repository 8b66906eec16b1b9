/**
 * createGateway(config): the composition root. It builds the parts from the config
 * (authentication, the desktop directory, the access decision, the sessions, the HTTP
 * routes and the WebSocket upgrade), wires the log to their lifecycle events, and owns the
 * lifecycle: listen, reload, close, destroy. `handleRequest` and `handleUpgrade` are public
 * so the gateway can be mounted inside an existing Node.js HTTP server.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { Auth } from './auth/auth.js';
import { Coordinator } from './coordination/coordinator.js';
import { openStore } from './coordination/open.js';
import { ConfigError, DEMO_DESKTOP, FileError, parseDesktop, type Config, type ConfigInput } from './config/schema.js';
import { isLoopbackHost } from './net/host-port.js';
import { readOperatorFile } from './config/sources.js';
import { startDemoDesktop, type DemoDesktop } from './demo/server.js';
import { DesktopDirectory, type Desktop } from './desktops/directory.js';
import { DesktopStatus } from './desktops/status.js';
import { TargetPolicy } from './desktops/targets.js';
import { intoDirectory, TokenFiles } from './desktops/token-files.js';
import { loadDesktops } from './desktops/vnc-settings.js';
import { errors } from './errors.js';
import { Admission } from './http/admission.js';
import { createRequestHandler, isGatewayRequest } from './http/routes.js';
import { createUpgradeHandler, isWebSocketUpgrade, type WebSocketPaths } from './http/upgrade.js';
import { createLogger, logEvents, type Logger } from './observe/log.js';
import { createMetrics } from './observe/metrics.js';
import { RecordingLibrary } from './recording/library.js';
import { buildConnector } from './relay/connector.js';
import { PresenceHub } from './sessions/presence.js';
import { keepLifetime } from './sessions/lifetime.js';
import { SessionManager } from './sessions/session-manager.js';
import type { SessionSnapshot } from './sessions/snapshot.js';

export interface GatewayOptions {
  /**
   * Where the gateway logs: a pino logger, `console`, or any object with debug/info/warn/error
   * taking (fields, message) or (message). Defaults to pino at `config.log.level`, JSON lines on
   * stdout; a logger passed here does its own level filtering.
   */
  logger?: Logger;
}

export interface Gateway {
  readonly config: Config;
  /** The gateway's own HTTP server; `listen()` binds it to `config.listen`. */
  readonly server: Server;
  /** The live sessions right now, as copies. */
  sessions(): SessionSnapshot[];
  /**
   * Switch a live session between control and view-only without reconnecting. Only sessions
   * opened view-only can (they carry the filter); false when the session cannot or is gone.
   */
  setViewOnly(sessionId: string, viewOnly: boolean): boolean;
  /** The Prometheus metrics server (`metrics.listen`), when there is one; `listen()` binds it too. */
  readonly metricsServer: Server | undefined;
  /** The built-in demo desktop, when it is served. */
  readonly demo: DemoDesktop | undefined;
  /**
   * Answer a request of the host's server. With `next` (Express's, Fastify's, or a function of
   * one's own), a request that is not the gateway's (outside `basePath`, or on no route of the
   * gateway) goes to `next()` instead of a 404.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse, next?: () => void): void;
  /**
   * Take an upgrade of the host's server if it is the gateway's: a WebSocket to
   * `basePath/websockify`, or another protocol's upgrade (curl's h2c) of one of the gateway's
   * pages, answered as plain HTTP. True when it took it; false, leaving the socket untouched,
   * for the host to hand to its own WebSocket server or to destroy.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  listen(): Promise<AddressInfo>;
  /**
   * Re-read the users file and the TLS certificate and key (SIGHUP); with `next`, a config read
   * again, also take its desktops (other settings wait for a restart). Sessions stay up, those of
   * a removed desktop included. On error nothing changes.
   */
  reload(next?: Config): Promise<void>;
  /** Offer one more desktop (NAME=HOST:PORT or the config file's object form), or replace one of that name; throws a ConfigError naming what is wrong. */
  addDesktop(desktop: NonNullable<ConfigInput['desktops']>[number]): void;
  /** Offer a desktop no more; its open sessions go on. False if there was none of that name. */
  removeDesktop(name: string): boolean;
  /** Stop accepting, close sessions with 1001, wait up to `shutdownTimeoutMs`, then cut the rest. */
  close(): Promise<void>;
  /** Cut everything now. */
  destroy(): Promise<void>;
  /** Settles once the gateway has stopped: by close(), destroy(), or its `lifetime`. */
  readonly stopped: Promise<void>;
}

export async function createGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = options.logger ?? (await createLogger(config.log.level, config.log.format));
  const tlsFiles = config.tls && (await readTlsFiles(config.tls));
  const directory = new DesktopDirectory(loadDesktops(config.desktops, process.env), new TargetPolicy(config.targets.allow));
  /** The desktops the config file named: a reload replaces these, not those a library user added. */
  let fromConfig = new Set(config.desktops.map((d) => d.name));
  // Opened after everything that reads a file: a bad file must not leave a Redis connection behind.
  const tokens = await TokenFiles.open(
    config.tokens,
    intoDirectory(directory, (problems) => {
      for (const { file, line, problem } of problems) logger.warn({ file, line }, `token file: ${problem}`);
    }),
  );
  if (config.defaultDesktop !== undefined && !directory.get(config.defaultDesktop) && !(config.demo && config.defaultDesktop === DEMO_DESKTOP)) {
    tokens?.close();
    throw new ConfigError(`defaultDesktop (--default-desktop): there is no desktop named '${config.defaultDesktop}'`);
  }
  const store = await openStore(config.cluster, logger).catch((err: unknown) => {
    tokens?.close();
    throw err;
  });
  const auth = await Auth.create(config, store).catch(async (err: unknown) => {
    tokens?.close();
    await store.close();
    throw err;
  });

  /** Events name this object as their source; the log listens for it. */
  const self = {};
  const stopLogging = logEvents(self, logger);
  const connect = buildConnector({ timeoutMs: config.session.connectTimeoutMs });
  const coordinator = new Coordinator({ store, gateway: self, config });
  const sessions = new SessionManager({ gateway: self, connect, coordinator, session: config.session, limits: config.limits, recordings: config.recordings });
  coordinator.bind(sessions);
  const presence = new PresenceHub(coordinator, config.session.keepaliveMs);
  const admission = new Admission(auth, directory);
  const recordings = new RecordingLibrary({
    dirs: () => [config.recordings.dir, ...directory.list().map((d) => d.record?.dir)],
    retentionDays: config.recordings.retentionDays,
    onProblem: (file, problem) => logger.warn({ file }, `recording ${problem}`),
  });
  /** Serving: listening on its own server, or mounted in a host's (the host calls handleRequest or handleUpgrade). */
  let state: 'idle' | 'serving' | 'closing' = 'idle';
  /** False once `lifetime.acceptForMs` has passed: sessions still open run on, no new one starts. */
  let accepting = true;
  /** A desktop nobody knows may be a token written a moment ago. */
  const lookAgain = async (): Promise<void> => tokens?.lookAgain();

  const handleRequest = createRequestHandler({
    gateway: self,
    config,
    directory,
    status: new DesktopStatus(config.probe),
    auth,
    admission,
    coordinator,
    sessions,
    recordings,
    lookAgain,
    ready: () => state === 'serving' && accepting,
  });
  const handleUpgrade = createUpgradeHandler({
    gateway: self,
    config,
    auth,
    admission,
    directory,
    coordinator,
    sessions,
    presence,
    lookAgain,
    closing: () => state === 'closing' || !accepting,
  });

  const server = createHttpServer(config.http, tlsFiles, handleRequest);
  const metrics = config.metrics.listen && createMetrics(self, () => sessions.snapshot());
  const metricsServer = metrics ? createMetricsServer(metrics.text) : undefined;
  server.on('upgrade', handleUpgrade);
  if (tlsFiles) server.on('tlsClientError', (err) => logger.debug({ err: err.message }, 'TLS handshake failed'));

  // Started last: nothing after it can fail and leave it running.
  const demo = config.demo ? await startDemoDesktop({ host: '127.0.0.1', port: 0 }) : undefined;
  if (demo) directory.add({ name: DEMO_DESKTOP, host: demo.host, port: demo.port, description: 'Built-in demo desktop' });
  // Recordings past recordings.retentionDays go now and every hour.
  const sweepRecordings = (): void => {
    recordings.sweep().then(
      (removed) => {
        if (removed.length > 0) logger.info({ removed: removed.length, retentionDays: config.recordings.retentionDays }, 'old recordings removed');
      },
      (err: unknown) => logger.error({ err }, 'recordings could not be swept'),
    );
  };
  const sweeper = setInterval(sweepRecordings, 3_600_000).unref();
  sweepRecordings();

  let closed: Promise<void> | undefined;
  let markStopped = (): void => {};
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));
  let stopLifetime = (): void => {};
  /** `lifetime.acceptForMs` has passed: no new connection, no new session; those open run on. */
  function stopAccepting(): void {
    accepting = false;
    server.close();
    server.closeIdleConnections();
  }
  async function shutDown(graceMs: number): Promise<void> {
    state = 'closing';
    stopLifetime();
    clearInterval(sweeper);
    tokens?.close();
    server.close();
    server.closeIdleConnections();
    presence.close();
    await sessions.closeAll(graceMs);
    await sessions.destroyAll();
    await coordinator.close();
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    metrics?.stop();
    server.closeAllConnections();
    await demo?.close();
    logger.info('gateway stopped');
    stopLogging();
    markStopped();
  }
  const close = (): Promise<void> => (closed ??= shutDown(config.shutdownTimeoutMs));

  return {
    config,
    server,
    sessions: () => sessions.snapshot(),
    setViewOnly: (id, viewOnly) => sessions.setViewOnly(id, viewOnly),
    metricsServer,
    demo,
    handleRequest(req, res, next) {
      if (state === 'idle') state = 'serving'; // a host that mounted the gateway serves it
      handleRequest(req, res, next);
    },
    handleUpgrade(req, socket, head) {
      if (!isGatewayUpgrade(req, config, auth.mode === 'password')) return false;
      if (state === 'idle') state = 'serving';
      handleUpgrade(req, socket, head);
      return true;
    },
    async listen() {
      await listenOn(server, config.listen);
      if (metricsServer && config.metrics.listen) await listenOn(metricsServer, config.metrics.listen);
      state = 'serving';
      stopLifetime = keepLifetime(config.lifetime, { gateway: self, sessions, logger, close, stopAccepting });
      const address = server.address() as AddressInfo;
      const metricsAt = metricsServer?.address() as AddressInfo | undefined;
      const desktops = directory.list().flatMap((d) => (d.unlisted ? [] : [d.name]));
      logger.info(
        { address: address.address, port: address.port, desktops, metrics: metricsAt && `${metricsAt.address}:${metricsAt.port}` },
        'gateway listening',
      );
      if (auth.mode === 'none' && !isLoopbackHost(config.listen.host)) {
        logger.warn({ address: address.address }, 'NO AUTHENTICATION (insecureNoAuth): anyone who can reach this port can open every desktop');
      }
      return address;
    },
    async reload(next) {
      // Everything is read before anything changes: a bad certificate must not leave a new users file half-applied.
      const tls = config.tls && (await readTlsFiles(config.tls));
      const desktops = next && loadDesktops(next.desktops, process.env).filter((d) => !(demo && d.name === DEMO_DESKTOP));
      await auth.reload();
      await tokens?.reload();
      if (tls) (server as HttpsServer).setSecureContext(tls);
      sessions.endWhere((s) => !auth.stillKnows(s.identity), errors.accountChanged());
      if (desktops) {
        for (const name of fromConfig) directory.remove(name);
        for (const desktop of desktops) directory.add(desktop);
        fromConfig = new Set(desktops.map((d) => d.name));
      }
      logger.info({ usersFile: auth.mode === 'password', tls: Boolean(config.tls), desktops: desktops?.map((d) => d.name) }, 'reloaded');
    },
    addDesktop(input) {
      const desktop = parseDesktop(input);
      if (demo && desktop.name === DEMO_DESKTOP) throw new ConfigError(`desktop: the name '${DEMO_DESKTOP}' is the built-in demo desktop's`);
      directory.add(loadDesktops([desktop], process.env)[0] as Desktop);
    },
    removeDesktop(name) {
      if (demo && name === DEMO_DESKTOP) return false;
      fromConfig.delete(name);
      return directory.remove(name);
    },
    close,
    stopped,
    destroy() {
      void sessions.destroyAll();
      closed ??= shutDown(0);
      return closed;
    },
  };
}

function listenOn(server: Server, { host, port }: { host: string; port: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** GET /metrics and nothing else, on its own address: scrapers need no login, and the public port shows none of it. */
function createMetricsServer(text: () => Promise<string>): Server {
  return createServer((req, res) => {
    if (req.url?.split('?', 1)[0] !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found: metrics are at /metrics\n');
      return;
    }
    text().then(
      (body) =>
        res
          .writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' })
          .end(req.method === 'HEAD' ? undefined : body),
      () => res.writeHead(500).end(),
    );
  });
}

/** Whether an upgrade is the gateway's: a WebSocket to its WebSocket path, or another protocol's upgrade of one of its pages. */
function isGatewayUpgrade(req: IncomingMessage, paths: WebSocketPaths, passwordMode: boolean): boolean {
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return isGatewayRequest(req.url ?? '/', paths.basePath, passwordMode);
  return isWebSocketUpgrade(req, paths);
}

/** The gateway's own server, HTTP or HTTPS, with every wait bounded. */
function createHttpServer(http: Config['http'], tlsFiles: TlsFiles | undefined, handleRequest: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const options = {
    headersTimeout: http.headersTimeoutMs,
    requestTimeout: http.requestTimeoutMs,
    maxHeaderSize: http.maxHeaderBytes,
    // Node checks the two timeouts above every 30 s by default: a slow-loris client would get up to 30 s more.
    connectionsCheckingInterval: Math.min(1_000, http.headersTimeoutMs),
  };
  const server: Server = tlsFiles
    ? createHttpsServer({ ...options, ...tlsFiles, handshakeTimeout: http.headersTimeoutMs }, handleRequest)
    : createServer(options, handleRequest);
  // A connection on which nothing moves, say a client that stopped reading a response, is closed.
  server.setTimeout(http.idleTimeoutMs);
  return server;
}

interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** The certificate and key, checked to make a pair; a FileError, naming the file, if they cannot be used. */
async function readTlsFiles(tls: NonNullable<Config['tls']>): Promise<TlsFiles> {
  const files = { cert: readOperatorFile('tls.cert', tls.cert), key: readOperatorFile('tls.key', tls.key) };
  try {
    createSecureContext(files); // a bad pair fails here, with OpenSSL's reason
  } catch (err) {
    throw new FileError('tls.key', tls.key, `tls.cert ${tls.cert} and tls.key ${tls.key} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  // OpenSSL compares a key with the certificate only when both are of one type (say EC):
  // an RSA key beside an EC certificate passes, and no handshake could succeed.
  if (!new X509Certificate(files.cert).checkPrivateKey(createPrivateKey(files.key))) {
    throw new FileError('tls.key', tls.key, `the key in tls.key ${tls.key} does not belong to the certificate in tls.cert ${tls.cert}`);
  }
  return files;
}
