/**
 * The coordination store shared by every node, in Redis (ioredis). Every change that reads
 * before it writes is one Lua script, so two nodes never both win; plain reads and the
 * refresh of this node's own records are pipelined. Times are the nodes' Date.now(): nodes
 * are expected to keep their clocks in sync (NTP), as the leases' TTLs are Redis's own.
 *
 * Keys, all under the prefix P:
 *   P h:<desktop>   the holder (JSON), expiring with its lease;  P f:<desktop>  its fencing counter
 *   P s             session records (id -> JSON);  P exp, P d:<desktop>, P u:<user>  id -> expiry (ms)
 *   P vk            presence key digest -> session id
 *   P r:<desktop>   the pending control request (JSON)
 *   P o:<id>        a used one-time id;  P since  when this Redis's memory began
 *   P lf:<key>, P lb:<key>   failed logins of an address, and its block
 * Channels: P node:<node> (one node's messages) and P all (every node's).
 *
 * While Redis cannot be reached, commands fail at once (no offline queue) with
 * StoreUnavailable, and the client reconnects by itself, backing off to once a second.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { OneTimeStore } from '../auth/one-time.js';
import {
  REQUEST_GRACE_MS,
  StoreUnavailable,
  type AcquireOptions,
  type Acquired,
  type Claimant,
  type ControlRequest,
  type CoordinationStore,
  type Holder,
  type LoginFailurePolicy,
  type SessionRecord,
  type StoreMessage,
} from './store.js';

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db], or rediss:// for TLS. */
  url: string;
  /** Overrides the URL's password. */
  password?: string | undefined;
  /** CA certificates for rediss://. */
  ca?: Buffer | undefined;
  node: string;
  leaseTtlMs: number;
  keyPrefix: string;
  log?: { warn(fields: object, message: string): void; info(fields: object, message: string): void } | undefined;
}

/** How long start-up waits for Redis before it gives up, naming why. */
const CONNECT_TIMEOUT_MS = 5_000;
/** A command Redis does not answer within this is a Redis that cannot be reached. */
const COMMAND_TIMEOUT_MS = 2_000;
/** Records refreshed per pipeline: a node with 10,000 sessions sends them in bounded pieces. */
const REFRESH_BATCH = 500;

const SCRIPTS = {
  acquire: {
    numberOfKeys: 2,
    lua: `
local cur = redis.call('GET', KEYS[1])
local holder = cur and cjson.decode(cur)
local claimant = cjson.decode(ARGV[1])
local mine = holder and holder.session == claimant.session
local mayTake = ARGV[4] == '1' and (ARGV[5] == '' or (holder and holder.session == ARGV[5]))
if holder and not mine and not mayTake then return {0, cur} end
claimant.token = redis.call('INCR', KEYS[2])
claimant.since = (mine and holder.since) or tonumber(ARGV[2])
local value = cjson.encode(claimant)
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
if holder and not mine then return {1, value, cur} end
return {1, value}`,
  },
  renew: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local holder = cjson.decode(cur)
if holder.session ~= ARGV[1] or holder.token ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == 'release' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1`,
  },
  register: {
    numberOfKeys: 5,
    lua: `
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[4])
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[5], ARGV[6], ARGV[1]) end
return 1`,
  },
  /** Remove the records whose node stopped refreshing them; returns the desktops they were on. */
  sweep: {
    numberOfKeys: 0,
    lua: `
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, 1000)
local desktops = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', p .. 's', id)
  if json then
    local r = cjson.decode(json)
    redis.call('ZREM', p .. 'd:' .. r.desktop, id)
    redis.call('ZREM', p .. 'u:' .. r.user, id)
    if r.viewKey then redis.call('HDEL', p .. 'vk', r.viewKey) end
    desktops[#desktops + 1] = r.desktop
  end
  redis.call('HDEL', p .. 's', id)
  redis.call('ZREM', p .. 'exp', id)
end
return desktops`,
  },
  requestControl: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur).expiresAt > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`,
  },
  takeRequest: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('GET', KEYS[1])
