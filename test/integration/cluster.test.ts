/**
 * Several gateway processes sharing one real redis-server: exclusive desktops, control
 * hand-overs and requests, admin actions, tickets and per-user limits across nodes; Redis
 * stopped and started again under live sessions; a node killed with SIGKILL. The desktops
 * are one real Xvnc, whose pointer (xdotool) shows whose input reaches it.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/auth/auth.js';
import { encodePointerEvent, encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { loggedIn, logIn, usersYaml } from '../helpers/auth.js';
import { runDeskgate, startCli, type CliGateway } from '../helpers/cli-process.js';
import { openViewer, type Viewer } from '../helpers/presence.js';
import { freePort, requireCommand, waitFor } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { makeCertificate } from '../helpers/tls.js';
import { closeOpenedSockets, openDesktop, tryUpgrade, type TestClient } from '../helpers/ws-client.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';

const API_KEY = 'cluster-test-api-key';
const LEASE_TTL_MS = 3_000;

let redis: RedisServer;
let xvnc: Xvnc;
/** One key prefix for the file's nodes: they share state with each other and no one else. */
const prefix = `deskgate-test-${randomUUID()}:`;
const nodes: Record<'a' | 'b', CliGateway> = {} as Record<'a' | 'b', CliGateway>;
const viewers: Viewer[] = [];

function config(node: string, prefix: string): Record<string, unknown> {
  const desktop = { host: '127.0.0.1', port: xvnc.port };
  return {
    auth: { mode: 'header' },
    trustProxy: ['127.0.0.1/32'],
    admins: { users: ['root'] },
    tickets: { secret: 'c'.repeat(32), apiKeys: [hashApiKey(API_KEY)] },
    session: { controlRequestTimeoutMs: 1_500 },
    limits: { maxSessionsPerUser: 3 },
    cluster: { redis: redis.url, node, leaseTtlMs: LEASE_TTL_MS, keyPrefix: prefix },
    log: { level: 'info' },
    desktops: [
      { name: 'ex', ...desktop, sharing: 'exclusive', takeover: { users: ['carol'] } },
      { name: 'class', ...desktop, sharing: 'controlled', takeover: { groups: ['teachers'] } },
      { name: 'open', ...desktop },
    ],
  };
}

function as(user: string, groups: string[] = []): { headers: Record<string, string> } {
  return { headers: { 'x-forwarded-user': user, 'x-forwarded-groups': groups.join(',') } };
}

async function viewer(node: CliGateway, desktop: string, user: string, groups: string[] = []): Promise<Viewer> {
  const opened = await openViewer(`ws://127.0.0.1:${node.port}`, desktop, as(user, groups));
  viewers.push(opened);
  return opened;
}

function wsUrl(node: CliGateway, desktop: string): string {
  return node.wsUrl(`?desktop=${desktop}`);
}

function pointer(): { x: number; y: number } {
  const out = execFileSync('xdotool', ['getmouselocation', '--shell'], { env: { ...process.env, DISPLAY: `:${xvnc.display}` } }).toString();
  return { x: Number(/X=(\d+)/.exec(out)?.[1]), y: Number(/Y=(\d+)/.exec(out)?.[1]) };
}

/** Move the pointer to (x, y), then ask for the screen: once the update comes, Xvnc has handled the move, or the gateway dropped it. */
async function moveTo(client: TestClient, x: number, y: number): Promise<void> {
  client.ws.send(Buffer.concat([encodePointerEvent(x, y, 0), encodeUpdateRequest({ x: 0, y: 0, width: 16, height: 16 }, false)]));
  await client.nextMessage();
}

async function sessionsOf(node: CliGateway): Promise<{ id: string; user: string; desktop: string; node: string; role: string }[]> {
  const reply = await node.request('/api/sessions', as('root'));
  return (JSON.parse(reply.body) as { sessions: { id: string; user: string; desktop: string; node: string; role: string }[] }).sessions;
}

/** Wait out a restarted Redis's recovery on both nodes: an exclusive desktop's viewer page is no longer refused with 503. */
async function recovered(): Promise<void> {
  for (const node of [nodes.a, nodes.b]) {
    await waitFor(async () => (await node.request('/view/ex', as('nobody'))).status !== 503, 'the cluster store to have recovered');
  }
}

