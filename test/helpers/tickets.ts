/** Tickets for tests: an API key with the hash the config holds, and tickets asked for through `POST /api/tickets`. */
import { randomBytes } from 'node:crypto';
import { hashApiKey } from '../../src/auth/auth.js';
import type { TicketRequest } from '../../src/auth/tickets.js';

export interface ApiKey {
  /** What a management console sends as `Authorization: Bearer KEY`. */
  key: string;
  /** What `tickets.apiKeys` holds. */
  hash: string;
}

export function newApiKey(): ApiKey {
  const key = `dgk_${randomBytes(32).toString('base64url')}`;
  return { key, hash: hashApiKey(key) };
}

export interface IssuedTicket {
  ticket: string;
  /** The viewer URL, relative to the gateway. */
  url: string;
  expiresAt: string;
}

/** A ticket as a console gets it; fails unless the gateway answers 201. */
export async function requestTicket(httpUrl: string, apiKey: ApiKey, request: TicketRequest): Promise<IssuedTicket> {
  const res = await fetch(`${httpUrl}/api/tickets`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${apiKey.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(request),
  });
  if (res.status !== 201) throw new Error(`POST /api/tickets answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as IssuedTicket;
}