if not cur or cjson.decode(cur).session ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return cur`,
  },
  loginFailed: {
    numberOfKeys: 2,
    lua: `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return left end
return 0`,
  },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Scripted = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

export class RedisStore implements CoordinationStore {
  readonly shared = true;
  readonly node: string;
  readonly leaseTtlMs: number;
  readonly oneTime: OneTimeStore;
  readonly #redis: Scripted;
  readonly #subscriber: Redis;
  readonly #p: string;
  readonly #log: RedisStoreOptions['log'];
  readonly #where: string;
  readonly #messageListeners = new Set<(message: StoreMessage) => void>();
  readonly #availabilityListeners = new Set<(available: boolean) => void>();
  readonly #sweeper: NodeJS.Timeout;
  #available = false;
  #since = Date.now();

  private constructor(options: RedisStoreOptions, redis: Scripted, subscriber: Redis) {
    this.node = options.node;
    this.leaseTtlMs = options.leaseTtlMs;
    this.#p = options.keyPrefix;
    this.#log = options.log;
    this.#where = safeUrl(options.url);
    this.#redis = redis;
    this.#subscriber = subscriber;
    const store = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the one-time store's `since` follows this store's
    this.oneTime = {
      get since() {
        return store.#since;
      },
      claim: (id, expiresAt) => this.#call(async () => (await redis.set(this.#key('o:', id), '1', 'PX', Math.max(1, expiresAt - Date.now()), 'NX')) === 'OK'),
      has: (id) => this.#call(async () => (await redis.exists(this.#key('o:', id))) === 1),
    };
    redis.on('ready', () => void this.#ready());
    redis.on('close', () => this.#setAvailable(false));
    redis.on('error', () => {}); // reported as unavailability; the client reconnects by itself
    subscriber.on('error', () => {});
    subscriber.on('message', (_channel: string, text: string) => this.#deliver(text));
    this.#sweeper = setInterval(() => void this.#sweep(), Math.max(100, Math.floor(this.leaseTtlMs / 3)));
    this.#sweeper.unref();
  }

  /** Connect both connections (commands, and pub/sub); rejects with the reason if Redis cannot be reached in 5 s. */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const settings: RedisOptions = {
      lazyConnect: true,
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
      ...(options.password !== undefined && { password: options.password }),
      ...(options.ca && { tls: { ca: options.ca } }),
    };
    const redis = new Redis(options.url, settings) as Scripted;
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, script);
    // The subscriber may queue its SUBSCRIBE until it is connected, and must resubscribe after a reconnect.
    const subscriber = new Redis(options.url, { ...settings, enableOfflineQueue: true, enableAutoPipelining: false, commandTimeout: undefined });
    const store = new RedisStore(options, redis, subscriber);
    try {
      await Promise.all([ready(redis, store.#where), ready(subscriber, store.#where)]);
      await subscriber.subscribe(store.#channel(options.node), store.#channel('*'));
      await store.#ready();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  get available(): boolean {
    return this.#available;
  }

  async #ready(): Promise<void> {
    try {
      // A Redis restarted empty begins its memory now: what was used or revoked before is forgotten.
      await this.#redis.set(this.#key('since'), String(Date.now()), 'NX');
      this.#since = Number(await this.#redis.get(this.#key('since')));
      this.#setAvailable(true);
    } catch {
      // not ready after all: the next 'ready' tries again
    }
  }

  #setAvailable(available: boolean): void {
    if (available === this.#available) return;
    this.#available = available;
    if (available) this.#log?.info({ redis: this.#where }, 'cluster store reachable');
    else this.#log?.warn({ redis: this.#where }, 'cluster store unreachable: new sessions that need it are refused until it is back');
    for (const listener of this.#availabilityListeners) listener(available);
  }

  #key(kind: string, name = ''): string {
    return `${this.#p}${kind}${name}`;
  }

  #channel(node: string): string {
    return node === '*' ? this.#key('all') : this.#key('node:', node);
  }

  /** Run a command; any failure to get an answer becomes StoreUnavailable. */
  async #call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw new StoreUnavailable(`Redis at ${this.#where}: ${(err as Error).message}`, { cause: err });
    }
  }

  async acquire(desktop: string, claimant: Claimant, options: AcquireOptions = {}): Promise<Acquired> {
    const claim = JSON.stringify({ session: claimant.session, user: claimant.user, node: claimant.node });
    const [ok, value, previous] = (await this.#call(() =>
      this.#redis.acquire(
        this.#key('h:', desktop),
        this.#key('f:', desktop),
        claim,
        Date.now(),
        this.leaseTtlMs,
        options.force ? '1' : '0',
        options.from ?? '',
      ),
    )) as [number, string, string?];
    const holder = JSON.parse(value) as Holder;
    if (ok !== 1) return { ok: false, holder };
    return { ok: true, token: holder.token, previous: previous === undefined ? undefined : (JSON.parse(previous) as Holder) };
  }

  async renew(desktop: string, session: string, token: number): Promise<boolean> {
    return (await this.#call(() => this.#redis.renew(this.#key('h:', desktop), session, token, this.leaseTtlMs))) === 1;
  }

  async release(desktop: string, session: string, token: number): Promise<void> {
    await this.#call(() => this.#redis.renew(this.#key('h:', desktop), session, token, 'release'));
  }

  async holder(desktop: string): Promise<Holder | undefined> {
    const value = await this.#call(() => this.#redis.get(this.#key('h:', desktop)));
    return value === null ? undefined : (JSON.parse(value) as Holder);
  }

  #recordKeys(record: SessionRecord): [string, string, string, string, string] {
    return [this.#key('s'), this.#key('exp'), this.#key('d:', record.desktop), this.#key('u:', record.user), this.#key('vk')];
  }

  async register(record: SessionRecord, maxPerUser: number): Promise<boolean> {
    const now = Date.now();
    const added = await this.#call(() =>
      this.#redis.register(...this.#recordKeys(record), record.id, JSON.stringify(record), now + this.leaseTtlMs, now, maxPerUser, record.viewKey ?? ''),
    );
    return added === 1;
  }

  async refresh(records: readonly SessionRecord[]): Promise<void> {
    const expiresAt = Date.now() + this.leaseTtlMs;
    for (let i = 0; i < records.length; i += REFRESH_BATCH) {
      const pipeline = this.#redis.pipeline();
      for (const record of records.slice(i, i + REFRESH_BATCH)) {
        const [s, exp, d, u, vk] = this.#recordKeys(record);
        pipeline.hset(s, record.id, JSON.stringify(record)).zadd(exp, expiresAt, record.id).zadd(d, expiresAt, record.id).zadd(u, expiresAt, record.id);
        if (record.viewKey) pipeline.hset(vk, record.viewKey, record.id);
      }
      await this.#call(async () => throwFirst(await pipeline.exec()));
    }
  }

  async unregister(record: SessionRecord): Promise<void> {
    const [s, exp, d, u, vk] = this.#recordKeys(record);
    const pipeline = this.#redis.pipeline().hdel(s, record.id).zrem(exp, record.id).zrem(d, record.id).zrem(u, record.id);
    if (record.viewKey) pipeline.hdel(vk, record.viewKey);
    await this.#call(async () => throwFirst(await pipeline.exec()));
  }

  async sessions(desktop?: string): Promise<SessionRecord[]> {
    const index = desktop === undefined ? this.#key('exp') : this.#key('d:', desktop);
    return this.#call(async () => {
      const ids = await this.#redis.zrangebyscore(index, `(${Date.now()}`, '+inf');
      if (ids.length === 0) return [];
      const values = await this.#redis.hmget(this.#key('s'), ...ids);
      return values.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as SessionRecord);
    });
  }

  async session(id: string): Promise<SessionRecord | undefined> {
    return this.#call(async () => {
      const [expiresAt, value] = await Promise.all([this.#redis.zscore(this.#key('exp'), id), this.#redis.hget(this.#key('s'), id)]);
      return expiresAt !== null && Number(expiresAt) > Date.now() && value !== null ? (JSON.parse(value) as SessionRecord) : undefined;
    });
  }

  async sessionByViewKey(viewKey: string): Promise<SessionRecord | undefined> {
    const id = await this.#call(() => this.#redis.hget(this.#key('vk'), viewKey));
    const record = id === null ? undefined : await this.session(id);
    return record?.viewKey === viewKey ? record : undefined;
  }

  async requestControl(desktop: string, request: ControlRequest): Promise<boolean> {
    const now = Date.now();
    const keep = Math.max(1, request.expiresAt - now + REQUEST_GRACE_MS);
    return (await this.#call(() => this.#redis.requestControl(this.#key('r:', desktop), JSON.stringify(request), now, keep))) === 1;
  }

  async pendingRequest(desktop: string): Promise<ControlRequest | undefined> {
    const value = await this.#call(() => this.#redis.get(this.#key('r:', desktop)));
    const request = value === null ? undefined : (JSON.parse(value) as ControlRequest);
    return request && request.expiresAt > Date.now() ? request : undefined;
  }

  async takeRequest(desktop: string, session: string): Promise<ControlRequest | undefined> {
    const value = (await this.#call(() => this.#redis.takeRequest(this.#key('r:', desktop), session))) as string | null;
    return value === null ? undefined : (JSON.parse(value) as ControlRequest);
  }

  async send(node: string, message: StoreMessage): Promise<void> {
    await this.#call(() => this.#redis.publish(this.#channel(node), JSON.stringify(message)));
  }

  #deliver(text: string): void {
    let message: StoreMessage;
    try {
      message = JSON.parse(text) as StoreMessage;
    } catch {
      this.#log?.warn({ redis: this.#where }, 'ignored a message on a cluster channel that is not JSON');
      return;
    }
    for (const listener of this.#messageListeners) listener(message);
  }

  onMessage(listener: (message: StoreMessage) => void): () => void {
    this.#messageListeners.add(listener);
    return () => this.#messageListeners.delete(listener);
  }

  onAvailability(listener: (available: boolean) => void): () => void {
    this.#availabilityListeners.add(listener);
    return () => this.#availabilityListeners.delete(listener);
  }

  async loginFailed(key: string, policy: LoginFailurePolicy): Promise<number> {
    const { maxFailures, windowMs, blockMs } = policy;
    return (await this.#call(() => this.#redis.loginFailed(this.#key('lf:', key), this.#key('lb:', key), maxFailures, windowMs, blockMs))) as number;
  }

  async loginBlockedFor(key: string): Promise<number> {
    const left = await this.#call(() => this.#redis.pttl(this.#key('lb:', key)));
    return Math.max(0, left);
  }

  /** Forget the records of nodes that stopped refreshing them, and tell every node's presence. */
  async #sweep(): Promise<void> {
    if (!this.#available) return;
    try {
      const desktops = (await this.#redis.sweep(this.#p, Date.now())) as string[];
      await Promise.all([...new Set(desktops)].map((desktop) => this.send('*', { type: 'changed', desktop })));
    } catch {
      // Redis went away meanwhile: the next sweep after it is back does it
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#messageListeners.clear();
    this.#availabilityListeners.clear();
    this.#redis.disconnect();
    this.#subscriber.disconnect();
  }
}

/** Resolves when the connection is ready; rejects after the connect timeout with the last error's words. */
async function ready(redis: Redis, where: string): Promise<void> {
  let lastError = 'no answer';
  const onError = (err: Error): void => void (lastError = err.message || (err as NodeJS.ErrnoException).code || String(err));
  redis.on('error', onError);
  try {
    await Promise.race([redis.connect(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), CONNECT_TIMEOUT_MS).unref())]);
  } catch (err) {
    throw new Error(`cannot reach Redis at ${where}: ${lastError === 'no answer' ? (err as Error).message : lastError}`, { cause: err });
  } finally {
    redis.off('error', onError);
  }
}

/** A pipeline's results: the first command error thrown. */
function throwFirst(results: [Error | null, unknown][] | null): void {
  for (const [err] of results ?? []) if (err) throw err;
}

/** The URL without its user name and password, for messages and logs. */
function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.href.replace(/\/$/, '');
  } catch {
    return 'the configured URL';
  }
}
