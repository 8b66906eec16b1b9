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

/** The body was read before the gateway got the request (a host's body parser), and what it made of it is not in `req.body`. */
export class BodyConsumed extends Error {}

/** A form body (application/x-www-form-urlencoded), at most `limit` bytes. */
export async function readForm(req: IncomingMessage, limit: number): Promise<URLSearchParams> {
  const body = await readBody(req, limit);
  if (typeof body === 'string') return new URLSearchParams(body);
  // A urlencoded parser's object: { user: 'alice', … }; an extended one may make a repeated field an array.
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BodyConsumed();
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(body)) {
    const first: unknown = Array.isArray(value) ? value[0] : value;
    if (typeof first === 'string') form.append(name, first);
  }
  return form;
}

/** A JSON body, parsed, at most `limit` bytes; a SyntaxError if it is not JSON. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  return typeof body === 'string' ? JSON.parse(body) : body;
}

/**
 * The request body as text, at most `limit` bytes; larger bodies reject with BodyTooLarge.
 * Mounted in a host application, the body may have been read already by its body parser:
 * then what the parser left in `req.body` (text, bytes, or the object it parsed), or
 * BodyConsumed when it left nothing there.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<string | object> {
  if (alreadyRead(req)) return parsedBody(req, limit);
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

/**
 * Whether something read from the request before the gateway: reading it now would give an
 * empty or partial body. Express's body parsers also mark the request with `_body`. A body
 * parser that did not match the content type leaves the stream untouched, even where it sets
 * `req.body = {}` (Express 4): the stream is then read as usual.
 */
function alreadyRead(req: IncomingMessage): boolean {
  return req.readableEnded || req.readableDidRead || (req as { _body?: unknown })._body === true;
}

/** What a host's body parser left in `req.body`, held to the same limit as a body the gateway reads. */
function parsedBody(req: IncomingMessage, limit: number): string | object {
  const body = (req as { body?: unknown }).body;
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    if (Buffer.byteLength(body) > limit) throw new BodyTooLarge();
    return body.toString();
  }
  if (typeof body !== 'object' || body === null) throw new BodyConsumed();
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(body));
  } catch {
    throw new BodyConsumed(); // cyclic, or not data at all: nothing the gateway can read
  }
  if (size > limit) throw new BodyTooLarge();
  return body;
}

/** The media type of a request body, without parameters. */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}
