/**
 * The HTTP side of the gateway: dashboard, viewer, login, the ticket API, health, and the
 * browser code (ours and noVNC's). Pages are behind the same authentication as the
 * WebSocket; the WebSocket endpoint itself lives in gateway.ts (the upgrade path).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Auth } from '../auth/auth.js';
import { accessTo, type Identity } from '../auth/identity.js';
import { hostGuard } from '../auth/origin.js';
import type { RequestOrigin } from '../auth/proxy.js';
import { withoutTicket } from '../auth/tickets.js';
import type { Config } from '../config/schema.js';
import type { DesktopDirectory } from '../desktops/directory.js';
import type { DesktopStatus } from '../desktops/status.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { SessionManager } from '../sessions/session-manager.js';
import { NOVNC_ROOT, STATIC_ROOT, VERSION } from '../package.js';
import { type Headers, json, redirect, send, text } from './respond.js';
import { handleLogin, handleLogout } from './login.js';
import { renderDashboard, renderLogin, renderNotice, renderViewer, safeNext } from './pages.js';
import { serveDirectory } from './static-files.js';
import { handleTicketRequest } from './tickets-api.js';


export interface RoutesContext {
  config: Config;
  directory: DesktopDirectory;
  status: DesktopStatus;
  auth: Auth;
  sessions: SessionManager;
  logger: Logger;
  /** Ready to take sessions: listening and not shutting down. */
  ready(): boolean;
}

