/**
 * Serves files below one directory, and nothing outside it: no `..`, no dot-files, no
 * encoded separators, no symlinked escapes, files only, known types only.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';

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
};

export type ServeFile = (req: IncomingMessage, res: ServerResponse, relativePath: string) => Promise<boolean>;

/** Returns a function that serves `relativePath` (already URL-decoded) or answers false. */
export function serveDirectory(root: string, cacheControl: string): ServeFile {
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
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
    return true;
  };
}
