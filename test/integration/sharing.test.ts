/**
 * Sessions that know each other, on one node: exclusive desktops (409 before the 101, the
 * holder named; a takeover from one's own other window), controlled desktops (one
 * controller, viewers whose input the gateway drops, requests allowed, denied or left
 * unanswered, takeover by the `takeover` rule, free control taken), the presence channel and
 * its authorisation, and the admin API. Raw clients throughout: the gateway enforces all of it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/auth/auth.js';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { newViewKey, openViewer, PresenceChannel, type Viewer } from '../helpers/presence.js';
import { waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, tryUpgrade } from '../helpers/ws-client.js';

const API_KEY = 'deskgate-test-api-key';
let demo: DemoDesktop;
let gw: RunningGateway;
const logs = captureLogs();
const viewers: Viewer[] = [];

/** Header mode: each test names its user (and groups) in the headers a trusted proxy would set. */
function as(user: string, groups: string[] = []): { headers: Record<string, string> } {
  return { headers: { 'x-forwarded-user': user, 'x-forwarded-groups': groups.join(',') } };
}

async function viewer(desktop: string, user: string, groups: string[] = []): Promise<Viewer> {
  const opened = await openViewer(`ws://127.0.0.1:${gw.port}`, desktop, as(user, groups));
  viewers.push(opened);
  return opened;
}

/** A pointer click at (10, 10): what a viewer's input looks like on the wire. */
const CLICK = Buffer.from([5, 1, 0, 10, 0, 10]);

function snapshotOf(v: Viewer) {
  const id = v.presence.latest?.you.session;
  return gw.gateway.sessions().find((s) => s.id === id);
}

beforeAll(async () => {
  demo = await startDemoDesktop({ host: '127.0.0.1', port: 0 });
  const desktop = { host: demo.host, port: demo.port };
  gw = await startGateway(
    {
      auth: { mode: 'header' },
      trustProxy: ['127.0.0.1/32'],
      admins: { users: ['root'] },
      session: { controlRequestTimeoutMs: 1_000 },
      // Records (and the admin list's traffic figures) are written every third of the lease.
      cluster: { leaseTtlMs: 3_000 },
      tickets: { secret: 'x'.repeat(32), apiKeys: [hashApiKey(API_KEY)] },
      desktops: [
        { name: 'ex', ...desktop, sharing: 'exclusive', takeover: { users: ['carol'] } },
        { name: 'class', ...desktop, sharing: 'controlled', takeover: { groups: ['teachers'] }, viewOnly: { users: ['guest'] } },
        { name: 'open', ...desktop },
      ],
    },
    { logger: logs.logger },
  );
});

afterEach(async () => {
  for (const v of viewers.splice(0)) v.presence.close();
  closeOpenedSockets();
  await waitFor(() => gw.gateway.sessions().length === 0, 'the sessions to end');
});

afterAll(async () => {
  await gw?.gateway.close();
  await demo?.close();
});

describe('an exclusive desktop', () => {
  it('refuses everyone else before the 101, naming the holder and since when, on the upgrade and the page', async () => {
    const alice = await viewer('ex', 'alice');
    const refused = await tryUpgrade(gw.wsUrl('ex'), as('bob'));
    expect(refused.status).toBe(409);
    expect('body' in refused && refused.body).toMatch(/^Desktop 'ex' is in use by alice since \d\d:\d\d UTC/);
    const page = await send(`${gw.httpUrl}/view/ex`, as('bob'));
    expect(page.status).toBe(409);
    expect(page.body).toMatch(/in use by alice since \d\d:\d\d UTC/);
    // The same person in a second window, without the takeover rule: refused the same way.
    expect((await tryUpgrade(gw.wsUrl('ex'), as('alice'))).status).toBe(409);
    expect(alice.rfb.ws.readyState).toBe(alice.rfb.ws.OPEN);
    expect(logs.lines.some((l) => l.msg === 'upgrade refused' && l.code === 'DG_ERR_CONFLICT' && l.user === 'bob')).toBe(true);
  });

  it('lets the takeover rule take it from its own other window, which ends with 4409', async () => {
    const first = await viewer('ex', 'carol');
    const second = await viewer('ex', 'carol');
    expect(await first.rfb.closed).toEqual({ code: 4409, reason: 'Taken over by carol from another window' });
    expect(second.rfb.ws.readyState).toBe(second.rfb.ws.OPEN);
    // Not from someone else's.
    expect((await tryUpgrade(gw.wsUrl('ex'), as('alice'))).status).toBe(409);
  });

  it('is free again once its holder leaves', async () => {
    const alice = await viewer('ex', 'alice');
    alice.rfb.ws.close();
    await waitFor(async () => (await tryUpgrade(gw.wsUrl('ex'), as('bob'))).status === 101, 'bob to be let in');
  });
});