/** What a route handler gets: the request, the response, and what the gateway believes about the client. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  from: RequestOrigin;
  /** Sends an HTML page with the page security headers. */
  page(status: number, body: string, headers?: Headers): void;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createRequestHandler(ctx: RoutesContext): RequestHandler {
  const serveStatic = serveDirectory(STATIC_ROOT, 'no-cache');
  const serveNoVnc = serveDirectory(NOVNC_ROOT, 'public, max-age=3600');
  const { auth } = ctx;
  const refuseHost = hostGuard(ctx.config);
  // Scripts and styles from this origin only; the viewer talks to this origin only; only the
  // configured consoles may frame it; tickets live in URLs, so no Referer and no caching.
  const pageHeaders = {
    'Content-Security-Policy':
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
      `frame-ancestors ${["'self'", ...ctx.config.frameAncestors].join(' ')}; base-uri 'none'; form-action 'self'; object-src 'none'`,
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
  };

  async function route(x: Exchange, path: string): Promise<void> {
    const { req, res } = x;
    if (req.method === 'POST') {
      if (path === '/login' && auth.mode === 'password') return handleLogin(x, auth, ctx.logger);
      if (path === '/logout' && auth.mode === 'password') return handleLogout(x, auth, ctx.sessions);
      if (path === '/api/tickets') return handleTicketRequest(x, ctx);
      return methodNotAllowed(res, 'GET, HEAD');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, path === '/api/tickets' ? 'POST' : 'GET, HEAD');
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') return ctx.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not ready' });
    if (path.startsWith('/static/') && (await serveStatic(req, res, path.slice('/static/'.length)))) return;
    if (/^\/novnc\/(core|vendor)\//.test(path) && (await serveNoVnc(req, res, path.slice('/novnc/'.length)))) return;
    if (path === '/login' && auth.mode === 'password') return loginPage(x);
    if (path === '/') return dashboard(x);
    if (path.startsWith('/view/')) return viewer(x, path.slice('/view/'.length));
    text(res, 404, 'Not found');
  }

  /** The identity behind a page request; otherwise answers with a login redirect or 401. */
  async function identify(x: Exchange): Promise<Identity | undefined> {
    const identity = await auth.identify(x.req, x.from);
    if (identity) return identity;
    if (auth.mode === 'password') redirect(x.res, `/login?next=${encodeURIComponent(x.req.url ?? '/')}`);
    else text(x.res, 401, 'Authentication required: sign in through your organisation\'s single sign-on');
    return undefined;
  }

  async function loginPage(x: Exchange): Promise<void> {
    const next = safeNext(new URL(x.req.url ?? '/', 'http://x').searchParams.get('next'));
    if (await auth.identify(x.req, x.from)) return redirect(x.res, next);
    x.page(200, renderLogin({ next }));
  }

  async function dashboard(x: Exchange): Promise<void> {
    const identity = await identify(x);
    if (!identity) return;
    const desktops = ctx.directory.list().filter((d) => accessTo(d, identity) !== 'none');
    const cards = await Promise.all(
      desktops.map(async (d) => {
        const probe = await ctx.status.check(d);
        return { name: d.name, description: d.description, status: probe.status, detail: probe.detail };
      }),
    );
    x.page(200, renderDashboard(cards, { version: VERSION, user: identity.via === 'password' ? identity.user : undefined }));
  }

  async function viewer(x: Exchange, name: string): Promise<void> {
    const ticket = new URL(x.req.url ?? '/', 'http://x').searchParams.get('ticket');
    if (ticket !== null) return ticketViewer(x, name, ticket);
    const identity = await identify(x);
    if (!identity) return;
    const desktop = ctx.directory.get(name);
    if (!desktop) return x.page(404, renderNotice('No such desktop', `There is no desktop named '${name}'`));
    const access = accessTo(desktop, identity);
    if (access === 'none') {
      ctx.logger.warn({ remote: x.from.address, user: identity.user, desktop: name, status: 403 }, 'page refused');
      return x.page(403, renderNotice('Not allowed', `${identity.user} may not open desktop '${name}'`));
    }
    x.page(200, renderViewer(desktop, { viewOnly: access === 'view' }));
  }

  /** A ticket link opens the viewer without a login; the ticket is used up by the WebSocket, not here. */
  async function ticketViewer(x: Exchange, name: string, token: string): Promise<void> {
    try {
      // The ticket first: without one, a stranger must not learn which desktop names exist.
      if (!auth.tickets) throw new GatewayError('DG_ERR_UNAUTHENTICATED', 'Tickets are not enabled on this gateway');
      const ticket = await auth.tickets.check(token, name);
      if (await auth.tickets.used(ticket)) throw new GatewayError('DG_ERR_UNAUTHENTICATED', 'The ticket has already been used: ask for a new one');
      const desktop = ctx.directory.get(name);
      if (!desktop) return x.page(404, renderNotice('No such desktop', `There is no desktop named '${name}'`));
      x.page(200, renderViewer(desktop, { viewOnly: ticket.viewOnly }));
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      ctx.logger.warn({ remote: x.from.address, desktop: name, status: err.status, reason: err.message }, 'ticket refused');
      x.page(err.status, renderNotice('This link cannot be used', err.message));
    }
  }

  return function handleRequest(req, res) {
    const from = auth.proxy.describe(req);
    // Under TLS (ours or a trusted proxy's), browsers should never come back over plain HTTP.
    if (from.secure) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    const badHost = refuseHost(from);
    if (badHost) {
      ctx.logger.warn({ remote: from.address, host: from.host, status: 403, reason: badHost }, 'request refused');
      return text(res, 403, badHost);
    }
    const path = decodePath(req.url ?? '/');
    if (path === undefined) return text(res, 400, 'Malformed URL');
    const page = (status: number, body: string, headers: Headers = {}): void =>
      send(res, status, 'text/html; charset=utf-8', body, { ...pageHeaders, ...headers });
    route({ req, res, from, page }, path).catch((err: unknown) => {
      ctx.logger.error({ err, url: withoutTicket(req.url) }, 'request failed');
      if (!res.headersSent) text(res, 500, 'Internal error');
      else res.destroy();
    });
  };
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  text(res, 405, 'Method not allowed', { Allow: allow });
}

/** The request path, percent-decoded, without the query; undefined if it cannot be decoded. */
export function decodePath(url: string): string | undefined {
  const raw = url.split('?', 1)[0] ?? '/';
  try {
    const path = decodeURIComponent(raw);
    return path.startsWith('/') ? path : undefined;
  } catch {
    return undefined;
  }
}
