/**
 * The HTTP side of the gateway: dashboard, viewer, login, the ticket API, health, and the
 * browser code (ours and noVNC's). The viewer page is decided by the same access decision
 * as the WebSocket (admission.ts); the WebSocket endpoint itself is upgrade.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Auth } from '../auth/auth.js';
import { accessTo, type Identity } from '../auth/identity.js';
import { hostGuard, ownOrigin } from '../auth/origin.js';
import type { RequestOrigin } from '../auth/proxy.js';
import { withoutCredentials } from '../auth/tickets.js';
import type { Config } from '../config/schema.js';
import type { Coordinator } from '../coordination/coordinator.js';
import { StoreUnavailable } from '../coordination/store.js';
import type { DesktopDirectory } from '../desktops/directory.js';
import type { DesktopStatus } from '../desktops/status.js';
import { errors, GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import { NOVNC_ROOT, STATIC_ROOT, VERSION } from '../package.js';
import type { RecordingLibrary } from '../recording/library.js';
import type { SessionManager } from '../sessions/session-manager.js';
import type { Admission } from './admission.js';
import { handleLogin, handleLogout } from './login.js';
import { renderDashboard, renderLogin, renderNotice, renderSessions, renderViewer, safeNext } from './pages.js';
import { createRecordingsRoute, isRecordingsRoute, mayListRecordings } from './recordings-routes.js';
import { type Headers, json, problem, redirect, send, text } from './respond.js';
import { parseViewerRequest } from './session-request.js';
import { serveDirectory, type ServeFile } from './static-files.js';
import { handleSessionsRequest } from './sessions-api.js';
import { handleTicketRequest } from './tickets-api.js';

export interface RoutesContext {
  /** Whom events name as their source. */
  gateway: object;
  config: Config;
  directory: DesktopDirectory;
  status: DesktopStatus;
  auth: Auth;
  admission: Admission;
  coordinator: Coordinator;
  sessions: SessionManager;
  /** The recordings on disk, for the recordings routes. */
  recordings: RecordingLibrary;
  /** Read the desktop sources again that may hold a name not found (token files, written a moment ago). */
  lookAgain(): Promise<void>;
  /** Ready to take sessions: listening and not shutting down. */
  ready(): boolean;
}

/** What a route handler gets: the request, the response, and what the gateway believes about the client. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  from: RequestOrigin;
  /** From the requested page back to the gateway's root, for relative URLs: "./" or "../". */
  root: string;
  /** The request's path and query relative to the gateway's root, as sent: "view/lab1?ticket=…". */
  target: string;
  /** Sends an HTML page with the page security headers. */
  page(status: number, body: string, headers?: Headers): void;
  /** Publishes the refusal of this request (the log sees it); `desktop`: what it asked for. */
  refused(error: GatewayError, desktop?: string): void;
}

/**
 * With `next`, a request that is not the gateway's (outside its base path, or on no route of
 * its own) goes to `next()` instead of a 404: the host application's middleware chain
 * (Express, Fastify, a node:http handler of one's own) continues with it.
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;

/** Notice titles for the refusals of a viewer page. */
const NOTICE_TITLES: Partial<Record<number, string>> = {
  400: 'Malformed request',
  403: 'Not allowed',
  404: 'No such desktop',
  409: 'In use',
  503: 'Try again',
};

