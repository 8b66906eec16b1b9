/**
 * Who is asking, and what they may do with a desktop. An identity comes from a login
 * cookie, trusted proxy headers, a one-time ticket, or (mode `none`, loopback only) from
 * nowhere at all; the desktop rules then decide between full control, view-only and no.
 */

export interface Identity {
  readonly user: string;
  readonly groups: readonly string[];
  /** How the gateway knows: the mode, or `ticket`. */
  readonly via: 'none' | 'password' | 'header' | 'ticket';
  /** Mode `password`: the id of the login (cookie) it came with; logging out ends its sessions. */
  readonly login?: string | undefined;
  /** Mode `password`: which password the login was made with; a new one ends its sessions. */
  readonly credential?: string | undefined;
}

/** The user of mode `none`: everyone on loopback. */
export const ANONYMOUS: Identity = Object.freeze({ user: 'anonymous', groups: Object.freeze([]), via: 'none' });

export interface Principals {
  readonly users: readonly string[];
  readonly groups: readonly string[];
}

export interface DesktopRules {
  /** Who may open the desktop; unset: every authenticated user. */
  readonly allow?: Principals | undefined;
  /** Who may only watch it. */
  readonly viewOnly?: Principals | undefined;
}

export type Access = 'full' | 'view' | 'none';

/** What this identity may do with a desktop under its rules. */
export function accessTo(desktop: DesktopRules, identity: Identity): Access {
  if (desktop.allow && !isNamedIn(desktop.allow, identity)) return 'none';
  return desktop.viewOnly && isNamedIn(desktop.viewOnly, identity) ? 'view' : 'full';
}

/** Whether a rule names this identity, by user or by one of its groups. */
export function isNamedIn(principals: Principals, identity: Identity): boolean {
  return principals.users.includes(identity.user) || identity.groups.some((group) => principals.groups.includes(group));
}
