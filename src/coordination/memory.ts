/**
 * The coordination store of a single node, in this process's memory. Leases and records
 * expire like Redis's do, so one node behaves exactly as a cluster of one.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { MemoryOneTimeStore } from '../auth/one-time.js';
import { LoginThrottle } from '../auth/throttle.js';
import type {
  AcquireOptions,
  Acquired,
  Claim,
  Claimant,
  ControlRequest,
  CoordinationStore,
  Holder,
  LoginFailurePolicy,
  Registered,
  SessionRecord,
  StoreMessage,
} from './store.js';
import { REQUEST_GRACE_MS } from './store.js';

/** A node name that differs between processes and restarts: host, pid and a random tag. */
export function defaultNodeName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

export class MemoryStore implements CoordinationStore {
  readonly shared = false;
  readonly available = true;
  readonly recovering = false;
  readonly node: string;
  readonly leaseTtlMs: number;
  readonly oneTime = new MemoryOneTimeStore();
  readonly #holders = new Map<string, Expiring<Holder>>();
  readonly #tokens = new Map<string, number>();
  readonly #sessions = new Map<string, Expiring<SessionRecord>>();
  /** Indexes of #sessions, so a session's set-up costs the same with 10 sessions as with 10,000. */
  readonly #byUser = new Map<string, Set<string>>();
  readonly #byViewKey = new Map<string, string>();
  readonly #requests = new Map<string, ControlRequest>();
  readonly #listeners = new Set<(message: StoreMessage) => void>();
  #throttle: LoginThrottle | undefined;
  readonly #now: () => number;

  constructor(options: { node?: string | undefined; leaseTtlMs: number; now?: () => number }) {
    this.node = options.node ?? defaultNodeName();
    this.leaseTtlMs = options.leaseTtlMs;
    this.#now = options.now ?? Date.now;
  }

  async acquire(desktop: string, claimant: Claimant, options: AcquireOptions = {}): Promise<Acquired> {
    return this.#acquire(desktop, claimant, options);
  }

  #acquire(desktop: string, claimant: Claimant, options: AcquireOptions = {}): Acquired {
    const current = this.#holder(desktop);
    const mine = current?.session === claimant.session;
    const mayTake = options.force === true && (options.from === undefined || options.from === current?.session);
    if (current && !mine && !mayTake) return { ok: false, holder: current };
    const token = (this.#tokens.get(desktop) ?? 0) + 1;
    this.#tokens.set(desktop, token);
    const now = this.#now();
    const since = mine ? current.since : now;
    this.#holders.set(desktop, { value: { ...claimant, since, token }, expiresAt: now + this.leaseTtlMs });
    return { ok: true, token, leasedAt: now, previous: mine ? undefined : current };
  }