/** One closure over the routes' shared state (the context, static roots, page headers); each route inside is a short function of its own. */
export function createRequestHandler(ctx: RoutesContext): RequestHandler {
  const serveStatic = serveDirectory(STATIC_ROOT, 'no-cache');
  const serveNoVnc = serveDirectory(NOVNC_ROOT, 'public, max-age=3600');
  const { auth } = ctx;
  const frameAncestors = `frame-ancestors ${["'self'", ...ctx.config.frameAncestors].join(' ')}`;
  // The operator's own pages (web): their scripts are theirs, but framing, referrers (token links) and sniffing are ours to bound.
  const serveWeb =
    ctx.config.web === undefined
      ? undefined
      : serveDirectory(ctx.config.web, 'no-cache', { 'Content-Security-Policy': frameAncestors, 'Referrer-Policy': 'no-referrer' });
  const refuseHost = hostGuard(ctx.config);
  const { basePath } = ctx.config;
  // Scripts and styles from this origin only; the viewer talks to this origin only; only the
  // configured consoles may frame it; tickets live in URLs, so no Referer and no caching.
  const pageHeaders = {
    'Content-Security-Policy':
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
      `${frameAncestors}; base-uri 'none'; form-action 'self'; object-src 'none'`,
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
  };
  const recordings = createRecordingsRoute(ctx, pageHeaders);

  /** `notFound`: a 404, or the host application's `next`. */
  async function route(x: Exchange, path: string, notFound: () => void): Promise<void> {
    const { req, res } = x;
    const session = /^\/api\/sessions\/([0-9a-f-]{36})$/.exec(path)?.[1];
    if (session !== undefined) {
      if (req.method === 'DELETE' || req.method === 'PATCH') return handleSessionsRequest(x, ctx, session);
      return methodNotAllowed(res, 'DELETE, PATCH');
    }
    if (req.method === 'POST') {
      if (path === '/login' && auth.mode === 'password') return handleLogin(x, auth, ctx.gateway);
      if (path === '/logout' && auth.mode === 'password') return handleLogout(x, auth, ctx.coordinator);
      if (path === '/api/tickets') return handleTicketRequest(x, ctx);
      return methodNotAllowed(res, 'GET, HEAD');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, path === '/api/tickets' ? 'POST' : 'GET, HEAD');
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') return readiness(res);
    if (path === '/api/sessions') return handleSessionsRequest(x, ctx, undefined);
    if (path === '/sessions') return sessionsPage(x);
    if (isRecordingsRoute(path)) return recordings(x, path, askToLogIn);
    if (path.startsWith('/static/') && (await serveStatic(req, res, path.slice('/static/'.length)))) return;
    // For what asks anyway (a JSON page, a bookmark): the same icon.
    if (path === '/favicon.ico' && (await serveStatic(req, res, 'favicon.svg'))) return;
    if (/^\/novnc\/(core|vendor)\//.test(path) && (await serveNoVnc(req, res, path.slice('/novnc/'.length)))) return;
    if (path === '/login' && auth.mode === 'password') return loginPage(x);
    if (path === '/') return dashboard(x);
    if (path.startsWith('/view/')) return viewer(x, path.slice('/view/'.length));
    if (serveWeb) return webFile(x, serveWeb, path, notFound);
    notFound();
  }

  /** A file of the operator's directory (web, websockify's --web), for whoever may use the gateway. */
  async function webFile(x: Exchange, serve: ServeFile, path: string, notFound: () => void): Promise<void> {
    if (!(await auth.identify(x.req, x.from))) return askToLogIn(x);
    if (!(await serve(x.req, x.res, path.slice(1)))) notFound();
  }

  /** Ready: serving, and (in a cluster) reaching the store that new sessions need. */
  function readiness(res: ServerResponse): void {
    if (!ctx.ready()) return json(res, 503, { status: 'not ready' });
    if (!ctx.coordinator.store.available) return json(res, 503, { status: 'not ready', reason: 'the cluster store (Redis) cannot be reached' });
    json(res, 200, { status: 'ready' });
  }

  /** The live sessions of every node, for administrators; the page asks /api/sessions itself. */
  async function sessionsPage(x: Exchange): Promise<void> {
    const identity = await auth.identify(x.req, x.from);
    if (!identity) return askToLogIn(x);
    if (!ctx.coordinator.isAdmin(identity)) {
      const error = errors.notAdmin(identity.user).of(identity.user);
      x.refused(error);
      return x.page(403, renderNotice(x.root, 'Not allowed', error.message));
    }
    x.page(200, renderSessions({ root: x.root, version: VERSION, user: identity.via === 'password' ? identity.user : undefined }));
  }

  /** An unauthenticated page request goes to the login form (mode password), or is refused with 401. */
  function askToLogIn(x: Exchange): void {
    if (auth.mode === 'password') return redirect(x.res, `${x.root}login?next=${encodeURIComponent(x.target)}`);
    problem(x.res, errors.signInThroughSso());
  }

  async function loginPage(x: Exchange): Promise<void> {
    const next = safeNext(new URL(x.req.url ?? '/', 'http://x').searchParams.get('next'));
    if (await auth.identify(x.req, x.from)) return redirect(x.res, `${x.root}${next}`);
    x.page(200, renderLogin({ root: x.root, next }));
  }

  async function dashboard(x: Exchange): Promise<void> {
    const identity: Identity | undefined = await auth.identify(x.req, x.from);
    if (!identity) return askToLogIn(x);
    const desktops = ctx.directory.list().filter((d) => !d.unlisted && accessTo(d, identity) !== 'none');
    const cards = await Promise.all(
      desktops.map(async (d) => {
        const probe = await ctx.status.check(d);
        return { name: d.name, description: d.description, status: probe.status, detail: probe.detail };
      }),
    );
    const user = identity.via === 'password' ? identity.user : undefined;
    const links = { admin: ctx.coordinator.isAdmin(identity), recordings: mayListRecordings(ctx, identity) };
    x.page(200, renderDashboard(cards, { root: x.root, version: VERSION, user, ...links }));
  }

  /** The viewer, for whoever the WebSocket would admit; a ticket link opens it without a login, and is used up by the WebSocket, not here. */
  async function viewer(x: Exchange, name: string): Promise<void> {
    const query = new URL(x.req.url ?? '/', 'http://x').searchParams;
    try {
      const request = parseViewerRequest(name, query);
      if (!ctx.directory.get(name)) await ctx.lookAgain();
      const grant = await ctx.admission.decide(x.req, x.from, request, x.req.socket.localPort ?? 0);
      // A reload of a used ticket link says so, instead of failing at the WebSocket.
      if (grant.ticket && (await auth.tickets?.used(grant.ticket))) throw errors.ticketUsed();
      // So does a desktop someone else holds: the viewer asks the page again when its WebSocket is refused.
      const held = await ctx.coordinator.refusal(grant, ctx.directory.get(grant.target.name));
      if (held) throw held.of(grant.identity.user);
      const options = { root: x.root, viewOnly: grant.viewOnly, gatewayOrigin: ownOrigin(x.from), websocketPath: ctx.config.websocketPath };
      x.page(200, renderViewer(ctx.directory.get(grant.target.name) ?? { name }, options));
    } catch (caught) {
      const err = caught instanceof StoreUnavailable ? errors.storeUnavailable() : caught;
      if (!(err instanceof GatewayError)) throw err;
      const withTicket = query.has('ticket');
      if (err.code === 'DG_ERR_UNAUTHENTICATED' && !withTicket) return askToLogIn(x);
      x.refused(err, name);
      x.page(err.status, renderNotice(x.root, withTicket ? 'This link cannot be used' : (NOTICE_TITLES[err.status] ?? 'Refused'), err.message));
    }
  }

  const passwordMode = auth.mode === 'password';

  return function handleRequest(req, res, next) {
    if (next && !isGatewayRequest(req.url ?? '/', basePath, passwordMode)) return next();
    const from = auth.proxy.describe(req);
    const refused = (error: GatewayError, desktop?: string): void =>
      events.requestRefused.publish(() => ({
        gateway: ctx.gateway,
        remote: from.address,
        user: error.user,
        desktop,
        code: error.code,
        status: error.status,
        reason: error.message,
        url: withoutCredentials(req.url),
      }));
    // Under TLS (ours or a trusted proxy's), browsers should never come back over plain HTTP.
    if (from.secure) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    const badHost = refuseHost(from);
    if (badHost) {
      refused(badHost);
      return problem(res, badHost);
    }
    const url = req.url ?? '/';
    const decoded = decodePath(url);
    if (decoded === undefined) return problem(res, errors.malformedUrl());
    const path = underBase(decoded, basePath);
    const notFound = (): void => {
      if (!next) return text(res, 404, 'Not found');
      res.removeHeader('Strict-Transport-Security'); // the host's answer, the host's headers
      next();
    };
    if (path === undefined) return notFound();
    const query = url.slice((url.split('?', 1)[0] ?? '').length);
    // The base path itself is not a directory URL: relative links would resolve beside it, not below.
    if (path === '') return redirect(res, `${basePath.slice(basePath.lastIndexOf('/') + 1)}/${query}`);
    const page = (status: number, body: string, headers: Headers = {}): void =>
      send(res, status, 'text/html; charset=utf-8', body, { ...pageHeaders, ...headers });
    const root = '../'.repeat(path.split('/').length - 2) || './';
    const target = path.slice(1).split('/').map(encodeURIComponent).join('/') + query;
    route({ req, res, from, root, target, page, refused }, path, notFound).catch((err: unknown) => {
      if (err instanceof StoreUnavailable && !res.headersSent) {
        const error = errors.storeUnavailable();
        refused(error);
        return problem(res, error);
      }
      events.failed.publish(() => ({ gateway: ctx.gateway, what: 'while answering a request', err, url: withoutCredentials(req.url) }));
      if (!res.headersSent) problem(res, errors.internal());
      else res.destroy();
    });
  };
}

/**
 * Whether a request is the gateway's to answer: below its base path, on one of its routes
 * (whatever the method; a file missing below /static/ is found out later). A URL it cannot
 * decode is its own (a 400) only below a base path: at the root, it is the host's.
 */
export function isGatewayRequest(url: string, basePath: string, passwordMode: boolean): boolean {
  const decoded = decodePath(url);
  const path = underBase(decoded ?? url.split('?', 1)[0] ?? '', basePath);
  if (path === undefined) return false;
  if (decoded === undefined) return basePath !== '';
  if (path === '') return true;
  if (passwordMode && (path === '/login' || path === '/logout')) return true;
  return (
    ['/', '/healthz', '/readyz', '/favicon.ico', '/api/tickets', '/api/sessions', '/sessions'].includes(path) ||
    /^\/(static|view|api\/sessions)\/|^\/novnc\/(core|vendor)\//.test(path) ||
    isRecordingsRoute(path)
  );
}

/** The path below `basePath` ("/…"), "" for the base path itself, or undefined if the path is not under it. */
export function underBase(path: string, basePath: string): string | undefined {
  if (!basePath) return path;
  if (path === basePath) return '';
  return path.startsWith(`${basePath}/`) ? path.slice(basePath.length) : undefined;
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  text(res, 405, 'Method not allowed', { Allow: allow });
}

/** The request path, percent-decoded, without the query; undefined if it cannot be decoded. */
export function decodePath(url: string): string | undefined {
  const raw = url.split('?', 1)[0] ?? '/';
  // An encoded slash or backslash would be one segment to the browser and two once decoded: the
  // relative URLs the pages carry would then resolve outside the gateway. No route needs one.
  if (/%2f|%5c/i.test(raw)) return undefined;
  try {
    const path = decodeURIComponent(raw);
    return path.startsWith('/') ? path : undefined;
  } catch {
    return undefined;
  }
}
