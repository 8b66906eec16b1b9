/**
 * The coordination store's contract (src/coordination/store.ts), one suite for every
 * implementation: the memory store in the unit tests, the Redis store against a real
 * redis-server in the integration tests. `nodes` gives two stores that share their state
 * (two nodes of one cluster; for memory, one store twice).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { CoordinationStore, SessionRecord, StoreMessage } from '../../src/coordination/store.js';

export interface StoreFixture {
  /** Two nodes sharing one state, each with a lease of `leaseTtlMs`. */
  nodes(leaseTtlMs: number): Promise<[CoordinationStore, CoordinationStore]>;
  /** Whether the two nodes are distinct (messages to one do not reach the other). */
  distinctNodes: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function record(store: CoordinationStore, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: randomUUID(),
    desktop: 'lab',
    user: 'alice',
    role: 'control',
    node: store.node,
    remoteAddress: '127.0.0.1',
    since: Date.now(),
    bytesToUpstream: 0,
    bytesToBrowser: 0,
    sharing: 'controlled',
    mayControl: true,
    mayTakeOver: false,
    switchable: true,
    ...overrides,
  };
}

export function storeContract(fixture: StoreFixture): void {
  let a: CoordinationStore;
  let b: CoordinationStore;
  const TTL = 1_000;
  beforeEach(async () => {
    [a, b] = await fixture.nodes(TTL);
  });
  afterEach(async () => {
    await a.close();
    if (b !== a) await b.close();
  });
  const desktop = (): string => `desk-${randomUUID()}`;

  it('gives a free desktop to the first claimant, and refuses the next one naming the holder', async () => {
    const name = desktop();
    const asked = Date.now();
    const first = await a.acquire(name, { session: 's1', user: 'alice', node: a.node });
    expect(first).toMatchObject({ ok: true, leasedAt: expect.any(Number) });
    expect(first.ok && first.leasedAt).toBeGreaterThanOrEqual(asked); // the lease's time runs from then
    expect(first.ok && first.leasedAt).toBeLessThanOrEqual(Date.now());
    const second = await b.acquire(name, { session: 's2', user: 'bob', node: b.node });
    expect(second).toMatchObject({ ok: false, holder: { session: 's1', user: 'alice', node: a.node } });
    expect(await b.holder(name)).toMatchObject({ session: 's1', user: 'alice' });
  });

  it('forces a hand-over with a greater fencing token; the old token can neither renew nor release', async () => {
    const name = desktop();
    const first = await a.acquire(name, { session: 's1', user: 'alice', node: a.node });
    const taken = await b.acquire(name, { session: 's2', user: 'bob', node: b.node }, { force: true });
    if (!first.ok || !taken.ok) throw new Error('expected both to succeed');
    expect(taken.token).toBeGreaterThan(first.token);
    expect(taken.previous).toMatchObject({ session: 's1', user: 'alice', token: first.token });
    expect(await a.renew(name, 's1', first.token)).toBe(false);
    await a.release(name, 's1', first.token);
    expect(await a.holder(name)).toMatchObject({ session: 's2', token: taken.token });
    expect(await b.renew(name, 's2', taken.token)).toBe(true);
    await b.release(name, 's2', taken.token);
    expect(await a.holder(name)).toBeUndefined();
  });

  it('hands over only from the named session', async () => {
    const name = desktop();
    await a.acquire(name, { session: 's1', user: 'alice', node: a.node });
    const wrong = await b.acquire(name, { session: 's3', user: 'carol', node: b.node }, { force: true, from: 's2' });
    expect(wrong).toMatchObject({ ok: false, holder: { session: 's1' } });
    const right = await b.acquire(name, { session: 's3', user: 'carol', node: b.node }, { force: true, from: 's1' });
    expect(right).toMatchObject({ ok: true, previous: { session: 's1' } });
  });

  it('lets a lease lapse unless renewed', async () => {
    const renewed = desktop();
    const lapsed = desktop();
    const kept = await a.acquire(renewed, { session: 's1', user: 'alice', node: a.node });
    await a.acquire(lapsed, { session: 's2', user: 'alice', node: a.node });
    await sleep(TTL * 0.6);
    expect(kept.ok && (await a.renew(renewed, 's1', kept.token))).toBe(true);
    await sleep(TTL * 0.6);
    expect(await b.holder(renewed)).toMatchObject({ session: 's1' });
    expect(await b.holder(lapsed)).toBeUndefined();
    expect((await b.acquire(lapsed, { session: 's3', user: 'bob', node: b.node })).ok).toBe(true);
  });

  it('lists sessions of every node, per desktop, and forgets records not refreshed', async () => {
    const name = desktop();
    const r1 = record(a, { desktop: name, viewKey: `vk-${randomUUID()}` });
    const r2 = record(b, { desktop: name, user: 'bob', role: 'view' });
    const other = record(b, { desktop: desktop() });
    expect(await a.register(r1, 10)).toEqual({ ok: true });
    expect(await b.register(r2, 10)).toEqual({ ok: true });
    expect(await b.register(other, 10)).toEqual({ ok: true });
    expect((await a.sessions(name)).map((s) => s.id).sort()).toEqual([r1.id, r2.id].sort());
    expect((await a.sessions()).map((s) => s.id)).toEqual(expect.arrayContaining([r1.id, r2.id, other.id]));
    expect(await b.session(r1.id)).toEqual(r1);
    expect(await b.sessionByViewKey(r1.viewKey as string)).toEqual(r1);
    expect(await b.sessionByViewKey('vk-unknown')).toBeUndefined();

    const updated = { ...r2, role: 'control' as const, bytesToBrowser: 1234 };
    await b.refresh([updated]);
    expect(await a.session(r2.id)).toEqual(updated);

    await sleep(TTL * 0.6);
    await a.refresh([r1]);
    await sleep(TTL * 0.6);
    expect((await b.sessions(name)).map((s) => s.id)).toEqual([r1.id]);
    await a.unregister(r1);
    expect(await b.sessions(name)).toEqual([]);
    expect(await b.sessionByViewKey(r1.viewKey as string)).toBeUndefined();
  });

  it('refuses a session over the per-user limit, counting every node', async () => {
    const user = `u-${randomUUID()}`;
    expect(await a.register(record(a, { user }), 2)).toMatchObject({ ok: true });
    expect(await b.register(record(b, { user }), 2)).toMatchObject({ ok: true });
    const third = record(a, { user, desktop: desktop() });
    expect(await a.register(third, 2, { role: 'control' })).toEqual({ ok: false });
    expect(await a.session(third.id)).toBeUndefined();
    expect(await a.holder(third.desktop)).toBeUndefined(); // refused before it could claim
    expect(await a.register(record(a, { user: `${user}-other` }), 2)).toMatchObject({ ok: true });
  });

  it('claims the lease as it registers: the first gets it, with its role in its record; the next is told who holds it', async () => {
    const name = desktop();
    const first = record(a, { desktop: name, role: 'view' });
    const second = record(b, { desktop: name, user: 'bob', role: 'view' });
    const got = await a.register(first, 10, { role: 'control' });
    expect(got).toMatchObject({ ok: true, lease: { ok: true, token: expect.any(Number), previous: undefined } });
    expect(await b.session(first.id)).toMatchObject({ role: 'control' });
    expect(await b.holder(name)).toMatchObject({ session: first.id, user: 'alice', node: a.node });
    const refused = await b.register(second, 10, { role: 'control' });
    expect(refused).toMatchObject({ ok: true, lease: { ok: false, holder: { session: first.id, user: 'alice' } } });
    expect(await a.session(second.id)).toMatchObject({ role: 'view' });
  });

  it('unregisters a session with its lease and its control request, and nothing of anyone else', async () => {
    const name = desktop();
    const holder = record(a, { desktop: name, role: 'view' });
    const asker = record(b, { desktop: name, user: 'bob', role: 'view' });
    const got = await a.register(holder, 10, { role: 'control' });
    if (!got.ok || !got.lease?.ok) throw new Error('expected the lease');
    await b.register(asker, 10);
    const request = { session: asker.id, user: 'bob', node: b.node, expiresAt: Date.now() + TTL };
    expect(await b.requestControl(name, request)).toBe(true);

    await b.unregister(asker); // its request goes, the lease (not its) stays
    expect(await a.pendingRequest(name)).toBeUndefined();
    expect(await a.takeRequest(name, asker.id)).toBeUndefined(); // gone, not merely lapsed
    expect(await a.holder(name)).toMatchObject({ session: holder.id, token: got.lease.token });
    expect(await b.requestControl(name, { ...request, session: 'someone-else' })).toBe(true);

    await a.unregister({ ...holder, role: 'control' }); // its lease goes, someone else's request stays
    expect(await b.holder(name)).toBeUndefined();
    expect(await b.session(holder.id)).toBeUndefined();
    expect(await b.pendingRequest(name)).toMatchObject({ session: 'someone-else' });
    expect(await a.sessions(name)).toEqual([]);
  });

  it('keeps one control request per desktop until it is taken or lapses', async () => {
    const name = desktop();
    const request = { session: 's2', user: 'bob', node: b.node, expiresAt: Date.now() + TTL / 2 };
    expect(await b.requestControl(name, request)).toBe(true);
    expect(await a.requestControl(name, { ...request, session: 's3' })).toBe(false);
    expect(await a.pendingRequest(name)).toEqual(request);
    expect(await a.takeRequest(name, 's3')).toBeUndefined();
    expect(await a.takeRequest(name, 's2')).toEqual(request);
    expect(await a.pendingRequest(name)).toBeUndefined();
    expect(await b.requestControl(name, request)).toBe(true);
    await sleep(TTL / 2 + 100);
    expect(await a.pendingRequest(name)).toBeUndefined();
    // Lapsed, it is still its requester's to take (once), and another may ask meanwhile.
    expect(await a.takeRequest(name, 's2', request.expiresAt + 1)).toBeUndefined(); // not that very request
    expect(await a.takeRequest(name, 's2', request.expiresAt)).toEqual(request);
    expect(await a.takeRequest(name, 's2')).toBeUndefined();
    expect(await b.requestControl(name, request)).toBe(true);
    await sleep(TTL / 2 + 100);
    const next = { ...request, session: 's3', expiresAt: Date.now() + TTL };
    expect(await a.requestControl(name, next)).toBe(true);
    expect(await b.pendingRequest(name)).toEqual(next);
  });

  it('delivers a message to its node, and a broadcast to every node', async () => {
    const toA: StoreMessage[] = [];
    const toB: StoreMessage[] = [];
    const stopA = a.onMessage((m) => toA.push(m));
    const stopB = b.onMessage((m) => toB.push(m));
    await b.send(a.node, { type: 'end', session: 's1', reason: 'Ended by an administrator', by: 'root' });
    await a.send('*', { type: 'changed', desktop: 'lab' });
    await expect
      .poll(() => toA)
      .toEqual([
        { type: 'end', session: 's1', reason: 'Ended by an administrator', by: 'root' },
        { type: 'changed', desktop: 'lab' },
      ]);
    await expect.poll(() => toB).toContainEqual({ type: 'changed', desktop: 'lab' });
    if (fixture.distinctNodes) expect(toB).toEqual([{ type: 'changed', desktop: 'lab' }]);
    stopA();
    stopB();
  });

  it('uses a one-time id once, on any node', async () => {
    const id = `ticket:${randomUUID()}`;
    expect(a.oneTime.since).toBeLessThanOrEqual(Date.now());
    expect(await a.oneTime.claim(id, Date.now() + 60_000)).toBe(true);
    expect(await b.oneTime.claim(id, Date.now() + 60_000)).toBe(false);
    expect(await b.oneTime.has(id)).toBe(true);
    expect(await b.oneTime.has(`ticket:${randomUUID()}`)).toBe(false);
  });

  it('blocks an address after too many failed logins on any node', async () => {
    const key = `198.51.100.${Math.floor(Math.random() * 250)}`;
    const policy = { maxFailures: 3, windowMs: 60_000, blockMs: 30_000 };
    expect(await a.loginFailed(key, policy)).toBe(0);
    expect(await b.loginFailed(key, policy)).toBe(0);
    expect(await a.loginBlockedFor(key)).toBe(0);
    const blocked = await b.loginFailed(key, policy);
    expect(blocked).toBeGreaterThan(29_000);
    expect(await a.loginBlockedFor(key)).toBeGreaterThan(29_000);
    expect(await a.loginBlockedFor('198.51.100.254')).toBe(0);
  });
}