  async renew(desktop: string, session: string, token: number): Promise<boolean> {
    const current = this.#holders.get(desktop);
    if (!current || current.expiresAt <= this.#now() || current.value.session !== session || current.value.token !== token) return false;
    current.expiresAt = this.#now() + this.leaseTtlMs;
    return true;
  }

  async release(desktop: string, session: string, token: number): Promise<void> {
    const current = this.#holders.get(desktop);
    if (current?.value.session === session && current.value.token === token) this.#holders.delete(desktop);
  }

  async holder(desktop: string): Promise<Holder | undefined> {
    return this.#holder(desktop);
  }

  #holder(desktop: string): Holder | undefined {
    const current = this.#holders.get(desktop);
    if (current && current.expiresAt > this.#now()) return current.value;
    this.#holders.delete(desktop);
    return undefined;
  }

  async register(record: SessionRecord, maxPerUser: number, claim?: Claim): Promise<Registered> {
    const ids = this.#byUser.get(record.user);
    // Expired records are weeded out only when they could make a difference: counting costs nothing below the limit.
    if (ids && ids.size >= maxPerUser) for (const id of ids) this.#live(id);
    if ((this.#byUser.get(record.user)?.size ?? 0) >= maxPerUser) return { ok: false };
    const lease = claim && this.#acquire(record.desktop, { session: record.id, user: record.user, node: record.node });
    this.#put(lease?.ok && claim ? { ...record, role: claim.role } : record, this.#now() + this.leaseTtlMs);
    return { ok: true, lease };
  }

  async refresh(records: readonly SessionRecord[]): Promise<void> {
    const expiresAt = this.#now() + this.leaseTtlMs;
    for (const record of records) this.#put(record, expiresAt);
  }

  async unregister(record: SessionRecord): Promise<void> {
    this.#forget(record);
    if (this.#requests.get(record.desktop)?.session === record.id) this.#requests.delete(record.desktop);
    if (this.#holders.get(record.desktop)?.value.session === record.id) this.#holders.delete(record.desktop);
  }

  async sessions(desktop?: string): Promise<SessionRecord[]> {
    const live: SessionRecord[] = [];
    for (const id of [...this.#sessions.keys()]) {
      const record = this.#live(id);
      if (record && (desktop === undefined || record.desktop === desktop)) live.push(record);
    }
    return live;
  }

  async session(id: string): Promise<SessionRecord | undefined> {
    return this.#live(id);
  }

  async sessionByViewKey(viewKey: string): Promise<SessionRecord | undefined> {
    const id = this.#byViewKey.get(viewKey);
    const record = id === undefined ? undefined : this.#live(id);
    return record?.viewKey === viewKey ? record : undefined;
  }

  #put(record: SessionRecord, expiresAt: number): void {
    this.#sessions.set(record.id, { value: record, expiresAt });
    let ids = this.#byUser.get(record.user);
    if (!ids) this.#byUser.set(record.user, (ids = new Set()));
    ids.add(record.id);
    if (record.viewKey !== undefined) this.#byViewKey.set(record.viewKey, record.id);
  }

  #forget(record: SessionRecord): void {
    this.#sessions.delete(record.id);
    const ids = this.#byUser.get(record.user);
    ids?.delete(record.id);
    if (ids?.size === 0) this.#byUser.delete(record.user);
    if (record.viewKey !== undefined && this.#byViewKey.get(record.viewKey) === record.id) this.#byViewKey.delete(record.viewKey);
  }

  /** The record if it has not expired; an expired one is forgotten on the way. */
  #live(id: string): SessionRecord | undefined {
    const entry = this.#sessions.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt > this.#now()) return entry.value;
    this.#forget(entry.value);
    return undefined;
  }

  async requestControl(desktop: string, request: ControlRequest): Promise<boolean> {
    if (await this.pendingRequest(desktop)) return false;
    this.#requests.set(desktop, request);
    return true;
  }

  async pendingRequest(desktop: string): Promise<ControlRequest | undefined> {
    const request = this.#request(desktop);
    return request && request.expiresAt > this.#now() ? request : undefined;
  }

  async takeRequest(desktop: string, session: string, expiresAt?: number): Promise<ControlRequest | undefined> {
    const request = this.#request(desktop);
    if (request?.session !== session || (expiresAt !== undefined && request.expiresAt !== expiresAt)) return undefined;
    this.#requests.delete(desktop);
    return request;
  }

  /** The request, pending or lapsed within its grace; older ones are dropped. */
  #request(desktop: string): ControlRequest | undefined {
    const request = this.#requests.get(desktop);
    if (request && request.expiresAt + REQUEST_GRACE_MS > this.#now()) return request;
    this.#requests.delete(desktop);
    return undefined;
  }

  async send(_node: string, message: StoreMessage): Promise<void> {
    // Delivered after the sender's turn, as a message through Redis would be.
    setImmediate(() => {
      for (const listener of this.#listeners) listener(message);
    });
  }

  onMessage(listener: (message: StoreMessage) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onAvailability(): () => void {
    return () => {}; // memory is always there
  }

  async loginFailed(key: string, policy: LoginFailurePolicy): Promise<number> {
    this.#throttle ??= new LoginThrottle(policy, this.#now);
    this.#throttle.failed(key);
    return this.#throttle.retryAfter(key) * 1000;
  }

  async loginBlockedFor(key: string): Promise<number> {
    return (this.#throttle?.retryAfter(key) ?? 0) * 1000;
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}
