/**
 * The coordinator's fencing, without a network: a node whose lease was taken while it could
 * not hear about it (a lost message, a partition) finds out at its next refresh and stops
 * acting on it; a lease that merely lapsed (a Redis restarted empty) is taken again.
 */
import { describe, expect, it } from 'vitest';
import type { Identity } from '../../src/auth/identity.js';
import { parseConfig } from '../../src/config/schema.js';
import { Coordinator, type LocalSessions, type Seat } from '../../src/coordination/coordinator.js';
import { MemoryStore } from '../../src/coordination/memory.js';
import { type SessionRecord, StoreUnavailable } from '../../src/coordination/store.js';
import type { GatewayError } from '../../src/errors.js';
import type { Grant } from '../../src/sessions/session-manager.js';

const alice: Identity = { user: 'alice', groups: [], via: 'header' };

function grant(desktop: string, viewOnly = false): Grant {
  return { address: '127.0.0.1', identity: alice, viewOnly, target: { kind: 'desktop', name: desktop, host: '127.0.0.1', port: 5900 } };
}

/** Calls of the store that need it reachable: they reject with StoreUnavailable while it is down. */
const REMOTE = new Set([
  'acquire',
  'renew',
  'release',
  'holder',
  'register',
  'refresh',
  'unregister',
  'sessions',
  'session',
  'requestControl',
  'takeRequest',
  'send',
]);

type Reach = 'up' | 'down' | 'hung';

/**
 * A memory store that can be cut off, as Redis is from a node in a partition: down, its calls
 * fail at once; hung, they never answer (a cut without a reset). Its leases go on expiring.
 */
