/**
 * The coordination store of a cluster, in Redis: every node behind a load balancer shares it.
 * Each change that reads before it writes is one Lua script, so it is atomic across nodes.
 * Keys and channels all start with `keyPrefix` (P below):
 *
 * - `P h:<desktop>` the holder (JSON), expiring with its lease; `P f:<desktop>` its last fencing token.
 * - `P s` session id → record (JSON); zsets id → expiry: `P exp` (all), `P d:<desktop>`, `P u:<user>`;
 *   `P vk` view key → session id. Reads keep to ids not yet expired; each node's sweep removes the rest.
 * - `P r:<desktop>` the control request (JSON), kept REQUEST_GRACE_MS past its expiresAt.
 * - `P o:<id>` used one-time ids; `P since` when this Redis's memory began.
 * - `P lf:<key>` failed logins in the current window; `P lb:<key>` a block.
 * - Channels `P node:<node>` (one node) and `P all` (every node), on a second connection.
 *
 * Expiry times are the nodes' Date.now(): the nodes of one cluster share a clock (NTP), as the
 * leases they hand each other already assume.
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { OneTimeStore } from '../auth/one-time.js';
import {
  type AcquireOptions,
  type Acquired,
  type Claim,
  type Claimant,
  type ControlRequest,
  type CoordinationStore,
  type Holder,
  type LoginFailurePolicy,
  type Registered,
  REQUEST_GRACE_MS,
  type SessionRecord,
  type StoreMessage,
  StoreUnavailable,
} from './store.js';

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db], or rediss:// for TLS. */
  url: string;
  /** Overrides the URL's password. */
  password?: string | undefined;
  /** CA certificates (PEM) for rediss://, instead of the system's. */
  ca?: Buffer | undefined;
  node: string;
  leaseTtlMs: number;
  /** Put before every key and channel, e.g. 'deskgate:'. */
  keyPrefix: string;
  log?: { warn(fields: object, msg: string): void; info(fields: object, msg: string): void } | undefined;
}

const CONNECT_TIMEOUT_MS = 5_000;
/** A Redis slower than this to answer is as good as away: the caller refuses rather than waits. */
const COMMAND_TIMEOUT_MS = 2_000;
const MAX_RECONNECT_DELAY_MS = 1_000;
/** Records per refresh script: a node with many sessions does not hold Redis up in one call. */
const REFRESH_CHUNK = 500;
/** Expired records one sweep removes; the next sweep takes the rest. */
const SWEEP_LIMIT = 1_000;

/** A Lua script run by its SHA1, sent whole only when Redis does not have it (yet, or again after a restart). */
class Script {
  readonly #sha: string;

