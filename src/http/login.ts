/** Password mode's login form and logout, with failed-login throttling per address. */
import type { Auth } from '../auth/auth.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../observe/log.js';
import type { SessionManager } from '../sessions/session-manager.js';
import { isForeignPost } from '../auth/origin.js';
import { BodyTooLarge, mediaType, readBody, redirect, text } from './respond.js';
import { renderLogin, safeNext } from './pages.js';
import type { Exchange } from './routes.js';

const MAX_FORM_BYTES = 8 * 1024;

export async function handleLogin(x: Exchange, auth: Auth, logger: Logger): Promise<void> {
  // A page on another site must not be able to log a browser in (login CSRF).
  if (isForeignPost(x.req, x.from)) return text(x.res, 403, 'Cross-site form posts are not accepted');
  if (mediaType(x.req) !== 'application/x-www-form-urlencoded') return text(x.res, 415, 'Expected a form (application/x-www-form-urlencoded)');
  let form: URLSearchParams;
  try {
    form = new URLSearchParams(await readBody(x.req, MAX_FORM_BYTES));
  } catch (err) {
    if (err instanceof BodyTooLarge) return text(x.res, 413, 'The form is too large');
    throw err;
  }
  const user = form.get('user') ?? '';
  const next = safeNext(form.get('next'));
  const result = await auth.login(x.from, user, form.get('password') ?? '');
  if (result.ok) {
    logger.info({ remote: x.from.address, user }, 'login');
    return redirect(x.res, next, { 'Set-Cookie': result.setCookie });
  }
  const status = result.busy ? 503 : result.retryAfter > 0 ? 429 : 401;
  logger.warn({ remote: x.from.address, user: user.slice(0, 128), status }, 'login refused');
  if (result.busy) {
    const error = 'The gateway is busy checking other logins: try again in a moment';
    return x.page(503, renderLogin({ next, user, error }), { 'Retry-After': String(result.retryAfter) });
  }
  if (result.retryAfter > 0) {
    const minutes = Math.ceil(result.retryAfter / 60);
    const error = `Too many failed logins from your address: try again in ${minutes} minute${minutes === 1 ? '' : 's'}`;
    return x.page(429, renderLogin({ next, user, error }), { 'Retry-After': String(result.retryAfter) });
  }
  x.page(401, renderLogin({ next, user, error: 'Wrong user name or password' }));
}

/** Logging out revokes the login and ends the sessions opened with it, in every tab. */
export async function handleLogout(x: Exchange, auth: Auth, sessions: SessionManager): Promise<void> {
  if (isForeignPost(x.req, x.from)) return text(x.res, 403, 'Cross-site form posts are not accepted');
  const { login, setCookie } = await auth.logout(x.req, x.from);
  if (login) sessions.endWhere((s) => s.identity.login === login.id, new GatewayError('DG_ERR_UNAUTHENTICATED', 'You logged out'));
  redirect(x.res, '/login', { 'Set-Cookie': setCookie });
}