beforeAll(async () => {
  requireCommand('xdotool', 'xdotool');
  [redis, xvnc] = await Promise.all([startRedis(), startXvnc()]);
  [nodes.a, nodes.b] = await Promise.all([startCli(config('a', prefix)), startCli(config('b', prefix))]);
}, 60_000);

afterEach(async () => {
  for (const v of viewers.splice(0)) v.presence.close();
  closeOpenedSockets();
  await waitFor(async () => (await sessionsOf(nodes.a)).length === 0, 'every session to end on every node');
});

afterAll(async () => {
  await Promise.all([nodes.a?.stop(), nodes.b?.stop()]);
  await Promise.all([redis?.stop(), xvnc?.stop()]);
});

describe('across nodes', () => {
  it('holds an exclusive desktop for one session; the takeover rule takes it from its own window on another node', async () => {
    await viewer(nodes.a, 'ex', 'alice');
    const refused = await tryUpgrade(wsUrl(nodes.b, 'ex'), as('bob'));
    expect(refused).toMatchObject({ status: 409, body: expect.stringMatching(/^Desktop 'ex' is in use by alice since \d\d:\d\d UTC/) });
    expect((await tryUpgrade(wsUrl(nodes.b, 'ex'), as('alice'))).status).toBe(409);
    closeOpenedSockets();
    await waitFor(async () => (await tryUpgrade(wsUrl(nodes.b, 'ex'), as('carol'))).status === 101, 'the desktop to be free');
    closeOpenedSockets();
    await waitFor(async () => (await sessionsOf(nodes.a)).length === 0, 'carol’s probe to end');

    const first = await viewer(nodes.a, 'ex', 'carol');
    const second = await viewer(nodes.b, 'ex', 'carol');
    expect(await first.rfb.closed).toEqual({ code: 4409, reason: 'Taken over by carol from another window' });
    expect(second.rfb.ws.readyState).toBe(second.rfb.ws.OPEN);
  });

  it('hands control to a teacher on another node: the old controller’s pointer stops reaching Xvnc, the new one’s arrives', async () => {
    const alice = await viewer(nodes.a, 'class', 'alice');
    const tom = await viewer(nodes.b, 'class', 'tom', ['teachers']);
    await tom.presence.until((p) => p.controller?.user === 'alice' && p.people.length === 2, 'alice in control, both present');
    await moveTo(alice.rfb, 31, 32);
    await waitFor(() => pointer().x === 31 && pointer().y === 32, 'alice’s move to reach Xvnc');
    await moveTo(tom.rfb, 41, 42);
    expect(pointer()).toEqual({ x: 31, y: 32 });

    tom.presence.send({ type: 'take-control' });
    await tom.presence.until((p) => p.you.role === 'control', 'tom to have control');
    expect(await alice.presence.notice(/taken/)).toBe('Control was taken by tom');
    await alice.presence.until((p) => p.you.role === 'view' && p.controller?.user === 'tom', 'alice to see tom in control');
    await moveTo(alice.rfb, 51, 52);
    expect(pointer()).toEqual({ x: 31, y: 32 });
    await moveTo(tom.rfb, 61, 62);
    await waitFor(() => pointer().x === 61 && pointer().y === 62, 'tom’s move to reach Xvnc');
    expect(alice.rfb.ws.readyState).toBe(alice.rfb.ws.OPEN);
  });

  it('asks a controller on another node: denied, allowed, and unanswered', async () => {
    const alice = await viewer(nodes.a, 'class', 'alice');
    const bob = await viewer(nodes.b, 'class', 'bob');
    await bob.presence.until((p) => p.controller?.user === 'alice', 'alice in control');

    bob.presence.send({ type: 'request-control' });
    await alice.presence.until((p) => p.request?.user === 'bob', 'the request to reach alice');
    alice.presence.send({ type: 'answer', allow: false });
    expect(await bob.presence.notice(/said no/)).toBe('alice said no: control stays with them');

    bob.presence.send({ type: 'request-control' });
    expect(await bob.presence.notice(/did not answer/, 5_000)).toBe('alice did not answer: control stays with them');
    await alice.presence.until((p) => p.request === null, 'the lapsed request to go');

    bob.presence.send({ type: 'request-control' });
    await alice.presence.until((p) => p.request?.user === 'bob', 'the third request');
    alice.presence.send({ type: 'answer', allow: true });
    await bob.presence.until((p) => p.you.role === 'control', 'bob to have control');
    await moveTo(bob.rfb, 71, 72);
    await waitFor(() => pointer().x === 71, 'bob’s move to reach Xvnc');
    await moveTo(alice.rfb, 81, 82);
    expect(pointer()).toEqual({ x: 71, y: 72 });
  });

  it('lets an admin on one node list and end a session on the other', async () => {
    const alice = await viewer(nodes.a, 'open', 'alice');
    await viewer(nodes.b, 'open', 'bob');
    const listed = await sessionsOf(nodes.b);
    expect(listed.map((s) => [s.user, s.node]).sort()).toEqual([
      ['alice', 'a'],
      ['bob', 'b'],
    ]);
    const id = listed.find((s) => s.user === 'alice')?.id as string;
    expect((await nodes.b.request(`/api/sessions/${id}`, { method: 'DELETE', ...as('root') })).status).toBe(202);
    expect(await alice.rfb.closed).toEqual({ code: 4409, reason: 'Ended by an administrator (root)' });
    // Logged where it was done, with who did it.
    await waitFor(() => /"user":"root","action":"end"[^\n]*"msg":"admin action"/.test(nodes.b.output()), 'the admin action in node b’s log');
  });

  it('lets an admin on one node change the role of a session on the other: its input stops reaching Xvnc', async () => {
    const carol = await viewer(nodes.a, 'class', 'carol');
    await carol.presence.until((p) => p.you.role === 'control', 'carol to have control');
    const id = (await sessionsOf(nodes.b)).find((s) => s.user === 'carol')?.id as string;
    const patch = { method: 'PATCH', body: JSON.stringify({ role: 'view' }), headers: { ...as('root').headers, 'content-type': 'application/json' } };
    expect((await nodes.b.request(`/api/sessions/${id}`, patch)).status).toBe(202);
    expect(await carol.presence.notice(/took control/)).toBe('root took control from you');
    const bob = await viewer(nodes.b, 'open', 'bob');
    await moveTo(bob.rfb, 43, 44);
    await waitFor(() => pointer().x === 43, 'bob’s move to reach Xvnc');
    await moveTo(carol.rfb, 41, 42); // answered once Xvnc has had everything before it: the move too, had it passed
    expect(pointer()).toEqual({ x: 43, y: 44 });
    expect((await sessionsOf(nodes.a)).find((s) => s.id === id)?.role).toBe('view');
  });

  it('uses a ticket once across nodes, and counts a user’s sessions on every node', async () => {
    const minted = await nodes.a.request('/api/tickets', {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ desktop: 'open', user: 'guest' }),
    });
    const { ticket } = JSON.parse(minted.body) as { ticket: string };
    expect((await tryUpgrade(nodes.a.wsUrl(`?desktop=open&ticket=${ticket}`))).status).toBe(101);
    const replay = await tryUpgrade(nodes.b.wsUrl(`?desktop=open&ticket=${ticket}`));
    expect(replay).toMatchObject({ status: 401, body: expect.stringContaining('already been used') });

    await viewer(nodes.a, 'open', 'dave');
    await viewer(nodes.b, 'open', 'dave');
    await viewer(nodes.a, 'open', 'dave');
    const fourth = await tryUpgrade(wsUrl(nodes.b, 'open'), as('dave'));
    expect(fourth).toMatchObject({ status: 429, body: expect.stringContaining('Too many sessions for dave (limit 3)') });
  });
});

