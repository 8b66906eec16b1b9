/**
 * The sharing policy, on top of the coordination store: which role a new session gets on its
 * desktop (`shared`, `exclusive`, `controlled`), control requests and hand-overs, the admin's
 * actions, and this node's side of the cluster: its sessions' records and leases, refreshed
 * every third of the lease, and the messages other nodes send about them.
 *
 * Every decision that admits a session is taken before the 101 (seat); a store that cannot be
 * reached refuses what needs it (exclusive, controlled) and lets `shared` sessions in, which
 * need it only to be listed: their records are written when the store is back.
 */
import { createHash, randomUUID } from 'node:crypto';
import { isNamedIn, type Identity } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import type { Desktop } from '../desktops/directory.js';
import { errors, GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import type { Grant } from '../sessions/session-manager.js';
import {
  type Acquired,
  type Claim,
  type CoordinationStore,
  type Role,
  type SessionRecord,
  type Sharing,
  type StoreMessage,
  StoreUnavailable,
} from './store.js';

/** A session's place on its desktop, decided before the 101. */
export interface Seat {
  /** Who and where the session is: its record in the store, less what changes while it runs. */
  readonly record: Omit<SessionRecord, 'role' | 'bytesToUpstream' | 'bytesToBrowser'>;
  role: Role;
  /** The fencing token of the desktop's lease, while this session holds it. */
  token: number | undefined;
  /** When the lease was last asked for or renewed with success (ms since the epoch): it runs at least leaseTtlMs from then. */
  leasedAt: number;
  /** Control paused because the lease could not be renewed in time (see #fenceLapsed); given back once it is renewed. */
  fenced: boolean;
  /** False while its record could not be written (the store was away): the next refresh writes it. */
  registered: boolean;
}

/** What the coordinator needs of this node's live sessions. */
export interface LocalSessions {
  /** Switch a session between control and view-only; false if it cannot. */
  setViewOnly(id: string, viewOnly: boolean): boolean;
  /** End a session with the error's close code and reason; false if it is not here. */
  end(id: string, error: GatewayError): boolean;
  /** End the sessions that match with the error's close code and reason. */
  endWhere(match: (session: { identity: Identity }) => boolean, error: GatewayError): number;
  traffic(id: string): { bytesToUpstream: number; bytesToBrowser: number } | undefined;
}

/** What a viewer's presence channel is told besides the presence itself. */
export type NoticeListener = (session: string, text: string) => void;

export interface CoordinatorOptions {
  store: CoordinationStore;
  /** Whom events name as their source. */
  gateway: object;
  config: Pick<Config, 'limits' | 'session' | 'admins'>;
}

/** How often at most a desktop's joins and leaves are announced to every node. */
const MEMBERSHIP_WINDOW_MS = 50;

/** The digest a presence key is known by: the key itself is the viewer's secret. */
export function viewKeyDigest(key: string): string {
  return createHash('sha256').update(key).digest('base64url');
}

export class Coordinator {
  readonly store: CoordinationStore;
  readonly #options: CoordinatorOptions;
  readonly #seats = new Map<string, Seat>();
  readonly #noticeListeners = new Set<NoticeListener>();
  readonly #changeListeners = new Set<(desktop: string) => void>();
  #sessions: LocalSessions | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #fenceTimer: NodeJS.Timeout;
  readonly #stopListening: () => void;
  #refreshing: Promise<void> | undefined;
  /** Membership announcements waiting for their desktop's window, and when each desktop's last went. */
  readonly #coalescing = new Map<string, NodeJS.Timeout>();
  readonly #lastMembership = new Map<string, number>();
  /** Leaves still writing to the store: closing waits for them. */
  readonly #leaving = new Set<Promise<void>>();

  constructor(options: CoordinatorOptions) {
    this.store = options.store;
    this.#options = options;
    const stopMessages = this.store.onMessage((message) => void this.#receive(message));
    // A store that is back (perhaps restarted empty) learns this node's sessions and leases at once.
    const stopAvailability = this.store.onAvailability((available) => available && void this.refresh());
    this.#stopListening = () => {
      stopMessages();
      stopAvailability();
    };
    this.#timer = setInterval(() => void this.refresh(), Math.max(100, Math.floor(this.store.leaseTtlMs / 3)));
    this.#timer.unref();
    // Apart from the refresh, which a store that does not answer can hold up for seconds.
    this.#fenceTimer = setInterval(() => this.#fenceLapsed(), Math.max(50, Math.floor(this.store.leaseTtlMs / 6)));
    this.#fenceTimer.unref();
  }

  /** The live sessions of this node; set once, after both are built. */
  bind(sessions: LocalSessions): void {
    this.#sessions = sessions;
  }

  /** Listen to notices for viewers (presence.ts); returns the function that stops. */
  onNotice(listener: NoticeListener): () => void {
    this.#noticeListeners.add(listener);
    return () => this.#noticeListeners.delete(listener);
  }

  /** Listen to a desktop's presence changing, on any node; returns the function that stops. */
  onChange(listener: (desktop: string) => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  isAdmin(identity: Identity): boolean {
    return isNamedIn(this.#options.config.admins, identity);
  }

  /**
   * Decide a new session's place, before its 101: its role, the desktop's lease when it holds
   * it, and its record among every node's sessions. Throws the refusal: the desktop is held,
   * the user is over their limit across nodes, or the store that must decide is away.
   */
  async seat(grant: Grant, desktop: Desktop | undefined, viewKey: string | undefined): Promise<Seat> {
    const sharing: Sharing = desktop?.sharing ?? 'shared';
    const { identity } = grant;
    const mayControl = !grant.viewOnly;
    const mayTakeOver = desktop?.takeover !== undefined && isNamedIn(desktop.takeover, identity);
    const seat: Seat = {
      record: {
        id: randomUUID(),
        desktop: grant.target.name,
        user: identity.user,
        node: this.store.node,
        remoteAddress: grant.address,
        since: Date.now(),
        viewKey: viewKey === undefined ? undefined : viewKeyDigest(viewKey),
        sharing,
        mayControl,
        mayTakeOver,
        switchable: sharing === 'controlled' || grant.viewOnly,
      },
      // On a controlled desktop, a viewer until it holds the lease (below).
      role: mayControl && sharing !== 'controlled' ? 'control' : 'view',
      token: undefined,
      leasedAt: 0,
      fenced: false,
      registered: false,
    };
    // Mode none has one user, everyone: only the per-address limit tells people apart there.
    const maxPerUser = identity.via === 'none' ? Number.MAX_SAFE_INTEGER : this.#options.config.limits.maxSessionsPerUser;
    const claim = this.#claim(sharing, mayControl, seat.role);
    try {
      const registered = await this.store.register(this.#record(seat), maxPerUser, claim);
      if (!registered.ok) throw errors.tooManyForUser(identity.user, maxPerUser);
      seat.registered = true;
      if (registered.lease) await this.#claimed(seat, registered.lease, mayTakeOver);
    } catch (err) {
      // A call that timed out may still have run: what it may have claimed goes too.
      if (seat.registered || claim) await this.store.unregister(this.#record(seat)).catch(() => {});
      if (!(err instanceof StoreUnavailable)) throw err;
      if (sharing !== 'shared') throw errors.storeUnavailable().causedBy(err);
      seat.registered = false; // listed once the store is back
    }
    this.#seats.set(seat.record.id, seat);
    this.#membershipChanged(seat.record.desktop);
    return seat;
  }

  /**
   * Whether a new session claims its desktop's lease, and with which role: an exclusive desktop is
   * held by whoever is on it, a controlled one only by who may control it. While the store
   * recovers (see CoordinationStore.recovering) a free desktop may only look free: an exclusive
   * session is refused, a controlled one joins watching.
   */
  #claim(sharing: Sharing, mayControl: boolean, role: Role): Claim | undefined {
    if (sharing === 'exclusive') {
      if (this.store.recovering) throw errors.storeRecovering();
      return { role };
    }
    return sharing === 'controlled' && mayControl && !this.store.recovering ? { role: 'control' } : undefined;
  }

  /**
   * What registering got of the desktop's lease: an exclusive session holds it, or takes it over
   * from the same person's other window; on a controlled desktop, control if it was free.
   */
  async #claimed(seat: Seat, got: Acquired, mayTakeOver: boolean): Promise<void> {
    if (got.ok) {
      seat.token = got.token;
      seat.leasedAt = got.leasedAt;
      if (seat.record.sharing === 'controlled') seat.role = 'control';
      return;
    }
    if (seat.record.sharing === 'controlled') return; // a viewer, until control is given or taken
    const claimant = { session: seat.record.id, user: seat.record.user, node: this.store.node };
    const holder = got.holder;
    // The same person in another window may take the desktop over when the rules let them.
    if (holder.user !== claimant.user || !mayTakeOver) throw errors.inUse(seat.record.desktop, holder.user, clock(holder.since));
    const taken = await this.store.acquire(seat.record.desktop, claimant, { force: true, from: holder.session });
    if (!taken.ok) throw errors.inUse(seat.record.desktop, taken.holder.user, clock(taken.holder.since));
    seat.token = taken.token;
    seat.leasedAt = taken.leasedAt;
    await this.#deliver(holder.node, { type: 'end', session: holder.session, reason: 'DG_ERR_TAKEN_OVER', by: claimant.user });
  }

  /** Why a viewer page for this grant would be refused at its WebSocket: the desktop is held by someone else, or cannot be coordinated now. */
  async refusal(grant: Grant, desktop: Desktop | undefined): Promise<GatewayError | undefined> {
    if (desktop?.sharing === undefined || desktop.sharing === 'shared') return undefined;
    if (!this.store.available) return errors.storeUnavailable();
    if (desktop.sharing !== 'exclusive') return undefined;
    if (this.store.recovering) return errors.storeRecovering();
    const holder = await this.store.holder(desktop.name);
    if (!holder) return undefined;
    const mayTakeOver = desktop.takeover !== undefined && isNamedIn(desktop.takeover, grant.identity);
    if (holder.user === grant.identity.user && mayTakeOver) return undefined;
    return errors.inUse(desktop.name, holder.user, clock(holder.since));
  }

  /** The session did not open after all, or has ended: its lease and record go. */
  leave(seat: Seat): Promise<void> {
    if (!this.#seats.delete(seat.record.id)) return Promise.resolve();
    const leaving = this.#leave(seat).finally(() => this.#leaving.delete(leaving));
    this.#leaving.add(leaving);
    return leaving;
  }

  async #leave(seat: Seat): Promise<void> {
    // Its record, lease and control request in one step; a store that is away forgets them by itself, as they expire.
    await this.store.unregister(this.#record(seat)).catch(() => {});
    // A controller leaving frees control: that is news at once, not at the end of a window.
    if (seat.token !== undefined) await this.#changed(seat.record.desktop);
    else this.#membershipChanged(seat.record.desktop);
  }

  #record(seat: Seat): SessionRecord {
    const traffic = this.#sessions?.traffic(seat.record.id);
    return { ...seat.record, role: seat.role, bytesToUpstream: traffic?.bytesToUpstream ?? 0, bytesToBrowser: traffic?.bytesToBrowser ?? 0 };
  }

  /**
   * This node's share of the cluster's upkeep: write its sessions' records (roles, traffic,
   * another lease on each) and renew its leases. A lease that cannot be renewed was taken or
   * lapsed: a free desktop is held again, a taken one is given up, as the fencing token says.
   */
  async refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    if (!this.store.available || this.#seats.size === 0) return;
    const seats = [...this.#seats.values()];
    try {
      await this.store.refresh(seats.map((seat) => this.#record(seat)));
      for (const seat of seats) {
        if (!seat.registered) void this.#changed(seat.record.desktop);
        seat.registered = true;
      }
      await Promise.all(seats.filter((seat) => seat.token !== undefined).map((seat) => this.#renew(seat)));
    } catch (err) {
      if (!(err instanceof StoreUnavailable))
        events.failed.publish(() => ({ gateway: this.#options.gateway, what: 'while refreshing the cluster store', err }));
    }
  }

  async #renew(seat: Seat): Promise<void> {
    const token = seat.token as number;
    const asked = Date.now();
    if (await this.store.renew(seat.record.desktop, seat.record.id, token)) return this.#leased(seat, asked);
    if (seat.token !== token || !this.#seats.has(seat.record.id)) return; // changed meanwhile
    const again = await this.store.acquire(seat.record.desktop, { session: seat.record.id, user: seat.record.user, node: this.store.node });
    if (again.ok && !this.#seats.has(seat.record.id)) return this.store.release(seat.record.desktop, seat.record.id, again.token); // left meanwhile
    if (again.ok) {
      seat.token = again.token;
      return this.#leased(seat, again.leasedAt);
    }
    seat.token = undefined;
    seat.fenced = false;
    if (seat.record.sharing === 'exclusive') this.#sessions?.end(seat.record.id, errors.leaseLost(seat.record.desktop));
    else await this.#applyRole(seat, 'view', `Control passed to ${again.holder.user}`);
  }

  /** The lease is this seat's again from `asked` on: a controller paused by #fenceLapsed gets control back (an exclusive session it fenced is ending). */
  async #leased(seat: Seat, asked: number): Promise<void> {
    seat.leasedAt = asked;
    if (!seat.fenced || seat.record.sharing !== 'controlled') return;
    seat.fenced = false;
    await this.#applyRole(seat, 'control', 'The cluster store (Redis) is back: you have control again');
  }

  /**
   * Fencing on this side of the wire: a lease this node could not renew may lapse in the store
   * and go to someone on another node, so its holder stops acting on it first. Checked every
   * sixth of the lease, on a timer of its own, it stops between two thirds and five sixths of
   * the lease after the last renewal was asked for: before the store could give it away. A
   * controller becomes a viewer until the lease is renewed; an exclusive session, which cannot
   * change its role, ends with 4503.
   */
  #fenceLapsed(): void {
    const lapsing = Date.now() - (this.store.leaseTtlMs * 2) / 3;
    for (const seat of this.#seats.values()) {
      if (seat.token === undefined || seat.fenced || seat.leasedAt > lapsing) continue;
      seat.fenced = true;
      if (seat.record.sharing === 'exclusive') this.#sessions?.end(seat.record.id, errors.holdLapsed(seat.record.desktop));
      else void this.#applyRole(seat, 'view', 'The cluster store (Redis) is out of reach: your input is paused until it is back');
    }
  }

  // Control of a controlled desktop. Each action names the session it acts for; the presence
  // channel (its viewer) or the admin API calls them, on any node.

  /** A viewer asks for control: given at once if nobody has it, else the controller is asked. */
  async requestControl(record: SessionRecord): Promise<void> {
    if (!this.#mayAsk(record)) return;
    const holder = await this.store.holder(record.desktop);
    if (!holder) return this.takeControl(record);
    const timeoutMs = this.#options.config.session.controlRequestTimeoutMs;
    const request = { session: record.id, user: record.user, node: record.node, expiresAt: Date.now() + timeoutMs };
    if (!(await this.store.requestControl(record.desktop, request))) {
      return this.#notice(record.id, 'Someone else is waiting for an answer: try again in a moment');
    }
    await this.#changed(record.desktop);
    // Silence is a no: whoever asked hears so when the time is up.
    setTimeout(() => {
      void this.store
        .takeRequest(record.desktop, record.id, request.expiresAt)
        .then(async (lapsed) => {
          if (!lapsed) return;
          await this.#notice(record.id, `${holder.user} did not answer: control stays with them`);
          await this.#changed(record.desktop);
        })
        .catch(() => {}); // the store is away: the request lapses there by itself
    }, timeoutMs).unref();
  }

  /** The controller answers the pending request. */
  async answer(controller: SessionRecord, allow: boolean): Promise<void> {
    const holder = await this.store.holder(controller.desktop);
    if (holder?.session !== controller.id) return;
    const pending = await this.store.pendingRequest(controller.desktop);
    const request = pending && (await this.store.takeRequest(controller.desktop, pending.session));
    if (!request) return;
    if (!allow) {
      await this.#notice(request.session, `${controller.user} said no: control stays with them`);
      return this.#changed(controller.desktop);
    }
    const to = await this.store.session(request.session);
    if (!to) return this.#changed(controller.desktop);
    const given = await this.store.acquire(controller.desktop, { session: to.id, user: to.user, node: to.node }, { force: true, from: controller.id });
    if (!given.ok) return;
    await this.#handOver(to, given, `${controller.user} gave you control`, `You gave control to ${to.user}`);
  }

  /** Take control now: free control for anyone who may control, held control for the `takeover` rule's people. */
  async takeControl(record: SessionRecord, by?: string): Promise<void> {
    if (record.sharing !== 'controlled' || !record.mayControl) return;
    const claimant = { session: record.id, user: record.user, node: record.node };
    const force = record.mayTakeOver || by !== undefined;
    // Free control may only look free: its holder may not have written its lease back yet.
    if (!force && this.store.recovering) return this.#notice(record.id, errors.storeRecovering().message);
    const got = await this.store.acquire(record.desktop, claimant, { force });
    if (!got.ok) return this.#notice(record.id, `${got.holder.user} has control: ask for it instead`);
    await this.store.takeRequest(record.desktop, record.id);
    const taker = by ?? record.user;
    await this.#handOver(record, got, by ? `${by} gave you control` : 'You have control', `Control was taken by ${taker}`);
  }

  /** The controller gives control up; the desktop has none until someone takes it. */
  async releaseControl(record: SessionRecord, by?: string): Promise<void> {
    const holder = await this.store.holder(record.desktop);
    if (holder?.session !== record.id) return;
    await this.store.release(record.desktop, record.id, holder.token);
    await this.#deliver(record.node, { type: 'role', session: record.id, role: 'view', reason: by ? `${by} took control from you` : 'You gave up control' });
  }

  async #handOver(to: SessionRecord, lease: Acquired & { ok: true }, toNew: string, toOld: string): Promise<void> {
    // The old controller first: its input must stop before the new one's flows.
    const { previous, token, leasedAt } = lease;
    if (previous && previous.session !== to.id) {
      await this.#deliver(previous.node, { type: 'role', session: previous.session, role: 'view', reason: toOld });
    }
    await this.#deliver(to.node, { type: 'role', session: to.id, role: 'control', reason: toNew, desktop: to.desktop, token, leasedAt });
  }

  #mayAsk(record: SessionRecord): boolean {
    return record.sharing === 'controlled' && record.mayControl && record.role === 'view';
  }

  // Administration: on any node, for sessions on every node.

  async endSession(id: string, admin: string): Promise<SessionRecord> {
    const record = await this.store.session(id);
    if (!record) throw errors.noSuchSession(id);
    await this.#deliver(record.node, { type: 'end', session: id, reason: 'DG_ERR_ENDED_BY_ADMIN', by: admin });
    return record;
  }

  async setRole(id: string, role: Role, admin: string): Promise<SessionRecord> {
    const record = await this.store.session(id);
    if (!record) throw errors.noSuchSession(id);
    if (!record.switchable) throw errors.roleFixed(id);
    if (record.sharing === 'controlled') {
      if (role === 'control') await this.takeControl({ ...record, mayControl: true }, admin);
      else await this.releaseControl(record, admin);
    } else {
      const reason = role === 'view' ? `${admin} made this session view-only` : `${admin} gave you control`;
      await this.#deliver(record.node, { type: 'role', session: id, role, reason });
    }
    return record;
  }

  /** A login was logged out: its sessions end here and on every other node. */
  async loggedOut(login: string): Promise<void> {
    this.#sessions?.endWhere((s) => s.identity.login === login, errors.loggedOut());
    if (this.store.shared) await this.store.send('*', { type: 'logout', login }).catch(() => {}); // the others' sessions end by their revoked logins' next check otherwise
  }

  // Messages.

  /** To this node directly, to another through the store. */
  async #deliver(node: string, message: StoreMessage): Promise<void> {
    if (node === this.store.node) return this.#receive(message);
    await this.store.send(node, message);
  }

  async #receive(message: StoreMessage): Promise<void> {
    switch (message.type) {
      case 'changed':
        for (const listener of this.#changeListeners) listener(message.desktop);
        return;
      case 'notice':
        for (const listener of this.#noticeListeners) listener(message.session, message.text);
        return;
      case 'logout':
        this.#sessions?.endWhere((s) => s.identity.login === message.login, errors.loggedOut());
        return;
      case 'end': {
        const by = message.by ?? 'someone';
        this.#sessions?.end(message.session, message.reason === 'DG_ERR_ENDED_BY_ADMIN' ? errors.endedByAdmin(by) : errors.takenOver(by));
        return;
      }
      case 'role': {
        const seat = this.#seats.get(message.session);
        if (!seat) {
          // Given control as it left: the lease goes at once, not when it lapses.
          if (message.token !== undefined && message.desktop !== undefined)
            await this.store.release(message.desktop, message.session, message.token).catch(() => {});
          return;
        }
        if (message.role === 'control' && seat.record.sharing === 'controlled') {
          if (message.token === undefined) return; // control of a controlled desktop comes with its lease
          seat.token = message.token;
          seat.leasedAt = message.leasedAt ?? 0;
        }
        if (message.role === 'view' && seat.record.sharing === 'controlled') seat.token = undefined;
        if (seat.record.sharing === 'controlled') seat.fenced = false; // a fenced exclusive session is ending
        await this.#applyRole(seat, message.role, message.reason);
      }
    }
  }

  async #applyRole(seat: Seat, role: Role, reason: string): Promise<void> {
    if (!this.#sessions?.setViewOnly(seat.record.id, role === 'view')) return;
    seat.role = role;
    await this.store.refresh([this.#record(seat)]).catch(() => {}); // the next refresh writes it otherwise
    await this.#notice(seat.record.id, reason);
    await this.#changed(seat.record.desktop);
  }

  /** Tell a session's viewer something; its presence channel may be on any node (on this one only while the store is away). */
  async #notice(session: string, text: string): Promise<void> {
    if (this.#broadcasts()) await this.store.send('*', { type: 'notice', session, text }).catch(() => {});
    else for (const listener of this.#noticeListeners) listener(session, text);
  }

  async #changed(desktop: string): Promise<void> {
    if (this.#broadcasts()) await this.store.send('*', { type: 'changed', desktop }).catch(() => {});
    else for (const listener of this.#changeListeners) listener(desktop);
  }

  /** Whether news goes to every node through the store (which brings it back here too), or stays on this node. */
  #broadcasts(): boolean {
    return this.store.shared && this.store.available;
  }

  /**
   * Someone joined or left: said at once, then at most once per MEMBERSHIP_WINDOW_MS per
   * desktop, the last change included. A desktop hundreds join each second would otherwise
   * cost every node a message, and every watcher a presence, per session.
   */
  #membershipChanged(desktop: string): void {
    if (this.#coalescing.has(desktop)) return;
    const wait = (this.#lastMembership.get(desktop) ?? 0) + MEMBERSHIP_WINDOW_MS - Date.now();
    const announce = (): void => {
      this.#coalescing.delete(desktop);
      this.#lastMembership.set(desktop, Date.now());
      void this.#changed(desktop);
    };
    if (wait <= 0) return announce();
    this.#coalescing.set(desktop, setTimeout(announce, wait));
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#fenceTimer);
    await Promise.allSettled(this.#leaving);
    for (const timer of this.#coalescing.values()) clearTimeout(timer);
    this.#stopListening();
    await this.store.close();
  }
}

/** "10:02 UTC": when a holder took a desktop, as a person reads it. */
function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 16)} UTC`;
}
