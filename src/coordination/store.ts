/**
 * The coordination store: the state sessions share, on one node (memory.ts) or across every
 * node behind a load balancer (redis.ts). Both keep the same contract, checked by one test
 * suite (test/helpers/store-contract.ts):
 *
 * - **Holders.** One holder per desktop at most: the exclusive session of an `exclusive`
 *   desktop, or the controller of a `controlled` one. A holder is a lease: it lasts
 *   `leaseTtlMs` unless renewed, so a dead node's desktops come free by themselves. Each
 *   acquisition gets a fencing token greater than every earlier one for that desktop; a
 *   renewal or release with an older token fails, so a node that lost its lease cannot act
 *   on it.
 * - **Sessions.** Every live session of every node, with its role and traffic, for presence,
 *   the admin list and the per-user limit. A record lasts `leaseTtlMs` unless its node
 *   refreshes it, so a dead node's sessions disappear by themselves.
 * - **Control requests.** At most one pending per desktop, with its own deadline.
 * - **Messages.** To the node that holds a session (end it, change its role, tell its viewer
 *   something), and to every node (a desktop's presence changed).
 * - **One-time ids** (used tickets, logged-out logins) and **login failures** per address.
 *
 * Calls that need the store while it cannot be reached reject with StoreUnavailable; the
 * caller refuses what it was asked, never admits it unguarded.
 */
import type { OneTimeStore } from '../auth/one-time.js';

export type Role = 'control' | 'view';

/** A live session as every node sees it. */
export interface SessionRecord {
  readonly id: string;
  readonly desktop: string;
  readonly user: string;
  readonly role: Role;
  /** The node that holds it: messages about it go there. */
  readonly node: string;
  readonly remoteAddress: string;
  /** When it was admitted (ms since the epoch). */
  readonly since: number;
  readonly bytesToUpstream: number;
  readonly bytesToBrowser: number;
  /** The digest of its viewer's presence key (see presence.ts); absent for clients without one. */
  readonly viewKey?: string | undefined;
  readonly sharing: Sharing;
  /** Whether its user may have control (their access is not view-only). */
  readonly mayControl: boolean;
  /** Whether its user is named in the desktop's `takeover` rule. */
  readonly mayTakeOver: boolean;
  /** Whether its role can change while it runs (its input passes the view-only filter). */
  readonly switchable: boolean;
}

export type Sharing = 'shared' | 'exclusive' | 'controlled';

/** Who holds a desktop. */
export interface Holder {
  readonly session: string;
  readonly user: string;
  readonly node: string;
  /** Since when this session holds it (ms since the epoch). */
  readonly since: number;
  /** The fencing token of this acquisition. */
  readonly token: number;
}

export type Claimant = Pick<Holder, 'session' | 'user' | 'node'>;

/**
 * Got (`token`, and `leasedAt`: when it was asked for, in ms since the epoch: the lease runs at
 * least `leaseTtlMs` from then), or refused naming the holder.
 */
export type Acquired =
  | { readonly ok: true; readonly token: number; readonly leasedAt: number; readonly previous?: Holder | undefined }
  | { readonly ok: false; readonly holder: Holder };

export interface AcquireOptions {
  /** Take the desktop from its holder, if any; `previous` says whom it was taken from. */
  readonly force?: boolean;
  /** With force: only from this session (a hand-over its holder agreed to); a free desktop is taken too. */
  readonly from?: string | undefined;
}

/** What a new session claims as it registers: its desktop's lease, and its role once it holds it. */
export interface Claim {
  readonly role: Role;
}

/** Refused for the user's limit, or registered: with the lease's answer when it claimed one. */
export type Registered = { readonly ok: false } | { readonly ok: true; readonly lease?: Acquired | undefined };

export interface ControlRequest {
  readonly session: string;
  readonly user: string;
  readonly node: string;
  /** When it is a deny by silence (ms since the epoch). */
  readonly expiresAt: number;
}

/** Sent to the node holding `session`, or (`changed`) to every node. */
export type StoreMessage =
  /** `reason`: the catalogue code to end it with (DG_ERR_TAKEN_OVER, DG_ERR_ENDED_BY_ADMIN); `by`: who. */
  | { readonly type: 'end'; readonly session: string; readonly reason: string; readonly by?: string | undefined }
  /** `token`: the lease on `desktop` a session given control now holds, asked for at `leasedAt` (ms since the epoch; the nodes share a clock). */
  | {
      readonly type: 'role';
      readonly session: string;
      readonly role: Role;
      readonly reason: string;
      readonly desktop?: string | undefined;
      readonly token?: number | undefined;
      readonly leasedAt?: number | undefined;
    }
  | { readonly type: 'notice'; readonly session: string; readonly text: string }
  /** A login was logged out: its sessions end, on every node. */
  | { readonly type: 'logout'; readonly login: string }
  | { readonly type: 'changed'; readonly desktop: string };

