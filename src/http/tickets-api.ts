/**
 * `POST /api/tickets`: a management console, holding an API key, asks for a one-time
 * ticket that opens one desktop for one user, and embeds the returned URL.
 */
import { z } from 'zod';
import { userName } from '../config/names.js';
import { errors, type GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import { BodyConsumed, BodyTooLarge, json, mediaType, readJson } from './respond.js';
import { viewerHref } from './pages.js';
import type { Exchange, RoutesContext } from './routes.js';

const MAX_BODY_BYTES = 4 * 1024;

const ticketRequest = z.strictObject({
  desktop: z.string({ error: 'expected the name of a desktop' }),
  user: userName,
  viewOnly: z.boolean({ error: 'expected true or false' }).optional(),
  ttlSeconds: z.number({ error: 'expected a number of seconds' }).int('expected a whole number of seconds').min(1, 'expected at least 1 second').optional(),
});

/** A refusal as the API answers it: `{ error: CODE, message }` with the catalogue's status. */
function fail(x: Exchange, error: GatewayError, headers: Record<string, string> = {}): void {
  x.refused(error);
  json(x.res, error.status, { error: error.code, message: error.message }, headers);
}

export async function handleTicketRequest(x: Exchange, ctx: RoutesContext): Promise<void> {
  const { auth } = ctx;
  const tickets = auth.tickets;
  if (!tickets?.canIssue || ctx.config.tickets.apiKeys.length === 0) return fail(x, errors.ticketApiNotEnabled());
  const retryAfter = await auth.retryAfter(x.from);
  if (retryAfter > 0) return fail(x, errors.throttled(), { 'Retry-After': String(retryAfter) });
  if (!auth.checkApiKey(x.req, x.from)) return fail(x, errors.apiKeyRequired(), { 'WWW-Authenticate': 'Bearer' });
  if (mediaType(x.req) !== 'application/json') return fail(x, errors.notJson());
  let body: unknown;
  try {
    body = await readJson(x.req, MAX_BODY_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLarge) return fail(x, errors.bodyTooLarge(MAX_BODY_BYTES));
    if (err instanceof BodyConsumed) return fail(x, errors.bodyReadByHost());
    if (err instanceof SyntaxError) return fail(x, errors.bodyNotJson());
    throw err;
  }
  const parsed = ticketRequest.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return fail(x, errors.badField(issue?.path.join('.') || 'body', issue?.message ?? 'invalid'));
  }
  const request = parsed.data;
  if (!ctx.directory.get(request.desktop)) return fail(x, errors.unknownDesktop(request.desktop));
  if ((request.ttlSeconds ?? 0) > tickets.maxTtlSeconds) return fail(x, errors.badField('ttlSeconds', `expected at most ${tickets.maxTtlSeconds}`));
  const { token, ticket } = await tickets.issue(request);
  events.ticketIssued.publish(() => ({
    gateway: ctx.gateway,
    remote: x.from.address,
    desktop: ticket.desktop,
    user: ticket.user,
    viewOnly: ticket.viewOnly,
    ticket: ticket.id,
    expiresAt: ticket.expiresAt,
  }));
  json(x.res, 201, { ticket: token, url: `${x.from.prefix}/${ticketUrl(ticket.desktop, token)}`, expiresAt: ticket.expiresAt.toISOString() });
}

/** The viewer URL a ticket opens, relative to the gateway's root. */
export function ticketUrl(desktop: string, token: string): string {
  return `${viewerHref(desktop)}?ticket=${encodeURIComponent(token)}`;
}
