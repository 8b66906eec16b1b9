/**
 * The HTTP side of the gateway: dashboard, viewer, health, and the browser code (ours
 * and noVNC's). The WebSocket endpoint lives in gateway.ts (the upgrade path).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DesktopDirectory } from '../desktops/directory.js';
import type { DesktopStatus } from '../desktops/status.js';
import { VERSION } from '../version.js';
import { renderDashboard, renderViewer } from './pages.js';
import { serveDirectory } from './static-files.js';

// This file runs from src/web (tests) and dist/web (built): both are two levels below the root.
const STATIC_ROOT = fileURLToPath(new URL('../../src/web/static/', import.meta.url));
// noVNC's package exports core/rfb.js; its root holds core/ and vendor/.
const NOVNC_ROOT = dirname(dirname(createRequire(import.meta.url).resolve('@novnc/novnc')));

/** Pages load scripts and styles from this origin only; the viewer talks to this origin only. */
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
    "frame-ancestors 'self'; base-uri 'none'; form-action 'self'; object-src 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

export interface RoutesContext {
  directory: DesktopDirectory;
  status: DesktopStatus;
  /** Ready to take sessions: listening and not shutting down. */
  ready(): boolean;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createRequestHandler(ctx: RoutesContext): RequestHandler {
  const serveStatic = serveDirectory(STATIC_ROOT, 'no-cache');
  const serveNoVnc = serveDirectory(NOVNC_ROOT, 'public, max-age=3600');

  async function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === '/') return dashboard(res);
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') return ctx.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not ready' });
    if (path.startsWith('/view/')) return viewer(res, path.slice('/view/'.length));
    if (path.startsWith('/static/') && (await serveStatic(req, res, path.slice('/static/'.length)))) return;
    if (/^\/novnc\/(core|vendor)\//.test(path) && (await serveNoVnc(req, res, path.slice('/novnc/'.length)))) return;
    text(res, 404, 'Not found');
  }

  async function dashboard(res: ServerResponse): Promise<void> {
    const desktops = ctx.directory.list();
    const cards = await Promise.all(
      desktops.map(async (d) => {
        const probe = await ctx.status.check(d);
        return { name: d.name, description: d.description, status: probe.status, detail: probe.detail };
      }),
    );
    html(res, 200, renderDashboard(cards, { version: VERSION }));
  }

  function viewer(res: ServerResponse, name: string): void {
    const desktop = ctx.directory.get(name);
    if (!desktop) return text(res, 404, `There is no desktop named '${name}'`);
    html(res, 200, renderViewer(desktop, { viewOnly: false }));
  }

  return function handleRequest(req, res) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return text(res, 405, 'Method not allowed');
    }
    const path = decodePath(req.url ?? '/');
    if (path === undefined) return text(res, 400, 'Malformed URL');
    route(req, res, path).catch((err: unknown) => {
      if (!res.headersSent) text(res, 500, 'Internal error');
      else res.destroy(err instanceof Error ? err : undefined);
    });
  };
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

function html(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'text/html; charset=utf-8', body, PAGE_HEADERS);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body), { 'Cache-Control': 'no-store' });
}

function text(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'text/plain; charset=utf-8', `${body}\n`, { 'X-Content-Type-Options': 'nosniff' });
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string>): void {
  res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
