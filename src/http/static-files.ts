/**
 * Serves files below one directory, and nothing outside it: no `..`, no dot-files, no
 * encoded separators, no symlinked escapes, files only, known types only.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';
import { pipeline } from 'node:stream';

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  // For an operator's directory (web): noVNC's app has sounds, fonts and images of these kinds.
  '.txt': 'text/plain; charset=utf-8',
  '.gif': 'image/gif',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.oga': 'audio/ogg',
  '.mp3': 'audio/mpeg',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
};

export type ServeFile = (req: IncomingMessage, res: ServerResponse, relativePath: string) => Promise<boolean>;

/** Returns a function that serves `relativePath` (already URL-decoded) or answers false; `headers` go on each file. */
export function serveDirectory(root: string, cacheControl: string, headers: Record<string, string> = {}): ServeFile {
  const realRoot = realpath(root);
  return async function serveFile(req, res, relativePath) {
    const segments = relativePath.split('/');
    const unsafe = segments.some((s) => s === '' || s.startsWith('.') || s.includes('\\') || s.includes('\0'));
    const type = CONTENT_TYPES[extname(relativePath)];
    if (unsafe || !type) return false;
    const base = await realRoot;
    const file = await realpath(join(base, ...segments)).catch(() => undefined);
    if (!file?.startsWith(base + sep)) return false;
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return false;
    res.writeHead(200, {
      'Content-Type': type,
      'Content-Length': info.size,
      'Cache-Control': cacheControl,
      'Last-Modified': info.mtime.toUTCString(),
      'X-Content-Type-Options': 'nosniff',
      ...headers,
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    whenItsTurn(req, res, function sendFile() {
      // pipeline() closes the file when the response is cut short, and cuts the response
      // short when the file cannot be read (its length was promised already).
      pipeline(createReadStream(file), res, ignoreError);
    });
    return true;
  };
}

/**
 * Run `send` once the response may write to the connection. A response queued behind
 * others on a pipelined connection has no socket yet: it waits, holding no file, and is
 * forgotten if the connection closes first (Node then closes the queued requests, never
 * their responses). Its headers are queued at once so that they count against the
 * connection's back-pressure: Node stops reading a client's pipelined requests while too
 * much is waiting to be sent to it.
 */
function whenItsTurn(req: IncomingMessage, res: ServerResponse, send: () => void): void {
  if (res.socket) return send();
  res.flushHeaders();
  const onSocket = (): void => {
    req.off('close', onClose);
    send();
  };
  const onClose = (): void => {
    res.off('socket', onSocket);
  };
  res.once('socket', onSocket);
  req.once('close', onClose);
}

/** pipeline() has destroyed both streams by then: nothing is left to clean up or tell. */
function ignoreError(): void {}
