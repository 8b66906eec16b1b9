/**
 * `POST /api/tickets`: a management console, holding an API key, asks for a one-time
 * ticket that opens one desktop for one user, and embeds the returned URL.
 */
import { z } from 'zod';
import { PRINCIPAL_NAME } from '../auth/identity.js';
import { BodyTooLarge, json, mediaType, readBody } from './respond.js';
import { viewerHref } from './pages.js';
import type { Exchange, RoutesContext } from './routes.js';

const MAX_BODY_BYTES = 4 * 1024;

const ticketRequest = z.strictObject({
  desktop: z.string({ error: 'expected the name of a desktop' }),
  user: z.string({ error: 'expected a user name' }).regex(PRINCIPAL_NAME, 'expected a user name: 1-128 characters, no spaces, commas or control characters'),
  viewOnly: z.boolean({ error: 'expected true or false' }).optional(),
  ttlSeconds: z.number({ error: 'expected a number of seconds' }).int('expected a whole number of seconds').min(1, 'expected at least 1 second').optional(),
});

function fail(x: Exchange, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
  json(x.res, status, { error, message }, headers);
}

export async function handleTicketRequest(x: Exchange, ctx: RoutesContext): Promise<void> {
  const { auth, logger } = ctx;
  const tickets = auth.tickets;
  if (!tickets?.canIssue || ctx.config.tickets.apiKeys.length === 0) {
    return fail(x, 404, 'DG_ERR_NOT_ENABLED', 'This gateway does not issue tickets (configure tickets and tickets.apiKeys)');
  }
  const retryAfter = auth.retryAfter(x.from);
  if (retryAfter > 0) {
    return fail(x, 429, 'DG_ERR_THROTTLED', 'Too many failed attempts from this address', { 'Retry-After': String(retryAfter) });
  }
  if (!auth.checkApiKey(x.req, x.from)) {
    logger.warn({ remote: x.from.address, status: 401 }, 'ticket request refused: no or wrong API key');
    return fail(x, 401, 'DG_ERR_UNAUTHENTICATED', 'Send a valid API key as Authorization: Bearer KEY', { 'WWW-Authenticate': 'Bearer' });
  }
  if (mediaType(x.req) !== 'application/json') return fail(x, 415, 'DG_ERR_BAD_REQUEST', 'Expected Content-Type: application/json');
  let body: unknown;
  try {
    body = JSON.parse(await readBody(x.req, MAX_BODY_BYTES));
  } catch (err) {
    if (err instanceof BodyTooLarge) return fail(x, 413, 'DG_ERR_BAD_REQUEST', `The request body is larger than ${MAX_BODY_BYTES} bytes`);
    if (err instanceof SyntaxError) return fail(x, 400, 'DG_ERR_BAD_REQUEST', 'The request body is not valid JSON');
    throw err;
  }
  const parsed = ticketRequest.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return fail(x, 400, 'DG_ERR_BAD_REQUEST', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`);
  }
  const request = parsed.data;
  if (!ctx.directory.get(request.desktop)) return fail(x, 404, 'DG_ERR_UNKNOWN_DESKTOP', `There is no desktop named '${request.desktop}'`);
  if ((request.ttlSeconds ?? 0) > tickets.maxTtlSeconds) {
    return fail(x, 400, 'DG_ERR_BAD_REQUEST', `ttlSeconds: expected at most ${tickets.maxTtlSeconds}`);
  }
  const { token, ticket } = await tickets.issue(request);
  logger.info(
    { remote: x.from.address, desktop: ticket.desktop, user: ticket.user, viewOnly: ticket.viewOnly, ticket: ticket.id, expiresAt: ticket.expiresAt },
    'ticket issued',
  );
  json(x.res, 201, { ticket: token, url: ticketUrl(ticket.desktop, token), expiresAt: ticket.expiresAt.toISOString() });
}

/** The viewer URL a ticket opens, relative to the gateway. */
export function ticketUrl(desktop: string, token: string): string {
  return `${viewerHref(desktop)}?ticket=${encodeURIComponent(token)}`;
}
