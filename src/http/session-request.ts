/**
 * What a viewer page or a WebSocket upgrade asks for, parsed once: one configured desktop
 * or one ad-hoc `host:port` or `unix:/path`, and the ticket it carries, if any. Malformed
 * requests are refused here with the catalogue's 400s, before anything is looked up.
 */
import { DESKTOP_NAME, TOKEN } from '../config/names.js';
import { parseAddress, type VncAddress } from '../net/address.js';
import { errors } from '../errors.js';

export type Wanted = { readonly kind: 'desktop'; readonly name: string } | ({ readonly kind: 'target' } & VncAddress);

export interface SessionRequest {
  readonly wanted: Wanted;
  /** A one-time ticket, which opens one desktop without a login. */
  readonly ticket: string | undefined;
  /** The viewer's presence key (`view`): its presence channel opens with it (presence.ts). */
  readonly viewKey?: string | undefined;
}

/** A presence key: random, made by the viewer, at least 128 bits. */
export const VIEW_KEY = /^[A-Za-z0-9_-]{22,128}$/;

/** The `view` parameter, when there is one. */
export function parseViewKey(query: URLSearchParams): string | undefined {
  const keys = query.getAll('view');
  if (keys.length === 0) return undefined;
  if (keys.length > 1 || !VIEW_KEY.test(keys[0] as string)) throw errors.malformedViewKey();
  return keys[0];
}

/**
 * The WebSocket endpoint's query: `?desktop=NAME`, `?token=TOKEN` (websockify's name for it)
 * or `?target=HOST:PORT` (or `unix:/PATH`); `&ticket=T` with a desktop or token; `&view=KEY`. With none of the
 * three, `defaultDesktop` if the gateway has one, as a single-target websockify answers any URL.
 */
export function parseUpgradeQuery(query: URLSearchParams, defaultDesktop?: string): SessionRequest {
  const desktops = query.getAll('desktop');
  const tokens = query.getAll('token');
  const targets = query.getAll('target');
  const tickets = query.getAll('ticket');
  const viewKey = parseViewKey(query);
  const named = (): Wanted => (desktops[0] !== undefined ? desktop(desktops[0]) : token(tokens[0] as string));
  if (tickets.length > 0) {
    if (tickets.length !== 1 || desktops.length + tokens.length !== 1 || targets.length !== 0) throw errors.ticketForOneDesktop();
    return { wanted: named(), ticket: tickets[0], viewKey };
  }
  const asked = desktops.length + tokens.length + targets.length;
  if (asked === 0 && defaultDesktop !== undefined) return { wanted: { kind: 'desktop', name: defaultDesktop }, ticket: undefined, viewKey };
  if (asked !== 1) throw errors.notOneTarget();
  if (targets.length === 0) return { wanted: named(), ticket: undefined, viewKey };
  const target = parseAddress(targets[0] as string);
  if (!target) throw errors.malformedTarget();
  return { wanted: { kind: 'target', ...target }, ticket: undefined, viewKey };
}

/** The viewer page `/view/NAME[?ticket=T]`; NAME may be a token, but one path segment. */
export function parseViewerRequest(name: string, query: URLSearchParams): SessionRequest {
  const wanted = DESKTOP_NAME.test(name) || name.includes('/') ? desktop(name) : token(name);
  return { wanted, ticket: query.get('ticket') ?? undefined };
}

function desktop(name: string): Wanted {
  if (!DESKTOP_NAME.test(name)) throw errors.malformedDesktopName();
  return { kind: 'desktop', name };
}

/** A token names a desktop too: one from a token file (desktops/token-files.ts). */
function token(text: string): Wanted {
  if (!TOKEN.test(text)) throw errors.malformedToken();
  return { kind: 'desktop', name: text };
}
