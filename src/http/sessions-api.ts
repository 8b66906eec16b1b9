/**
 * The admin API, for the users of the `admins` rule (or a console holding an API key):
 *   GET    /api/sessions       every live session on every node
 *   DELETE /api/sessions/ID    end one (close 4409, "Ended by an administrator (NAME)")
 *   PATCH  /api/sessions/ID    {"role": "control" | "view"}: change its role
 * Every action is logged with who did it. A browser's change must come from the gateway's own
 * pages: the login cookie is SameSite=Strict, and a foreign Origin is refused besides.
 */
import { z } from 'zod';
import type { Identity } from '../auth/identity.js';
import { isForeignPost } from '../auth/origin.js';
import type { SessionRecord } from '../coordination/store.js';
import { StoreUnavailable } from '../coordination/store.js';
import { errors, GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import { BodyConsumed, BodyTooLarge, json, mediaType, readJson } from './respond.js';
import type { Exchange, RoutesContext } from './routes.js';

const roleChange = z.strictObject({ role: z.enum(['control', 'view'], { error: 'expected "control" or "view"' }) });

/** The public shape of a session in the list. */
function describe(record: SessionRecord): Record<string, unknown> {
  return {
    id: record.id,
    desktop: record.desktop,
    user: record.user,
    role: record.role,
    sharing: record.sharing,
    switchable: record.switchable,
    node: record.node,
    remoteAddress: record.remoteAddress,
    since: new Date(record.since).toISOString(),
    bytesToUpstream: record.bytesToUpstream,
    bytesToBrowser: record.bytesToBrowser,
  };
}

function fail(x: Exchange, error: GatewayError, headers: Record<string, string> = {}): void {
  x.refused(error);
  json(x.res, error.status, { error: error.code, message: error.message }, headers);
}

/** Who the administrator is: a user of the `admins` rule, or `api-key` for a console's key. */
async function administrator(x: Exchange, ctx: RoutesContext): Promise<string | GatewayError> {
  const { auth, coordinator } = ctx;
  if (x.req.headers.authorization !== undefined) {
    const retryAfter = await auth.retryAfter(x.from);
    if (retryAfter > 0) return errors.throttled();
    return auth.checkApiKey(x.req, x.from) ? 'api-key' : errors.apiKeyRequired();
  }
  const identity: Identity | undefined = await auth.identify(x.req, x.from);
  if (!identity) return auth.mode === 'password' ? errors.logInFirst() : errors.authenticationRequired();
  if (!coordinator.isAdmin(identity)) return errors.notAdmin(identity.user).of(identity.user);
  return identity.user;
}

/** `id`: the session the path names, for DELETE and PATCH. */
export async function handleSessionsRequest(x: Exchange, ctx: RoutesContext, id: string | undefined): Promise<void> {
  const { method } = x.req;
  try {
    const admin = await administrator(x, ctx);
    if (typeof admin !== 'string') return fail(x, admin, admin.code === 'DG_ERR_UNAUTHENTICATED' ? { 'WWW-Authenticate': 'Bearer' } : {});
    if (method !== 'GET' && method !== 'HEAD' && isForeignPost(x.req, x.from)) return fail(x, errors.foreignPost().of(admin));
    const { coordinator } = ctx;
    if (id === undefined) {
      const sessions = await coordinator.store.sessions();
      sessions.sort((a, b) => a.since - b.since);
      return json(x.res, 200, { node: coordinator.store.node, sessions: sessions.map(describe) });
    }
    if (method === 'DELETE') {
      const record = await coordinator.endSession(id, admin);
      events.adminAction.publish(() => ({
        gateway: ctx.gateway,
        remote: x.from.address,
        user: admin,
        action: 'end',
        session: id,
        desktop: record.desktop,
        of: record.user,
      }));
      return json(x.res, 202, { ended: id });
    }
    if (mediaType(x.req) !== 'application/json') return fail(x, errors.notJson());
    const parsed = roleChange.safeParse(await readJson(x.req, 1024));
    if (!parsed.success) return fail(x, errors.badField('role', parsed.error.issues[0]?.message ?? 'invalid'));
    const { role } = parsed.data;
    const record = await coordinator.setRole(id, role, admin);
    events.adminAction.publish(() => ({
      gateway: ctx.gateway,
      remote: x.from.address,
      user: admin,
      action: `role ${role}`,
      session: id,
      desktop: record.desktop,
      of: record.user,
    }));
    return json(x.res, 202, { session: id, role });
  } catch (err) {
    if (err instanceof StoreUnavailable) return fail(x, errors.storeUnavailable());
    if (err instanceof BodyTooLarge) return fail(x, errors.bodyTooLarge(1024));
    if (err instanceof BodyConsumed) return fail(x, errors.bodyReadByHost());
    if (err instanceof SyntaxError) return fail(x, errors.bodyNotJson());
    if (err instanceof GatewayError) return fail(x, err);
    throw err;
  }
}