describe('when Redis goes away', () => {
  it('keeps open sessions, refuses coordinated ones with 503, admits shared ones, and recovers by itself', async () => {
    const alice = await viewer(nodes.a, 'class', 'alice');
    const open = await viewer(nodes.b, 'open', 'bob');
    const kiosk = await viewer(nodes.a, 'ex', 'dave');
    await redis.stop();
    await waitFor(async () => (await nodes.a.request('/readyz')).status === 503, 'node a to report not ready');
    expect(JSON.parse((await nodes.b.request('/readyz')).body)).toEqual({ status: 'not ready', reason: 'the cluster store (Redis) cannot be reached' });

    // Open sessions go on: the controller's input still reaches Xvnc.
    await moveTo(alice.rfb, 91, 92);
    await waitFor(() => pointer().x === 91, 'alice’s move to reach Xvnc');
    await moveTo(open.rfb, 93, 94);
    await waitFor(() => pointer().x === 93, 'bob’s move to reach Xvnc');
    // New sessions that need the store are refused with its reason; shared ones are let in.
    for (const desktop of ['class', 'ex']) {
      const refused = await tryUpgrade(wsUrl(nodes.b, desktop), as('carol'));
      expect(refused).toMatchObject({ status: 503, body: expect.stringContaining('cannot reach its cluster store (Redis)') });
    }
    expect((await tryUpgrade(wsUrl(nodes.b, 'open'), as('carol'))).status).toBe(101);

    // Before their leases could lapse in Redis and go to someone else, node a stops acting on
    // them: the controller's input stops at the gateway, the exclusive session ends with 4503.
    expect(await alice.presence.notice(/paused/)).toBe('The cluster store (Redis) is out of reach: your input is paused until it is back');
    expect(await kiosk.rfb.closed).toEqual({ code: 4503, reason: "The cluster store (Redis) is out of reach: this session's hold on 'ex' lapsed" });
    await moveTo(open.rfb, 97, 98);
    await waitFor(() => pointer().x === 97, 'bob’s move to reach Xvnc');
    await moveTo(alice.rfb, 99, 100); // answered once Xvnc has had everything before it: the move too, had it passed
    expect(pointer()).toEqual({ x: 97, y: 98 });

    await redis.restart();
    await waitFor(async () => (await nodes.a.request('/readyz')).status === 200 && (await nodes.b.request('/readyz')).status === 200, 'both nodes ready again');
    // The empty Redis learns the live sessions and leases again from the nodes that hold them.
    await waitFor(async () => (await sessionsOf(nodes.b)).length === 3, 'all three sessions listed again');
    expect(await alice.presence.notice(/is back:/)).toBe('The cluster store (Redis) is back: you have control again');
    await recovered();
    const bob = await viewer(nodes.b, 'class', 'bob');
    await bob.presence.until((p) => p.controller?.user === 'alice' && p.you.role === 'view', 'alice in control again, bob watching');
    await moveTo(alice.rfb, 101, 102);
    await waitFor(() => pointer().x === 101, 'alice’s move to reach Xvnc again');
  }, 60_000);
  it('lets no one claim a desktop that only looks free after Redis restarts empty, until its holder wrote it back', async () => {
    const dave = await viewer(nodes.a, 'ex', 'dave');
    await redis.stop();
    await redis.restart(); // well within two thirds of the lease: dave's node has not fenced him
    await waitFor(async () => (await nodes.b.request('/readyz')).status === 200, 'node b ready again');
    const early = await tryUpgrade(wsUrl(nodes.b, 'ex'), as('carol'));
    expect(early).toMatchObject({ status: 503, body: expect.stringContaining('has just restarted and is learning who holds which desktop') });
    await recovered();
    const later = await tryUpgrade(wsUrl(nodes.b, 'ex'), as('carol'));
    expect(later).toMatchObject({ status: 409, body: expect.stringContaining('in use by dave') });
    expect(dave.rfb.ws.readyState).toBe(dave.rfb.ws.OPEN);
  }, 30_000);
});

