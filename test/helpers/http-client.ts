/**
 * One HTTP(S) request from a test, with what fetch() cannot do: the path sent exactly as
 * written (`..` and percent-escapes too, for traversal tests), a CA for a self-signed
 * certificate, a chosen local address, and every Set-Cookie header as sent. No keep-alive.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions as NodeRequestOptions } from 'node:https';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as the body; the method defaults to POST when there is one. */
  body?: string;
  /** Trust this certificate (https only). */
  ca?: Buffer;
  /** Source address on loopback, e.g. 127.0.0.2. */
  localAddress?: string;
}

/** scheme, host[:port], and the rest (path and query) untouched. */
const URL_PARTS = /^(https?):\/\/([^/?#]+)(.*)$/;

export function send(url: string, options: RequestOptions = {}): Promise<Reply> {
  const parts = URL_PARTS.exec(url);
  if (!parts) return Promise.reject(new Error(`send() takes an http:// or https:// URL, not ${url}`));
  const [, scheme, authority, path] = parts as unknown as [string, string, string, string];
  // Only the origin goes through URL: parsing the whole would resolve `..` and `%2e%2e`.
  const { hostname, port } = new URL(`${scheme}://${authority}`);
  const { body, ...rest } = options;
  const settings: NodeRequestOptions = {
    ...rest,
    hostname,
    port: port || undefined,
    path: path || '/',
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    agent: false,
  };
  return new Promise((resolve, reject) => {
    const collect = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req = scheme === 'https' ? httpsRequest(settings, collect) : httpRequest(settings, collect);
    req.on('error', reject);
    req.end(body);
  });
}

/** A form body as a browser encodes it. */
export function form(fields: Record<string, string>): { body: string; headers: Record<string, string> } {
  return { body: new URLSearchParams(fields).toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
}
