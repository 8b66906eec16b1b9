/**
 * The Redis coordination store against a real redis-server: the store contract with two
 * nodes; Redis stopped and started again empty (calls refused at once, the store back by
 * itself, one-time ids trusted only from the new start); connecting with a wrong address, a
 * wrong password, and over TLS; a node's sweep of records nobody refreshed.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, type RedisStoreOptions } from '../../src/coordination/redis.js';
import { type SessionRecord, type StoreMessage, StoreUnavailable } from '../../src/coordination/store.js';
import { freePort, waitFor } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { storeContract } from '../helpers/store-contract.js';
import { makeCertificate } from '../helpers/tls.js';

/** One key prefix for the file: its stores share state with each other and no one else. */
const prefix = `deskgate-test-${randomUUID()}:`;
const servers: RedisServer[] = [];
const opened: RedisStore[] = [];
let redis: RedisServer;

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
});

beforeAll(async () => {
  redis = await server();
});

async function server(options?: Parameters<typeof startRedis>[0]): Promise<RedisServer> {
  const started = await startRedis(options);
  servers.push(started);
  return started;
}

async function open(node: string, overrides: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const store = await RedisStore.connect({ url: redis.url, node, leaseTtlMs: 1_000, keyPrefix: prefix, ...overrides });
  opened.push(store);
  return store;
}

function record(store: RedisStore, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: randomUUID(),
    desktop: `desk-${randomUUID()}`,
    user: 'alice',
    role: 'view',
    node: store.node,
    remoteAddress: '127.0.0.1',
    since: Date.now(),
    bytesToUpstream: 0,
    bytesToBrowser: 0,
    sharing: 'shared',
    mayControl: true,
    mayTakeOver: false,
    switchable: false,
    ...overrides,
  };
}

describe('redis coordination store', () => {
  storeContract({
    distinctNodes: true,
    async nodes(leaseTtlMs) {
      return Promise.all([
        RedisStore.connect({ url: redis.url, node: `a-${randomUUID()}`, leaseTtlMs, keyPrefix: prefix }),
        RedisStore.connect({ url: redis.url, node: `b-${randomUUID()}`, leaseTtlMs, keyPrefix: prefix }),
      ]);
    },
  });
});

describe('when Redis goes away', () => {
  it('refuses calls at once with StoreUnavailable, tells its listeners, and is back by itself once Redis is', async () => {
    const logged: string[] = [];
    const store = await open('a', { log: { warn: (_fields, msg) => logged.push(msg), info: (_fields, msg) => logged.push(msg) } });
    const heard: boolean[] = [];
    store.onAvailability((available) => heard.push(available));
    const received: StoreMessage[] = [];
    store.onMessage((message) => received.push(message));

    await redis.stop();
    // Even a call racing the news of the lost connection is refused well within the command timeout.
    const racing = Date.now();
    await expect(store.holder('lab')).rejects.toBeInstanceOf(StoreUnavailable);
    expect(Date.now() - racing).toBeLessThan(3_000);
    await waitFor(() => !store.available, 'the store to count as unavailable');
    expect(heard).toEqual([false]);
    const started = Date.now();
    const calls = [
      store.acquire('lab', { session: 's1', user: 'alice', node: store.node }),
      store.register(record(store), 3),
      store.unregister(record(store)),
      store.sessions(),
      store.send('*', { type: 'changed', desktop: 'lab' }),
      store.oneTime.claim(`ticket:${randomUUID()}`, Date.now() + 60_000),
      store.loginBlockedFor('198.51.100.1'),
    ];
    for (const call of calls) await expect(call).rejects.toBeInstanceOf(StoreUnavailable);
    expect(Date.now() - started).toBeLessThan(500);
    await expect(store.holder('lab')).rejects.toMatchObject({ message: `Redis at ${redis.url} cannot be reached` });

    await redis.restart();
    await waitFor(() => store.available, 'the store to reconnect by itself');
    expect(heard).toEqual([false, true]);
    expect(logged).toEqual(['lost the cluster store (Redis): sessions that need it are refused', 'reached the cluster store (Redis) again']);
    expect(await store.acquire('lab', { session: 's1', user: 'alice', node: store.node })).toMatchObject({ ok: true });
    // The subscriber connection comes back on its own time: send until a message arrives, so it has subscribed again.
    await waitFor(async () => {
      await store.send(store.node, { type: 'notice', session: 's1', text: 'back' });
      return received.length > 0;
    }, 'a message through the reconnected subscriber');
    expect(received[0]).toEqual({ type: 'notice', session: 's1', text: 'back' });
  });

  it('after Redis restarts empty, trusts one-time ids only from then on, recovers for a lease, and still hands out greater fencing tokens', async () => {
    const store = await open('a');
    expect(store.recovering).toBe(false); // the Redis it first reached has nothing to learn again
    const before = store.oneTime.since;
    const ticket = `ticket:${randomUUID()}`;
    expect(await store.oneTime.claim(ticket, Date.now() + 60_000)).toBe(true);
    const desktop = `desk-${randomUUID()}`;
    const first = await store.acquire(desktop, { session: 's1', user: 'alice', node: store.node });

    await redis.stop();
    await waitFor(() => !store.available, 'the store to count as unavailable');
    await redis.restart();
    await waitFor(() => store.available, 'the store to reconnect');
    // Tickets and logins issued before the new `since` are refused: the used ticket cannot be replayed.
    expect(store.oneTime.since).toBeGreaterThan(before);
    expect(await store.oneTime.has(ticket)).toBe(false);
    // Holders from before may not have written their leases back yet: for a lease, this node knows it.
    expect(store.recovering).toBe(true);
    const later = await open('b');
    expect(later.recovering).toBe(false); // a node that never saw the old memory cannot tell
    expect(later.oneTime.since).toBe(store.oneTime.since);
    await waitFor(() => !store.recovering, 'a lease after the restart', 2_000);
    const second = await later.acquire(desktop, { session: 's2', user: 'bob', node: later.node });
    if (!first.ok || !second.ok) throw new Error('expected both to hold the free desktop');
    expect(second.token).toBeGreaterThan(first.token);
  });
});