describe('a node that dies', () => {
  it('frees its desktops and leaves the lists within the lease', async () => {
    const doomed = await startCli(config('doomed', prefix));
    try {
      await viewer(doomed, 'ex', 'alice');
      expect((await tryUpgrade(wsUrl(nodes.a, 'ex'), as('bob'))).status).toBe(409);
      expect((await sessionsOf(nodes.a)).map((s) => s.node)).toEqual(['doomed']);
      doomed.child.kill('SIGKILL');
      await doomed.exited;
      const killedAt = Date.now();
      await waitFor(async () => (await tryUpgrade(wsUrl(nodes.a, 'ex'), as('bob'))).status === 101, 'the desktop to come free', LEASE_TTL_MS + 5_000);
      expect(Date.now() - killedAt).toBeLessThan(LEASE_TTL_MS + 2_000);
      await waitFor(async () => (await sessionsOf(nodes.a)).every((s) => s.node !== 'doomed'), 'the dead node’s sessions to leave the list');
    } finally {
      await doomed.stop();
    }
  }, 30_000);
});

describe('logins across nodes (password mode)', () => {
  const USERS = { alice: { password: 'alice-cluster-pw' } };
  const login: Record<'a' | 'b', CliGateway> = {} as Record<'a' | 'b', CliGateway>;

  beforeAll(async () => {
    const files = { 'users.yaml': await usersYaml(USERS) };
    const passwordConfig = (node: string) => ({
      auth: { mode: 'password', usersFile: 'users.yaml', secret: 's'.repeat(32), maxFailedLogins: 4 },
      cluster: { redis: redis.url, node, leaseTtlMs: LEASE_TTL_MS, keyPrefix: `${prefix}login:` },
      log: { level: 'warn' },
      desktops: [{ name: 'open', host: '127.0.0.1', port: xvnc.port }],
    });
    [login.a, login.b] = await Promise.all([startCli(passwordConfig('la'), { files }), startCli(passwordConfig('lb'), { files })]);
  }, 30_000);

  afterAll(async () => {
    await Promise.all([login.a?.stop(), login.b?.stop()]);
  });

  it('logs out on every node: the cookie is refused and its sessions end everywhere', async () => {
    const cookie = await loggedIn(login.a.origin, 'alice', USERS.alice.password);
    const onA = await openDesktop(login.a.wsUrl('?desktop=open'), { headers: cookie });
    const onB = await openDesktop(login.b.wsUrl('?desktop=open'), { headers: cookie });
    const out = await login.a.request('/logout', { method: 'POST', headers: cookie });
    expect(out.status).toBe(303);
    expect(await onA.closed).toEqual({ code: 4401, reason: 'You logged out' });
    expect(await onB.closed).toEqual({ code: 4401, reason: 'You logged out' });
    expect((await tryUpgrade(login.b.wsUrl('?desktop=open'), { headers: cookie })).status).toBe(401);
  });

  it('counts failed logins on every node: guesses spread over two nodes are blocked on both', async () => {
    const from = { localAddress: '127.0.0.9' };
    // Two guesses on each node: neither node alone saw four, but the fourth guess is the one that blocks.
    const answers = [];
    for (const node of [login.a, login.b, login.a, login.b]) answers.push((await logIn(node.origin, 'alice', 'wrong guess', from)).status);
    expect(answers).toEqual([401, 401, 401, 429]);
    for (const node of [login.a, login.b]) {
      const blocked = await logIn(node.origin, 'alice', USERS.alice.password, from);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    }
  });
});

