/** Small helpers for answering HTTP requests: one place for content types, lengths and headers. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayError } from '../errors.js';

export type Headers = Record<string, string | string[]>;

export function send(res: ServerResponse, status: number, type: string, body: string, headers: Headers = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Headers = {}): void {
  send(res, status, 'application/json', JSON.stringify(body), { 'Cache-Control': 'no-store', ...headers });
}

export function text(res: ServerResponse, status: number, body: string, headers: Headers = {}): void {
  send(res, status, 'text/plain; charset=utf-8', `${body}\n`, { 'X-Content-Type-Options': 'nosniff', ...headers });
}

/** A catalogue error as a plain-text answer: its status and its sentence. */
export function problem(res: ServerResponse, error: GatewayError, headers: Headers = {}): void {
  text(res, error.status, error.message, headers);
}

/** 303: after a form POST the browser follows with a GET. */
export function redirect(res: ServerResponse, location: string, headers: Headers = {}): void {
  res.writeHead(303, { ...headers, Location: asciiLocation(location), 'Content-Length': 0, 'Cache-Control': 'no-store' });
  res.end();
}

/** A header carries bytes, not text: anything beyond printable ASCII goes as percent-encoded UTF-8, as browsers send it. */
function asciiLocation(location: string): string {
  return location.replace(/[^\x21-\x7e]+/g, (run) => Buffer.from(run).toString('hex').replace(/../g, '%$&').toUpperCase());
}

export class BodyTooLarge extends Error {}

/** The request body as text, at most `limit` bytes; larger bodies reject with BodyTooLarge. */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new BodyTooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The media type of a request body, without parameters. */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}