function cutOff(store: MemoryStore): { store: MemoryStore; reachable: (reach: Reach) => void; recovering: (value: boolean) => void } {
  let reach: Reach = 'up';
  let recovering = false;
  const proxy = new Proxy(store, {
    get(target, name) {
      if (name === 'available') return reach !== 'down';
      if (name === 'recovering') return recovering;
      const value: unknown = Reflect.get(target, name, target);
      if (typeof value !== 'function') return value;
      if (reach === 'down' && REMOTE.has(String(name))) return () => Promise.reject(new StoreUnavailable('cut off'));
      if (reach === 'hung' && REMOTE.has(String(name))) return () => new Promise(() => {});
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
  return { store: proxy, reachable: (value) => (reach = value), recovering: (value) => (recovering = value) };
}

function setUp(leaseTtlMs = 60_000) {
  const { store, reachable, recovering } = cutOff(new MemoryStore({ node: 'a', leaseTtlMs }));
  const coordinator = new Coordinator({ store, gateway: {}, config: parseConfig({}) });
  const calls = { viewOnly: [] as [string, boolean][], ended: [] as [string, string][] };
  const sessions: LocalSessions = {
    setViewOnly: (id, viewOnly) => (calls.viewOnly.push([id, viewOnly]), true),
    end: (id, error: GatewayError) => (calls.ended.push([id, error.message]), true),
    endWhere: () => 0,
    traffic: () => undefined,
  };
  const notices: string[] = [];
  coordinator.onNotice((_session, text) => notices.push(text));
  coordinator.bind(sessions);
  return { store, coordinator, calls, notices, reachable, recovering };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const intruder = { session: 'elsewhere', user: 'mallory', node: 'b' };

describe('the coordinator', () => {
  it('gives free control of a controlled desktop only to someone who may control it', async () => {
    const { store, coordinator } = setUp();
    const desktop = { name: 'class', host: '127.0.0.1', port: 5900, sharing: 'controlled' as const };
    const watcher = await coordinator.seat(grant('class', true), desktop, undefined);
    expect(watcher).toMatchObject({ role: 'view', token: undefined });
    expect(await store.holder('class')).toBeUndefined();
    const controller = await coordinator.seat(grant('class'), desktop, undefined);
    expect(controller).toMatchObject({ role: 'control', token: expect.any(Number) });
    expect(await store.session(controller.record.id)).toMatchObject({ role: 'control' });
    expect(await store.session(watcher.record.id)).toMatchObject({ role: 'view' });
    await coordinator.leave(controller);
    expect(await store.holder('class')).toBeUndefined();
    await coordinator.close();
  });

  it('makes a controller whose lease was taken behind its back a viewer at the next refresh', async () => {
    const { store, coordinator, calls } = setUp();
    const seat = await coordinator.seat(grant('class'), { name: 'class', host: '127.0.0.1', port: 5900, sharing: 'controlled' }, undefined);
    expect(seat).toMatchObject({ role: 'control', token: expect.any(Number) });
    await store.acquire('class', intruder, { force: true });
    await coordinator.refresh();
    expect(calls.viewOnly).toEqual([[seat.record.id, true]]);
    expect(seat).toMatchObject({ role: 'view', token: undefined });
    expect((await store.session(seat.record.id))?.role).toBe('view');
    await coordinator.close();
  });

  it('ends an exclusive session whose lease was taken behind its back', async () => {
    const { store, coordinator, calls } = setUp();
    const seat = await coordinator.seat(grant('kiosk'), { name: 'kiosk', host: '127.0.0.1', port: 5900, sharing: 'exclusive' }, undefined);
    await store.acquire('kiosk', intruder, { force: true });
    await coordinator.refresh();
    expect(calls.ended).toEqual([[seat.record.id, "This session lost its hold on desktop 'kiosk' to another session"]]);
    await coordinator.close();
  });

  it('takes a lapsed lease again when nobody else holds it', async () => {
    const { store, coordinator, calls } = setUp();
    const seat = await coordinator.seat(grant('kiosk'), { name: 'kiosk', host: '127.0.0.1', port: 5900, sharing: 'exclusive' }, undefined);
    const first = seat.token as number;
    await store.release('kiosk', seat.record.id, first); // as a Redis restarted empty would have forgotten it
    await coordinator.refresh();
    expect(calls.ended).toEqual([]);
    expect(seat.token).toBeGreaterThan(first);
    expect(await store.holder('kiosk')).toMatchObject({ session: seat.record.id, token: seat.token });
    await coordinator.close();
  });

  it('claims no free desktop while the store recovers: an exclusive session is refused, a controlled one watches', async () => {
    const { store, coordinator, notices, recovering } = setUp();
    recovering(true);
    const kiosk = { name: 'kiosk', host: '127.0.0.1', port: 5900, sharing: 'exclusive' as const };
    await expect(coordinator.seat(grant('kiosk'), kiosk, undefined)).rejects.toMatchObject({ code: 'DG_ERR_STORE_UNAVAILABLE', status: 503 });
    expect(await coordinator.refusal(grant('kiosk'), kiosk)).toMatchObject({ code: 'DG_ERR_STORE_UNAVAILABLE' });
    const seat = await coordinator.seat(grant('class'), { name: 'class', host: '127.0.0.1', port: 5900, sharing: 'controlled' }, undefined);
    expect(seat).toMatchObject({ role: 'view', token: undefined });
    await coordinator.takeControl(await (store.session(seat.record.id) as Promise<SessionRecord>));
    expect(await store.holder('class')).toBeUndefined();
    expect(notices.at(-1)).toMatch(/has just restarted/);
    recovering(false);
    await coordinator.takeControl(await (store.session(seat.record.id) as Promise<SessionRecord>));
    expect(await store.holder('class')).toMatchObject({ session: seat.record.id });
    await coordinator.close();
  });

  it('lets go at once of a lease handed to a session that has left', async () => {
    const { store, coordinator } = setUp();
    const got = await store.acquire('class', { session: 'gone', user: 'bob', node: 'a' }, { force: true });
    if (!got.ok) throw new Error('expected the lease');
    await store.send('a', {
      type: 'role',
      session: 'gone',
      role: 'control',
      reason: 'alice gave you control',
      desktop: 'class',
      token: got.token,
      leasedAt: Date.now(),
    });
    await expect.poll(() => store.holder('class')).toBeUndefined();
    await coordinator.close();
  });

  describe('cut off from its store', () => {
    const TTL = 1_200;
    const controlled = { name: 'class', host: '127.0.0.1', port: 5900, sharing: 'controlled' as const };

    /** Wait for the seat to be fenced by the coordinator's own timer; it must come before its lease could lapse in the store. */
    async function fencedInTime(seat: Seat): Promise<void> {
      const deadline = seat.leasedAt + TTL;
      while (!seat.fenced) {
        expect(Date.now()).toBeLessThan(deadline);
        await sleep(10);
      }
      expect(Date.now()).toBeLessThan(deadline);
      expect(Date.now()).toBeGreaterThanOrEqual(seat.leasedAt + (TTL * 2) / 3);
    }

    it('pauses a controller before its lease could lapse, and gives control back once the lease is renewed', async () => {
      const { coordinator, calls, notices, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('class'), controlled, undefined);
      reachable('down');
      await fencedInTime(seat);
      expect(calls.viewOnly).toEqual([[seat.record.id, true]]);
      expect(seat.role).toBe('view');
      expect(notices).toEqual(['The cluster store (Redis) is out of reach: your input is paused until it is back']);
      await sleep(seat.leasedAt + TTL * 1.1 - Date.now()); // lapsed in the store by now; nobody took it
      reachable('up');
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([
        [seat.record.id, true],
        [seat.record.id, false],
      ]);
      expect(seat).toMatchObject({ role: 'control', fenced: false });
      expect(notices.at(-1)).toBe('The cluster store (Redis) is back: you have control again');
      await coordinator.close();
    });

    it('pauses a controller in time when the store takes calls and never answers', async () => {
      const { coordinator, calls, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('class'), controlled, undefined);
      reachable('hung');
      await fencedInTime(seat);
      expect(calls.viewOnly).toEqual([[seat.record.id, true]]);
      reachable('up');
      await coordinator.close();
    });

    it('leaves a paused controller watching when someone else got control meanwhile', async () => {
      const { store, coordinator, calls, notices, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('class'), controlled, undefined);
      reachable('down');
      await fencedInTime(seat);
      await sleep(seat.leasedAt + TTL * 1.1 - Date.now());
      reachable('up');
      expect((await store.acquire('class', intruder)).ok).toBe(true); // another node, after the lease lapsed
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([
        [seat.record.id, true],
        [seat.record.id, true],
      ]);
      expect(seat).toMatchObject({ role: 'view', fenced: false, token: undefined });
      expect(notices.at(-1)).toBe('Control passed to mallory');
      await coordinator.close();
    });

    it('ends an exclusive session with 4503 before its lease could lapse, and never gives it control back', async () => {
      const { coordinator, calls, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('kiosk', true), { name: 'kiosk', host: '127.0.0.1', port: 5900, sharing: 'exclusive' }, undefined);
      reachable('down');
      await fencedInTime(seat);
      expect(calls.ended).toEqual([[seat.record.id, "The cluster store (Redis) is out of reach: this session's hold on 'kiosk' lapsed"]]);
      reachable('up'); // still renewable: the session is ending all the same
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([]);
      await coordinator.close();
    });
  });
});