describe('starting a node', () => {
  it('stops with exit code 2 when Redis cannot be reached, naming it and why', async () => {
    const port = await freePort();
    const run = await runDeskgate(['--listen', '127.0.0.1:0', '--redis', `redis://:hunter2@127.0.0.1:${port}`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
    expect(run.stderr).toContain('ECONNREFUSED');
    expect(run.stdout + run.stderr).not.toContain('hunter2');
  });

  it('reads the password from its file and trusts the CA file for rediss://; a wrong password stops it', async () => {
    const certificate = makeCertificate('ec');
    const secure = await startRedis({ password: 'right-password', tls: certificate });
    try {
      const files = { 'redis-ca.pem': certificate.cert.toString(), 'right.txt': 'right-password\n', 'wrong.txt': 'wrong-password\n' };
      const config = (passwordFile: string) => ({ desktops: [], cluster: { redis: secure.url, redisCa: 'redis-ca.pem', redisPasswordFile: passwordFile } });
      const node = await startCli(config('right.txt'), { files });
      try {
        expect((await node.request('/readyz')).status).toBe(200);
      } finally {
        await node.stop();
      }
      const refused = await startCli(config('wrong.txt'), { files }).then(
        async (unexpected) => (await unexpected.stop(), 'started'),
        (err: unknown) => String(err),
      );
      expect(refused).toContain('WRONGPASS');
      expect(refused).not.toContain('wrong-password');
    } finally {
      await secure.stop();
    }
  });
});
