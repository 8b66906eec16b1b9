/**
 * What a viewer page or a WebSocket upgrade asks for, parsed once: one configured desktop
 * or one ad-hoc `host:port`, and the ticket it carries, if any. Malformed requests are
 * refused here with the catalogue's 400s, before anything is looked up.
 */
import { DESKTOP_NAME } from '../config/names.js';
import { parseHostPort, type HostPort } from '../net/host-port.js';
import { errors } from '../errors.js';

export type Wanted = { readonly kind: 'desktop'; readonly name: string } | ({ readonly kind: 'target' } & HostPort);

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

/** The WebSocket endpoint's query: `?desktop=NAME` or `?target=HOST:PORT`, `&ticket=T` with a desktop, `&view=KEY`. */
export function parseUpgradeQuery(query: URLSearchParams): SessionRequest {
  const desktops = query.getAll('desktop');
  const targets = query.getAll('target');
  const tickets = query.getAll('ticket');
  const viewKey = parseViewKey(query);
  if (tickets.length > 0) {
    if (tickets.length !== 1 || desktops.length !== 1 || targets.length !== 0) throw errors.ticketForOneDesktop();
    return { wanted: desktop(desktops[0] as string), ticket: tickets[0], viewKey };
  }
  if (desktops.length + targets.length !== 1) throw errors.notOneTarget();
  if (desktops[0] !== undefined) return { wanted: desktop(desktops[0]), ticket: undefined, viewKey };
  const target = parseHostPort(targets[0] as string);
  if (!target) throw errors.malformedTarget();
  return { wanted: { kind: 'target', ...target }, ticket: undefined, viewKey };
}

/** The viewer page `/view/NAME[?ticket=T]`. */
export function parseViewerRequest(name: string, query: URLSearchParams): SessionRequest {
  return { wanted: desktop(name), ticket: query.get('ticket') ?? undefined };
}

function desktop(name: string): Wanted {
  if (!DESKTOP_NAME.test(name)) throw errors.malformedDesktopName();
  return { kind: 'desktop', name };
}
