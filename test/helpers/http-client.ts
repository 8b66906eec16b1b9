/**
 * One HTTP(S) request from a test, with what fetch() cannot do: a CA for a self-signed
 * certificate, a chosen local address, and every Set-Cookie header as sent.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

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
  localAddress?: string;
}

export function send(url: string, options: RequestOptions = {}): Promise<Reply> {
  const { body, ...rest } = options;
  const settings = { ...rest, method: options.method ?? (body === undefined ? 'GET' : 'POST'), agent: false };
  return new Promise((resolve, reject) => {
    const collect = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req = url.startsWith('https:') ? httpsRequest(url, settings, collect) : httpRequest(url, settings, collect);
    req.on('error', reject);
    req.end(body);
  });
}

/** A form body as a browser encodes it. */
export function form(fields: Record<string, string>): { body: string; headers: Record<string, string> } {
  return { body: new URLSearchParams(fields).toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
}