  constructor(readonly lua: string) {
    this.#sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/** Lua functions of the lease, put before each script that uses them. */
const LEASE_LUA = `
  -- The holder's JSON and its table if it is held; with session and token, whether they hold it.
  local function holderOf(key)
    local current = redis.call('GET', key)
    return current, current and cjson.decode(current)
  end
  local function holds(holder, session, token)
    return holder and holder.session == session and holder.token == tonumber(token)
  end
  -- {1, token, previous JSON or ''} or {0, holder JSON}: see acquire below.
  local function acquire(holderKey, tokenKey, session, user, node, force, from, now, ttl)
    local current, holder = holderOf(holderKey)
    local mine = holder and holder.session == session
    if holder and not mine and not (force and (from == '' or from == holder.session)) then
      return {0, current}
    end
    -- At least the time: a Redis restarted empty still hands out tokens greater than before.
    local token = math.max((tonumber(redis.call('GET', tokenKey)) or 0) + 1, now)
    redis.call('SET', tokenKey, token)
    local since = mine and holder.since or now
    redis.call('SET', holderKey, cjson.encode({session = session, user = user, node = node, since = since, token = token}), 'PX', ttl)
    return {1, token, (not mine and current) or ''}
  end`;

// Replies avoid Lua's false: RESP2 and RESP3 connections get it in different shapes.
const scripts = {
  /** KEYS holder, token; ARGV session, user, node, force, from ('' = any), now, ttl. Replies {1, token, previous JSON or ''} or {0, holder JSON}. */
  acquire: new Script(`${LEASE_LUA}
    return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1', ARGV[5], tonumber(ARGV[6]), ARGV[7])`),
  /** KEYS holder; ARGV session, token, ttl ('' = release). Replies 1 if this token held it. */
  renewOrRelease: new Script(`${LEASE_LUA}
    local _, holder = holderOf(KEYS[1])
    if not holds(holder, ARGV[1], ARGV[2]) then return 0 end
    if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
    return 1`),
  /**
   * KEYS s, exp, d, u, vk, holder, token; ARGV id, JSON, expiresAt, now, maxPerUser, viewKey (''),
   * then to claim the lease (else ''): the JSON with the holder's role, user, node, ttl.
   * Replies {0} over the limit, {1} added, or {1, then acquire's reply} added having claimed.
   */
  register: new Script(`${LEASE_LUA}
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[4])
    if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[5]) then return {0} end
    local json, lease = ARGV[2], {}
    if ARGV[7] ~= '' then
      lease = acquire(KEYS[6], KEYS[7], ARGV[1], ARGV[8], ARGV[9], false, '', tonumber(ARGV[4]), ARGV[10])
      if lease[1] == 1 then json = ARGV[7] end
    end
    redis.call('HSET', KEYS[1], ARGV[1], json)
    for i = 2, 4 do redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1]) end
    if ARGV[6] ~= '' then redis.call('HSET', KEYS[5], ARGV[6], ARGV[1]) end
    return {1, unpack(lease)}`),
  /** KEYS s, exp, vk, then d and u of each record; ARGV expiresAt, then id, JSON, viewKey ('') of each. */
  refresh: new Script(`
    for i = 0, (#ARGV - 1) / 3 - 1 do
      local id, viewKey = ARGV[2 + i * 3], ARGV[4 + i * 3]
      redis.call('HSET', KEYS[1], id, ARGV[3 + i * 3])
      redis.call('ZADD', KEYS[2], ARGV[1], id)
      redis.call('ZADD', KEYS[4 + i * 2], ARGV[1], id)
      redis.call('ZADD', KEYS[5 + i * 2], ARGV[1], id)
      if viewKey ~= '' then redis.call('HSET', KEYS[3], viewKey, id) end
    end
    return 1`),
  /** KEYS s, exp, d, u, vk, holder, request; ARGV id, viewKey (''). */
  unregister: new Script(`${LEASE_LUA}
    redis.call('HDEL', KEYS[1], ARGV[1])
    for i = 2, 4 do redis.call('ZREM', KEYS[i], ARGV[1]) end
    if ARGV[2] ~= '' and redis.call('HGET', KEYS[5], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[5], ARGV[2]) end
    local request = redis.call('GET', KEYS[7])
    if request and cjson.decode(request).session == ARGV[1] then redis.call('DEL', KEYS[7]) end
    local _, holder = holderOf(KEYS[6])
    if holder and holder.session == ARGV[1] then redis.call('DEL', KEYS[6]) end
    return 1`),
  /** KEYS a zset of ids (exp or d), s; ARGV now. Replies the JSON of the live records. */
  live: new Script(`
    local records = {}
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')) do
      local json = redis.call('HGET', KEYS[2], id)
      if json then table.insert(records, json) end
    end
    return records`),
  /** KEYS s, exp, vk; ARGV now, id, viewKey: the record of the id, or of the view key when the id is ''. Replies its JSON, or ''. */
  record: new Script(`
    local id = ARGV[2]
    if id == '' then id = redis.call('HGET', KEYS[3], ARGV[3]) end
    if not id then return '' end
    local expiresAt = redis.call('ZSCORE', KEYS[2], id)
    if not expiresAt or tonumber(expiresAt) <= tonumber(ARGV[1]) then return '' end
    return redis.call('HGET', KEYS[1], id) or ''`),
  /** KEYS exp, s, vk; ARGV prefix, now, limit. Replies the desktops whose records it removed. */
  sweep: new Script(`
    local desktops, seen = {}, {}
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])) do
      local json = redis.call('HGET', KEYS[2], id)
      if json then
        local record = cjson.decode(json)
        redis.call('ZREM', ARGV[1] .. 'd:' .. record.desktop, id)
        redis.call('ZREM', ARGV[1] .. 'u:' .. record.user, id)
        if type(record.viewKey) == 'string' and redis.call('HGET', KEYS[3], record.viewKey) == id then
          redis.call('HDEL', KEYS[3], record.viewKey)
        end
        if not seen[record.desktop] then
          seen[record.desktop] = true
          table.insert(desktops, record.desktop)
        end
      end
      redis.call('HDEL', KEYS[2], id)
      redis.call('ZREM', KEYS[1], id)
    end
    return desktops`),
  /** KEYS request; ARGV JSON, now, expiresAt. Replies 1 if set: a request past its expiresAt no longer counts. */
  requestControl: new Script(`
    local current = redis.call('GET', KEYS[1])
    if current and cjson.decode(current).expiresAt > tonumber(ARGV[2]) then return 0 end
    local ttl = math.max(1, tonumber(ARGV[3]) + ${REQUEST_GRACE_MS} - tonumber(ARGV[2]))
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
    return 1`),
  /** KEYS request; ARGV session, expiresAt (''). Replies the request's JSON if it was that session's (that very request, with expiresAt), and removes it; or ''. */
  takeRequest: new Script(`
    local current = redis.call('GET', KEYS[1])
    if not current then return '' end
    local request = cjson.decode(current)
    if request.session ~= ARGV[1] or (ARGV[2] ~= '' and request.expiresAt ~= tonumber(ARGV[2])) then return '' end
    redis.call('DEL', KEYS[1])
    return current`),
  /** KEYS failures, block; ARGV maxFailures, windowMs, blockMs. Replies the ms blocked for now (0: not). */
  loginFailed: new Script(`
    local failures = redis.call('INCR', KEYS[1])
    if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    if failures >= tonumber(ARGV[1]) then
      redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
      redis.call('DEL', KEYS[1])
    end
    return math.max(0, redis.call('PTTL', KEYS[2]))`),
};

/** Redis is there but cannot serve now: as good as away for the caller. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|READONLY|OOM|NOAUTH)\b/;
/** Redis refuses who we are: retrying with the same credentials cannot help. */
const AUTH_REPLY = /^(WRONGPASS|NOAUTH|NOPERM)\b/;

/** The URL as it may be shown: without its password. */
function shownUrl(url: string): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

function connectionOptions(options: RedisStoreOptions): RedisOptions {
  const url = new URL(options.url);
  const db = url.pathname.slice(1);
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 6379),
    db: db ? Number(db) : 0,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: options.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
    tls: url.protocol === 'rediss:' ? (options.ca ? { ca: options.ca } : {}) : undefined,
    enableAutoPipelining: true,
    // Fail at once while disconnected, rather than queue behind an outage.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A reply lost with its connection fails its call; the command does not run again later behind the caller's back.
    autoResendUnfulfilledCommands: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: COMMAND_TIMEOUT_MS,
    // Hanging up waits for nothing more (see hangUp); ioredis's default would keep a 2 s timer alive even for a stream already closed.
    disconnectTimeout: 0,
    // Forever: a node gets its store back by itself once Redis is back.
    retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
    // The subscriber subscribes on every 'ready' itself (below), the first time and after a reconnect alike.
    autoResubscribe: false,
  };
}