describe('a controlled desktop', () => {
  it('has one controller; a viewer’s input is dropped by the gateway, the controller’s is not', async () => {
    const alice = await viewer('class', 'alice');
    const bob = await viewer('class', 'bob');
    const seenByBob = await bob.presence.until((p) => p.people.length === 2, 'both people in the presence');
    expect(seenByBob).toMatchObject({ sharing: 'controlled', you: { user: 'bob', role: 'view', mayControl: true }, controller: { user: 'alice' } });
    expect(seenByBob.people.map((p) => [p.user, p.role])).toEqual([
      ['alice', 'control'],
      ['bob', 'view'],
    ]);
    await alice.presence.until((p) => p.you.role === 'control', 'alice to have control');
    bob.rfb.ws.send(CLICK);
    alice.rfb.ws.send(CLICK);
    await waitFor(() => snapshotOf(bob)?.droppedMessages === 1, "bob's click to be dropped");
    expect(snapshotOf(alice)).toMatchObject({ viewOnly: false, droppedMessages: 0 });
    expect(snapshotOf(bob)).toMatchObject({ viewOnly: true, sharing: 'controlled' });
  });

  it('leaves a free desktop free when a view-only user arrives first: they watch, their input is dropped', async () => {
    const guest = await viewer('class', 'guest');
    const seen = await guest.presence.until((p) => p.people.length === 1, 'the guest in the presence');
    expect(seen).toMatchObject({ controller: null, you: { user: 'guest', role: 'view', mayControl: false } });
    guest.rfb.ws.send(CLICK);
    await waitFor(() => snapshotOf(guest)?.droppedMessages === 1, "the guest's click to be dropped");
    expect(snapshotOf(guest)).toMatchObject({ viewOnly: true });
    const alice = await viewer('class', 'alice');
    await alice.presence.until((p) => p.you.role === 'control', 'alice, next, to have control');
  });

  it('asks the controller: a no keeps control, a yes hands it over', async () => {
    const alice = await viewer('class', 'alice');
    const bob = await viewer('class', 'bob');
    await bob.presence.until((p) => p.controller?.user === 'alice', 'alice as controller');

    bob.presence.send({ type: 'request-control' });
    await alice.presence.until((p) => p.request?.user === 'bob' && !p.request.mine, 'the request at the controller');
    await bob.presence.until((p) => p.request?.mine === true, 'the request shown as pending to bob');
    alice.presence.send({ type: 'answer', allow: false });
    expect(await bob.presence.notice(/said no/)).toBe('alice said no: control stays with them');
    await alice.presence.until((p) => p.request === null, 'the request to go');
    expect(snapshotOf(bob)?.viewOnly).toBe(true);

    bob.presence.send({ type: 'request-control' });
    await alice.presence.until((p) => p.request?.user === 'bob', 'the second request');
    alice.presence.send({ type: 'answer', allow: true });
    await bob.presence.until((p) => p.you.role === 'control' && p.controller?.user === 'bob', 'bob to have control');
    await alice.presence.until((p) => p.you.role === 'view', 'alice to watch');
    expect(await alice.presence.notice(/gave control/)).toBe('You gave control to bob');
    expect(snapshotOf(bob)?.viewOnly).toBe(false);
    expect(snapshotOf(alice)?.viewOnly).toBe(true);
    alice.rfb.ws.send(CLICK);
    await waitFor(() => snapshotOf(alice)?.droppedMessages === 1, "alice's click to be dropped now");
    expect(logs.lines.filter((l) => l.msg === 'session mode').map((l) => [l.user, l.viewOnly])).toEqual(
      expect.arrayContaining([
        ['alice', true],
        ['bob', false],
      ]),
    );
  });

  it('takes no answer for a no, after controlRequestTimeoutMs', async () => {
    await viewer('class', 'alice');
    const bob = await viewer('class', 'bob');
    await bob.presence.until((p) => p.controller?.user === 'alice', 'alice as controller');
    bob.presence.send({ type: 'request-control' });
    expect(await bob.presence.notice(/did not answer/, 5_000)).toBe('alice did not answer: control stays with them');
    await bob.presence.until((p) => p.request === null && p.you.role === 'view', 'the request to lapse');
  });

  it('gives control at once to the takeover rule; the old controller watches and is told why', async () => {
    const alice = await viewer('class', 'alice');
    const teacher = await viewer('class', 'tom', ['teachers']);
    const joined = await teacher.presence.until((p) => p.controller?.user === 'alice', 'alice as controller');
    expect(joined.you).toMatchObject({ role: 'view', mayTakeOver: true });
    teacher.presence.send({ type: 'take-control' });
    await teacher.presence.until((p) => p.you.role === 'control', 'the teacher to have control');
    expect(await alice.presence.notice(/taken/)).toBe('Control was taken by tom');
    await alice.presence.until((p) => p.you.role === 'view' && p.controller?.user === 'tom', 'alice to watch tom');
    expect(alice.rfb.ws.readyState).toBe(alice.rfb.ws.OPEN);
  });

  it('is free when the controller leaves, and anyone with access takes it; view-only users never', async () => {
    const alice = await viewer('class', 'alice');
    const bob = await viewer('class', 'bob');
    const guest = await viewer('class', 'guest');
    await guest.presence.until((p) => p.people.length === 3, 'three people');
    alice.rfb.ws.close();
    await bob.presence.until((p) => p.controller === null && p.people.length === 2, 'control to be free');
    guest.presence.send({ type: 'take-control' });
    guest.presence.send({ type: 'request-control' });
    bob.presence.send({ type: 'take-control' });
    await bob.presence.until((p) => p.you.role === 'control', 'bob to have control');
    const seen = await guest.presence.until((p) => p.controller?.user === 'bob', 'the guest to see bob');
    expect(seen.you).toMatchObject({ role: 'view', mayControl: false });
    expect(snapshotOf(guest)?.viewOnly).toBe(true);
  });
});

