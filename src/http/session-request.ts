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
}

/** The WebSocket endpoint's query: `?desktop=NAME` or `?target=HOST:PORT`, `&ticket=T` with a desktop. */
export function parseUpgradeQuery(query: URLSearchParams): SessionRequest {
  const desktops = query.getAll('desktop');
  const targets = query.getAll('target');
  const tickets = query.getAll('ticket');
  if (tickets.length > 0) {
    if (tickets.length !== 1 || desktops.length !== 1 || targets.length !== 0) throw errors.ticketForOneDesktop();
    return { wanted: desktop(desktops[0] as string), ticket: tickets[0] };
  }
  if (desktops.length + targets.length !== 1) throw errors.notOneTarget();
  if (desktops[0] !== undefined) return { wanted: desktop(desktops[0]), ticket: undefined };
  const target = parseHostPort(targets[0] as string);
  if (!target) throw errors.malformedTarget();
  return { wanted: { kind: 'target', ...target }, ticket: undefined };
}

/** The viewer page `/view/NAME[?ticket=T]`. */
export function parseViewerRequest(name: string, query: URLSearchParams): SessionRequest {
  return { wanted: desktop(name), ticket: query.get('ticket') ?? undefined };
}

function desktop(name: string): Wanted {
  if (!DESKTOP_NAME.test(name)) throw errors.malformedDesktopName();
  return { kind: 'desktop', name };
}