function isMessage(value: unknown): value is StoreMessage {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

export class RedisStore implements CoordinationStore {
  readonly shared = true;
  readonly node: string;
  readonly leaseTtlMs: number;
  readonly #log: RedisStoreOptions['log'];
  readonly #url: string;
  readonly #prefix: string;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #channels: [string, string];
  readonly #messageListeners = new Set<(message: StoreMessage) => void>();
  readonly #availabilityListeners = new Set<(available: boolean) => void>();
  #available = false;
  /** Whether it was ever available: only a store that was there can be lost, and come back. */
  #wasAvailable = false;
  #listening = false;
  /** Until when a Redis this node saw restart empty is recovering (ms since the epoch). */
  #recoveringUntil = 0;
  #lastError: Error | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  /** Told when both connections are up, while connect() waits for that. */
  #onUp: (() => void) | undefined;
  readonly #oneTime = {
    /** When this Redis's memory began: read on every 'ready', so a Redis restarted empty gets a new one. */
    since: 0,
    claim: (id: string, expiresAt: number): Promise<boolean> =>
      this.#call(async (redis) => (await redis.set(this.#key('o:', id), '1', 'PX', Math.max(1, expiresAt - Date.now()), 'NX')) === 'OK'),
    has: (id: string): Promise<boolean> => this.#call(async (redis) => (await redis.exists(this.#key('o:', id))) === 1),
  };

  private constructor(options: RedisStoreOptions) {
    this.node = options.node;
    this.leaseTtlMs = options.leaseTtlMs;
    this.#log = options.log;
    this.#url = shownUrl(options.url);
    this.#prefix = options.keyPrefix;
    this.#channels = [this.#key('node:', this.node), this.#key('all')];
    this.#redis = new Redis(connectionOptions(options));
    this.#subscriber = this.#redis.duplicate();
    this.#redis.on('ready', this.#commandsOnReady);
    this.#redis.on('close', this.#commandsOnClose);
    this.#redis.on('end', this.#commandsOnClose);
    this.#redis.on('error', this.#connectionOnError);
    this.#subscriber.on('ready', this.#subscriberOnReady);
    this.#subscriber.on('close', this.#subscriberOnClose);
    this.#subscriber.on('error', this.#connectionOnError);
    this.#subscriber.on('message', this.#subscriberOnMessage);
  }

  /**
   * Connect both connections; resolves once each is ready, or rejects after 5 s with the URL
   * (never its password) and the reason. From then on it reconnects by itself.
   */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(options);
    try {
      await store.#connected();
    } catch (err) {
      await store.close();
      throw err;
    }
    store.#sweepTimer = setInterval(() => void store.#sweep(), Math.max(100, Math.floor(options.leaseTtlMs / 3)));
    store.#sweepTimer.unref();
    return store;
  }

  #connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      const stop = (): void => {
        clearTimeout(timer);
        this.#onUp = undefined;
        this.#redis.off('error', onError);
        this.#subscriber.off('error', onError);
      };
      const fail = (reason: string, cause?: Error): void => {
        stop();
        reject(new Error(`cannot reach Redis at ${this.#url}: ${reason}`, { cause }));
      };
      // Wrong credentials stay wrong: no use waiting out the time.
      const onError = (err: Error): void => {
        if (AUTH_REPLY.test(err.message)) fail(err.message, err);
      };
      const timer = setTimeout(() => fail(this.#lastError?.message ?? `no answer within ${CONNECT_TIMEOUT_MS} ms`, this.#lastError), CONNECT_TIMEOUT_MS);
      this.#onUp = () => {
        stop();
        resolve();
      };
      this.#redis.on('error', onError);
      this.#subscriber.on('error', onError);
    });
  }

  /** Tell connect() once both connections are up. */
  #checkUp(): void {
    if (this.#available && this.#listening) this.#onUp?.();
  }

  get available(): boolean {
    return this.#available;
  }

  get recovering(): boolean {
    return Date.now() < this.#recoveringUntil;
  }

  get oneTime(): OneTimeStore {
    return this.#oneTime;
  }

  readonly #connectionOnError = (err: Error): void => {
    this.#lastError = err;
  };

  /** Learn when this Redis's memory began, then count as available: one-time ids are only trusted from then on. */
  readonly #commandsOnReady = (): void => {
    const since = this.#key('since');
    this.#redis
      .set(since, Date.now(), 'NX')
      .then(() => this.#redis.get(since))
      .then((value) => {
        if (this.#redis.status !== 'ready') return; // lost meanwhile: the next 'ready' tries again
        const since = Number(value);
        if (this.#oneTime.since !== 0 && since !== this.#oneTime.since) this.#recoveringUntil = since + this.leaseTtlMs;
        this.#oneTime.since = since;
        this.#setAvailable(true);
        this.#checkUp();
      })
      .catch((err: unknown) => {
        this.#lastError = err as Error;
        if (this.#redis.status === 'ready') this.#redis.disconnect(true); // try again on a new connection
      });
  };

  readonly #commandsOnClose = (): void => {
    this.#setAvailable(false);
  };

  readonly #subscriberOnReady = (): void => {
    this.#subscriber.subscribe(...this.#channels).then(
      () => {
        this.#listening = true;
        this.#checkUp();
      },
      (err: unknown) => {
        this.#lastError = err as Error;
        if (this.#subscriber.status === 'ready') this.#subscriber.disconnect(true); // try again on a new connection
      },
    );
  };

  readonly #subscriberOnClose = (): void => {
    this.#listening = false;
  };

  readonly #subscriberOnMessage = (channel: string, payload: string): void => {
    let message: unknown;
    try {
      message = JSON.parse(payload);
    } catch {
      // not JSON: ignored below
    }
    if (!isMessage(message)) {
      this.#log?.warn({ channel, payload: payload.slice(0, 200) }, 'ignored a malformed message from the cluster store (Redis)');
      return;
    }
    for (const listener of this.#messageListeners) listener(message);
  };

  #setAvailable(available: boolean): void {
    if (available === this.#available) return;
    this.#available = available;
    if (!available) this.#log?.warn({ redis: this.#url, err: this.#lastError }, 'lost the cluster store (Redis): sessions that need it are refused');
    else if (this.#wasAvailable) this.#log?.info({ redis: this.#url }, 'reached the cluster store (Redis) again');
    this.#wasAvailable = true;
    for (const listener of this.#availabilityListeners) listener(available);
  }

  /** Run commands on Redis; StoreUnavailable, with the reason as its cause, when it cannot answer. */
  async #call<T>(commands: (redis: Redis) => Promise<T>): Promise<T> {
    if (!this.#available) throw new StoreUnavailable(`Redis at ${this.#url} cannot be reached`, { cause: this.#lastError });
    try {
      return await commands(this.#redis);
    } catch (err) {
      // Any other refusal by Redis is a bug here, not an outage: it stays what it is.
      if ((err as Error).name === 'ReplyError' && !TRANSIENT_REPLY.test((err as Error).message)) throw err;
      throw new StoreUnavailable(`Redis at ${this.#url} did not answer: ${(err as Error).message}`, { cause: err });
    }
  }

  #key(kind: string, name = ''): string {
    return `${this.#prefix}${kind}${name}`;
  }

  async acquire(desktop: string, claimant: Claimant, options: AcquireOptions = {}): Promise<Acquired> {
    const keys = [this.#key('h:', desktop), this.#key('f:', desktop)];
    const now = Date.now();
    const args = [claimant.session, claimant.user, claimant.node, options.force ? '1' : '0', options.from ?? '', now, this.leaseTtlMs];
    return acquired((await this.#call((redis) => scripts.acquire.run(redis, keys, args))) as AcquireReply, now);
  }

  async renew(desktop: string, session: string, token: number): Promise<boolean> {
    return (await this.#call((redis) => scripts.renewOrRelease.run(redis, [this.#key('h:', desktop)], [session, token, this.leaseTtlMs]))) === 1;
  }

  async release(desktop: string, session: string, token: number): Promise<void> {
    await this.#call((redis) => scripts.renewOrRelease.run(redis, [this.#key('h:', desktop)], [session, token, '']));
  }

  async holder(desktop: string): Promise<Holder | undefined> {
    const json = await this.#call((redis) => redis.get(this.#key('h:', desktop)));
    return json ? (JSON.parse(json) as Holder) : undefined;
  }

  /** The keys every change to a record touches: s, exp, d, u, vk. */
  #recordKeys(record: SessionRecord): string[] {
    return [this.#key('s'), this.#key('exp'), this.#key('d:', record.desktop), this.#key('u:', record.user), this.#key('vk')];
  }

  async register(record: SessionRecord, maxPerUser: number, claim?: Claim): Promise<Registered> {
    const now = Date.now();
    const keys = [...this.#recordKeys(record), this.#key('h:', record.desktop), this.#key('f:', record.desktop)];
    const args = [record.id, JSON.stringify(record), now + this.leaseTtlMs, now, maxPerUser, record.viewKey ?? ''];
    if (claim) args.push(JSON.stringify({ ...record, role: claim.role }), record.user, record.node, this.leaseTtlMs);
    else args.push('');
    const reply = (await this.#call((redis) => scripts.register.run(redis, keys, args))) as [0] | [1] | [1, ...AcquireReply];
    if (reply[0] === 0) return { ok: false };
    return { ok: true, lease: reply.length > 1 ? acquired(reply.slice(1) as AcquireReply, now) : undefined };
  }

  async refresh(records: readonly SessionRecord[]): Promise<void> {
    const expiresAt = Date.now() + this.leaseTtlMs;
    const chunks: (readonly SessionRecord[])[] = [];
    for (let i = 0; i < records.length; i += REFRESH_CHUNK) chunks.push(records.slice(i, i + REFRESH_CHUNK));
    const shared = [this.#key('s'), this.#key('exp'), this.#key('vk')];
    await this.#call((redis) =>
      Promise.all(
        chunks.map((chunk) =>
          scripts.refresh.run(
            redis,
            [...shared, ...chunk.flatMap((record) => [this.#key('d:', record.desktop), this.#key('u:', record.user)])],
            [expiresAt, ...chunk.flatMap((record) => [record.id, JSON.stringify(record), record.viewKey ?? ''])],
          ),
        ),
      ),
    );
  }

  async unregister(record: SessionRecord): Promise<void> {
    const keys = [...this.#recordKeys(record), this.#key('h:', record.desktop), this.#key('r:', record.desktop)];
    await this.#call((redis) => scripts.unregister.run(redis, keys, [record.id, record.viewKey ?? '']));
  }

  async sessions(desktop?: string): Promise<SessionRecord[]> {
    const ids = desktop === undefined ? this.#key('exp') : this.#key('d:', desktop);
    const records = (await this.#call((redis) => scripts.live.run(redis, [ids, this.#key('s')], [Date.now()]))) as string[];
    return records.map((json) => JSON.parse(json) as SessionRecord);
  }

  async session(id: string): Promise<SessionRecord | undefined> {
    return this.#record(id, '');
  }

  async sessionByViewKey(viewKey: string): Promise<SessionRecord | undefined> {
    return this.#record('', viewKey);
  }

  async #record(id: string, viewKey: string): Promise<SessionRecord | undefined> {
    const keys = [this.#key('s'), this.#key('exp'), this.#key('vk')];
    const json = (await this.#call((redis) => scripts.record.run(redis, keys, [Date.now(), id, viewKey]))) as string;
    return json ? (JSON.parse(json) as SessionRecord) : undefined;
  }

  /** Remove the records no node refreshed in time, and tell every node their desktops changed. */
  async #sweep(): Promise<void> {
    if (!this.#available) return;
    try {
      const keys = [this.#key('exp'), this.#key('s'), this.#key('vk')];
      const desktops = (await this.#call((redis) => scripts.sweep.run(redis, keys, [this.#prefix, Date.now(), SWEEP_LIMIT]))) as string[];
      await Promise.all(desktops.map((desktop) => this.send('*', { type: 'changed', desktop })));
    } catch (err) {
      // Away meanwhile: the first sweep after it is back does it.
      if (!(err instanceof StoreUnavailable)) this.#log?.warn({ err }, 'sweeping expired sessions from the cluster store (Redis) failed');
    }
  }

  async requestControl(desktop: string, request: ControlRequest): Promise<boolean> {
    const args = [JSON.stringify(request), Date.now(), request.expiresAt];
    return (await this.#call((redis) => scripts.requestControl.run(redis, [this.#key('r:', desktop)], args))) === 1;
  }

  async pendingRequest(desktop: string): Promise<ControlRequest | undefined> {
    const json = await this.#call((redis) => redis.get(this.#key('r:', desktop)));
    const request = json ? (JSON.parse(json) as ControlRequest) : undefined;
    return request && request.expiresAt > Date.now() ? request : undefined;
  }

  async takeRequest(desktop: string, session: string, expiresAt?: number): Promise<ControlRequest | undefined> {
    const json = (await this.#call((redis) => scripts.takeRequest.run(redis, [this.#key('r:', desktop)], [session, expiresAt ?? '']))) as string;
    return json ? (JSON.parse(json) as ControlRequest) : undefined;
  }

  async send(node: string, message: StoreMessage): Promise<void> {
    const channel = node === '*' ? this.#key('all') : this.#key('node:', node);
    await this.#call((redis) => redis.publish(channel, JSON.stringify(message)));
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
    const keys = [this.#key('lf:', key), this.#key('lb:', key)];
    return (await this.#call((redis) => scripts.loginFailed.run(redis, keys, [policy.maxFailures, policy.windowMs, policy.blockMs]))) as number;
  }

  async loginBlockedFor(key: string): Promise<number> {
    return Math.max(0, await this.#call((redis) => redis.pttl(this.#key('lb:', key))));
  }

  async close(): Promise<void> {
    clearInterval(this.#sweepTimer);
    this.#messageListeners.clear();
    this.#availabilityListeners.clear();
    await Promise.all([hangUp(this.#redis), hangUp(this.#subscriber)]);
  }
}

/** The acquire function's reply (LEASE_LUA). */
type AcquireReply = [0, string] | [1, number, string];

/** The acquire function's reply, for a lease asked for at `now`. */
function acquired(reply: AcquireReply, now: number): Acquired {
  if (reply[0] === 0) return { ok: false, holder: JSON.parse(reply[1]) as Holder };
  return { ok: true, token: reply[1], leasedAt: now, previous: reply[2] ? (JSON.parse(reply[2]) as Holder) : undefined };
}

/** QUIT lets the replies in flight arrive; a connection that is down is only kept from reconnecting. */
async function hangUp(connection: Redis): Promise<void> {
  if (connection.status === 'ready') await connection.quit().catch(() => {});
  connection.disconnect();
}