export interface LoginFailurePolicy {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly blockMs: number;
}

export interface CoordinationStore {
  /** This node's name, unique among the nodes that share the store. */
  readonly node: string;
  /** Whether other nodes share this store (Redis), or it is this process's alone. */
  readonly shared: boolean;
  /** Whether the store can be reached right now. */
  readonly available: boolean;
  /**
   * Whether the store lost its memory (a Redis restarted empty) less than a lease ago, as this
   * node saw it happen. Holders from before write their leases back as their nodes reconnect,
   * or stop acting on them within a lease (fencing): until then a new session must not claim a
   * desktop that only looks free. Never for a store that was new when this node first reached it.
   */
  readonly recovering: boolean;
  readonly leaseTtlMs: number;
  readonly oneTime: OneTimeStore;

  /** Become the holder of a desktop if it is free (or with `force`, in any case). */
  acquire(desktop: string, claimant: Claimant, options?: AcquireOptions): Promise<Acquired>;
  /** Extend a held lease; false if this token no longer holds it. */
  renew(desktop: string, session: string, token: number): Promise<boolean>;
  /** Let go of a lease; nothing happens if this token no longer holds it. */
  release(desktop: string, session: string, token: number): Promise<void>;
  holder(desktop: string): Promise<Holder | undefined>;

  /**
   * Add a session, refused (nothing added) when its user already has `maxPerUser` live
   * sessions. With `claim`, in the same step, it also asks for its desktop's lease as
   * `acquire` without force does; the record is stored with `claim.role` if it gets it.
   */
  register(record: SessionRecord, maxPerUser: number, claim?: Claim): Promise<Registered>;
  /** Write this node's sessions again: new roles and traffic, and another lease on their records. */
  refresh(records: readonly SessionRecord[]): Promise<void>;
  /**
   * Remove a session, in one step with what it leaves behind: its control request, if one is
   * pending, and its desktop's lease, if it holds it (with any token: session ids are unique).
   */
  unregister(record: SessionRecord): Promise<void>;
  /** The live sessions, of one desktop or of all. */
  sessions(desktop?: string): Promise<SessionRecord[]>;
  session(id: string): Promise<SessionRecord | undefined>;
  sessionByViewKey(viewKey: string): Promise<SessionRecord | undefined>;

  /** Ask for a desktop's control; false when another request is pending (one past its expiresAt is not). */
  requestControl(desktop: string, request: ControlRequest): Promise<boolean>;
  /** The request not yet past its expiresAt. */
  pendingRequest(desktop: string): Promise<ControlRequest | undefined>;
  /**
   * Remove the request if it is `session`'s, and return it. A lapsed request is still returned
   * for REQUEST_GRACE_MS after its expiresAt: so whoever removes it (an answer, or the lapse
   * timer) learns that it was they who did, and only one says so. With `expiresAt`, only that
   * very request: a lapse timer must not take the same session's next one.
   */
  takeRequest(desktop: string, session: string, expiresAt?: number): Promise<ControlRequest | undefined>;

  /** Deliver to `node` ('*': every node, this one included). Delivery is at most once. */
  send(node: string, message: StoreMessage): Promise<void>;
  /** Listen to this node's messages; returns the function that stops. */
  onMessage(listener: (message: StoreMessage) => void): () => void;
  /** Listen to the store becoming reachable or not; returns the function that stops. */
  onAvailability(listener: (available: boolean) => void): () => void;

  /** Count a failed login from `key`; the ms it is blocked for now (0: not blocked). */
  loginFailed(key: string, policy: LoginFailurePolicy): Promise<number>;
  /** The ms `key` is still blocked for (0: not blocked). */
  loginBlockedFor(key: string): Promise<number>;

  close(): Promise<void>;
}

/** How long a lapsed control request is kept for takeRequest (see there). */
export const REQUEST_GRACE_MS = 5_000;

/** The store cannot be reached: the caller refuses what needed it (503 / 4503). */
export class StoreUnavailable extends Error {
  override readonly name = 'StoreUnavailable';
}