describe('the presence channel', () => {
  it('opens only with the key of a live session', async () => {
    const alice = await viewer('open', 'alice');
    expect(alice.presence.latest ?? (await alice.presence.until(() => true, 'a presence'))).toMatchObject({
      sharing: 'shared',
      you: { user: 'alice', role: 'control' },
    });
    const wrong = await tryUpgrade(`ws://127.0.0.1:${gw.port}/presence?view=${newViewKey()}`);
    expect(wrong).toMatchObject({ status: 404, body: expect.stringContaining('No live session has this view key') });
    expect((await tryUpgrade(`ws://127.0.0.1:${gw.port}/presence?view=short`)).status).toBe(400);
    // The Origin check applies as on the RFB stream.
    const foreign = new PresenceChannel(`ws://127.0.0.1:${gw.port}/presence?view=${alice.viewKey}`, { origin: 'https://evil.example' });
    await expect(foreign.opened).rejects.toThrow(/HTTP 403/);
    // A handful of channels per session, not an unbounded number.
    const more = [1, 2, 3].map(() => new PresenceChannel(`ws://127.0.0.1:${gw.port}/presence?view=${alice.viewKey}`));
    await Promise.all(more.map((channel) => channel.opened));
    expect(await tryUpgrade(`ws://127.0.0.1:${gw.port}/presence?view=${alice.viewKey}`)).toMatchObject({
      status: 429,
      body: expect.stringContaining('4 presence channels'),
    });
    for (const channel of more) channel.close();
    // And the key stays out of the log.
    expect(JSON.stringify(logs.lines)).not.toContain(alice.viewKey);
  });

  it('closes when its session ends', async () => {
    const alice = await viewer('open', 'alice');
    const closed = new Promise<number>((resolve) => alice.presence.ws.once('close', (code) => resolve(code)));
    await alice.presence.until(() => true, 'a presence');
    alice.rfb.ws.close();
    expect(await closed).toBe(1000);
  });
});