describe('connecting', () => {
  it('names the URL without its password and the reason when nobody answers', async () => {
    const url = `redis://:hunter2@127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const failed = RedisStore.connect({ url, node: 'a', leaseTtlMs: 1_000, keyPrefix: prefix });
    await expect(failed).rejects.toThrow(/^cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/);
    await expect(failed).rejects.not.toThrow(/hunter2/);
    expect(Date.now() - started).toBeLessThan(7_000);
  });

  it('says a wrong password is wrong, at once, and works with the right one', async () => {
    const guarded = await server({ password: 'right-password' });
    const started = Date.now();
    const wrong = RedisStore.connect({ url: guarded.url, password: 'wrong-password', node: 'a', leaseTtlMs: 1_000, keyPrefix: prefix });
    await expect(wrong).rejects.toThrow(`cannot reach Redis at ${guarded.url}: WRONGPASS`);
    await expect(wrong).rejects.not.toThrow(/wrong-password/);
    const none = RedisStore.connect({ url: guarded.url, node: 'a', leaseTtlMs: 1_000, keyPrefix: prefix });
    await expect(none).rejects.toThrow(`cannot reach Redis at ${guarded.url}: NOAUTH`);
    expect(Date.now() - started).toBeLessThan(3_000);

    // The password option wins over the URL's.
    const url = guarded.url.replace('//', '//:wrong-password@');
    const store = await open('a', { url, password: 'right-password' });
    expect(await store.oneTime.claim(`ticket:${randomUUID()}`, Date.now() + 60_000)).toBe(true);
  });

  it('speaks TLS to a rediss:// URL, trusting the CA it is given', async () => {
    const certificate = makeCertificate('ec');
    const secure = await server({ tls: certificate });
    await expect(RedisStore.connect({ url: secure.url, node: 'a', leaseTtlMs: 1_000, keyPrefix: prefix })).rejects.toThrow(
      `cannot reach Redis at ${secure.url}: self-signed certificate`,
    );
    const store = await open('a', { url: secure.url, ca: certificate.cert });
    const received: StoreMessage[] = [];
    store.onMessage((message) => received.push(message));
    await store.send('*', { type: 'changed', desktop: 'lab' });
    await waitFor(() => received.length === 1, 'a broadcast over TLS');
  });
});

describe('upkeep', () => {
  it('sweeps records nobody refreshed, and tells every node their desktop changed', async () => {
    const a = await open('a', { leaseTtlMs: 300 });
    const b = await open('b', { leaseTtlMs: 300 });
    const changed: string[] = [];
    b.onMessage((message) => message.type === 'changed' && changed.push(message.desktop));
    const gone = record(a, { viewKey: `vk-${randomUUID()}` });
    expect(await a.register(gone, 3)).toEqual({ ok: true });
    await waitFor(() => changed.includes(gone.desktop), 'a change of the swept record’s desktop');
    expect(await b.sessions(gone.desktop)).toEqual([]);
    expect(await b.sessionByViewKey(gone.viewKey as string)).toBeUndefined();
  });

  it('ignores a malformed message, and warns', async () => {
    const warnings: string[] = [];
    const log = { warn: (_fields: object, msg: string) => warnings.push(msg), info: () => {} };
    const store = await open('a', { log });
    const received: StoreMessage[] = [];
    store.onMessage((message) => received.push(message));
    const raw = new Redis(redis.url);
    try {
      await raw.publish(`${prefix}all`, 'not json');
      await raw.publish(`${prefix}all`, '[1,2]');
    } finally {
      raw.disconnect();
    }
    await store.send('*', { type: 'changed', desktop: 'lab' });
    await waitFor(() => received.length === 1, 'the well-formed message');
    expect(received).toEqual([{ type: 'changed', desktop: 'lab' }]);
    expect(warnings).toEqual(['ignored a malformed message from the cluster store (Redis)', 'ignored a malformed message from the cluster store (Redis)']);
  });
});
