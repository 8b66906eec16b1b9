/** Password mode's login form and logout, with failed-login throttling per address. */
import type { Auth } from '../auth/auth.js';
import { isForeignPost } from '../auth/origin.js';
import { errors, type GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import type { Coordinator } from '../coordination/coordinator.js';
import { renderLogin, safeNext } from './pages.js';
import { BodyConsumed, BodyTooLarge, mediaType, problem, readForm, redirect } from './respond.js';
import type { Exchange } from './routes.js';

const MAX_FORM_BYTES = 8 * 1024;

export async function handleLogin(x: Exchange, auth: Auth, gateway: object): Promise<void> {
  // A page on another site must not be able to log a browser in (login CSRF).
  if (isForeignPost(x.req, x.from)) return refuse(x, errors.foreignPost());
  if (mediaType(x.req) !== 'application/x-www-form-urlencoded') return refuse(x, errors.notAForm());
  let form: URLSearchParams;
  try {
    form = await readForm(x.req, MAX_FORM_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLarge) return refuse(x, errors.formTooLarge());
    // The host's mistake, not the user's: no password was checked, so none counts as failed.
    if (err instanceof BodyConsumed) return refuse(x, errors.bodyReadByHost());
    throw err;
  }
  const user = form.get('user') ?? '';
  const next = safeNext(form.get('next'));
  const result = await auth.login(x.from, user, form.get('password') ?? '');
  if (result.ok) {
    events.loggedIn.publish(() => ({ gateway, remote: x.from.address, user }));
    return redirect(x.res, `${x.root}${next}`, { 'Set-Cookie': result.setCookie });
  }
  const error = result.busy
    ? errors.busyCheckingLogins()
    : result.retryAfter > 0
      ? errors.loginsBlocked(Math.ceil(result.retryAfter / 60))
      : errors.wrongPassword();
  x.refused(error.of(user.slice(0, 128)));
  events.loginFailed.publish(() => ({ gateway, remote: x.from.address, user: user.slice(0, 128) }));
  const retry = result.busy || result.retryAfter > 0 ? { 'Retry-After': String(result.retryAfter) } : undefined;
  x.page(error.status, renderLogin({ root: x.root, next, user, error: error.message }), retry);
}

/** Logging out revokes the login and ends the sessions opened with it, in every tab, on every node. */
export async function handleLogout(x: Exchange, auth: Auth, coordinator: Coordinator): Promise<void> {
  if (isForeignPost(x.req, x.from)) return refuse(x, errors.foreignPost());
  const { login, setCookie } = await auth.logout(x.req, x.from);
  if (login) await coordinator.loggedOut(login.id);
  redirect(x.res, `${x.root}login`, { 'Set-Cookie': setCookie });
}

function refuse(x: Exchange, error: GatewayError): void {
  x.refused(error);
  problem(x.res, error);
}
