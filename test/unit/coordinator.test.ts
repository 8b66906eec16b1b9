/**
 * The coordinator's fencing, without a network: a node whose lease was taken while it could
 * not hear about it (a lost message, a partition) finds out at its next refresh and stops
 * acting on it; a lease that merely lapsed (a Redis restarted empty) is taken again.
 */
import { describe, expect, it } from 'vitest';
import type { Identity } from '../../src/auth/identity.js';
import { parseConfig } from '../../src/config/schema.js';
import { Coordinator, type LocalSessions } from '../../src/coordination/coordinator.js';
import { MemoryStore } from '../../src/coordination/memory.js';
import { StoreUnavailable } from '../../src/coordination/store.js';
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

/** A memory store that can be cut off, as Redis is from a node in a partition: its leases go on expiring meanwhile. */
function cutOff(store: MemoryStore): { store: MemoryStore; reachable: (up: boolean) => void } {
  let up = true;
  const proxy = new Proxy(store, {
    get(target, name) {
      if (name === 'available') return up;
      const value: unknown = Reflect.get(target, name, target);
      if (typeof value !== 'function') return value;
      if (!up && REMOTE.has(String(name))) return () => Promise.reject(new StoreUnavailable('cut off'));
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
  return { store: proxy, reachable: (value) => (up = value) };
}

function setUp(leaseTtlMs = 60_000) {
  const { store, reachable } = cutOff(new MemoryStore({ node: 'a', leaseTtlMs }));
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
  return { store, coordinator, calls, notices, reachable };
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

  describe('cut off from its store', () => {
    const TTL = 600;
    const controlled = { name: 'class', host: '127.0.0.1', port: 5900, sharing: 'controlled' as const };

    it('pauses a controller before its lease could lapse, and gives control back once the lease is renewed', async () => {
      const { coordinator, calls, notices, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('class'), controlled, undefined);
      reachable(false);
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([]); // a third of the lease gone at most: nothing to fear yet
      await sleep(TTL * 0.7);
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([[seat.record.id, true]]);
      expect(seat).toMatchObject({ role: 'view', fenced: true });
      expect(notices).toEqual(['The cluster store (Redis) is out of reach: your input is paused until it is back']);
      await sleep(TTL * 0.5); // lapsed in the store by now; nobody took it
      reachable(true);
      await coordinator.refresh();
      expect(calls.viewOnly).toEqual([
        [seat.record.id, true],
        [seat.record.id, false],
      ]);
      expect(seat).toMatchObject({ role: 'control', fenced: false });
      expect(notices.at(-1)).toBe('The cluster store (Redis) is back: you have control again');
      await coordinator.close();
    });

    it('leaves a paused controller watching when someone else got control meanwhile', async () => {
      const { store, coordinator, calls, notices, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('class'), controlled, undefined);
      reachable(false);
      await sleep(TTL * 0.7);
      await coordinator.refresh();
      expect(seat.fenced).toBe(true);
      await sleep(TTL * 0.5);
      reachable(true);
      expect((await store.acquire('class', intruder)).ok).toBe(true); // another node, after the lease lapsed
      await coordinator.refresh();
      expect(calls.viewOnly.every(([id, viewOnly]) => id === seat.record.id && viewOnly)).toBe(true);
      expect(seat).toMatchObject({ role: 'view', fenced: false, token: undefined });
      expect(notices.at(-1)).toBe('Control passed to mallory');
      await coordinator.close();
    });

    it('ends an exclusive session with 4503 before its lease could lapse', async () => {
      const { coordinator, calls, reachable } = setUp(TTL);
      const seat = await coordinator.seat(grant('kiosk'), { name: 'kiosk', host: '127.0.0.1', port: 5900, sharing: 'exclusive' }, undefined);
      reachable(false);
      await coordinator.refresh();
      expect(calls.ended).toEqual([]);
      await sleep(TTL * 0.7);
      await coordinator.refresh();
      expect(calls.ended).toEqual([[seat.record.id, "The cluster store (Redis) is out of reach: this session's hold on 'kiosk' lapsed"]]);
      await coordinator.close();
    });
  });
});