describe('the admin API', () => {
  const api = (path = '') => `${gw.httpUrl}/api/sessions${path}`;

  it('lists every session for admins only, and ends one with 4409 and who did it', async () => {
    const alice = await viewer('open', 'alice');
    const bob = await viewer('class', 'bob');
    expect((await send(api(), as('alice'))).status).toBe(403);
    expect((await send(api())).status).toBe(401);
    const listed = await send(api(), as('root'));
    expect(listed.status).toBe(200);
    const { sessions } = JSON.parse(listed.body) as { sessions: Record<string, unknown>[] };
    expect(sessions).toEqual([
      expect.objectContaining({
        desktop: 'open',
        user: 'alice',
        role: 'control',
        node: expect.any(String),
        remoteAddress: '127.0.0.1',
        since: expect.any(String),
      }),
      expect.objectContaining({ desktop: 'class', user: 'bob', role: 'control', sharing: 'controlled' }),
    ]);
    const id = sessions[0]?.id as string;
    // Traffic both ways after the handshake, as of the last refresh of the records.
    alice.rfb.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 16, height: 16 }, false));
    await alice.rfb.nextMessage();
    await waitFor(async () => {
      const [first] = (JSON.parse((await send(api(), as('root'))).body) as { sessions: { bytesToUpstream: number; bytesToBrowser: number }[] }).sessions;
      return (first?.bytesToUpstream ?? 0) > 0 && (first?.bytesToBrowser ?? 0) > 0;
    }, "alice's traffic in the list");
    expect((await send(api(`/${id}`), { method: 'DELETE', ...as('alice') })).status).toBe(403);
    expect((await send(api(`/${id}`), { method: 'DELETE', ...as('root') })).status).toBe(202);
    expect(await alice.rfb.closed).toEqual({ code: 4409, reason: 'Ended by an administrator (root)' });
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'admin action', user: 'root', action: 'end', session: id, of: 'alice' }));
    expect(bob.rfb.ws.readyState).toBe(bob.rfb.ws.OPEN);
    expect((await send(api(`/${id}`), { method: 'DELETE', ...as('root') })).status).toBe(404);
  });

  it('changes a role: control of a controlled desktop, and refuses a session that relays unparsed', async () => {
    const alice = await viewer('class', 'alice');
    const bob = await viewer('class', 'bob');
    const open = await viewer('open', 'carol');
    const bobId = (await bob.presence.until((p) => p.you.role === 'view', 'bob watching')).you.session;
    const json = { 'content-type': 'application/json' };
    const patch = (id: string, role: string, user = 'root') =>
      send(api(`/${id}`), { method: 'PATCH', body: JSON.stringify({ role }), headers: { ...as(user).headers, ...json } });
    expect((await patch(bobId, 'control')).status).toBe(202);
    await bob.presence.until((p) => p.you.role === 'control', 'bob to have control');
    expect(await alice.presence.notice(/taken/)).toBe('Control was taken by root');
    expect(await bob.presence.notice(/gave you control/)).toBe('root gave you control');
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'admin action', user: 'root', action: 'role control', session: bobId, of: 'bob' }));
    expect((await patch(bobId, 'control', 'alice')).status).toBe(403);
    const openId = (await open.presence.until(() => true, 'a presence')).you.session;
    const fixed = await patch(openId, 'view');
    expect(fixed.status).toBe(409);
    expect(JSON.parse(fixed.body).message).toMatch(/relays its input unparsed/);
    expect((await patch(bobId, 'owner')).status).toBe(400);
  });

  it('takes a console API key too', async () => {
    const listed = await send(api(), { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(listed.status).toBe(200);
    expect((await send(api(), { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  });
});
