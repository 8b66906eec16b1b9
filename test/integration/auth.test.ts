/**
 * Who may open which desktop: password logins (cookie flags, `next`, logout revoking the
 * cookie on the server and ending its sessions, users removed by a reload), the desktops' `allow` and `viewOnly`
 * rules on pages, dashboard and upgrade, header mode behind a trusted proxy, and the
 * per-address (forwarded) and per-user session limits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { cookieFrom, loggedIn, logIn, loginSetCookie, writeUsers, type TestUser } from '../helpers/auth.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, openDesktop, tryUpgrade, upgradeStatus } from '../helpers/ws-client.js';

const USERS: Record<string, TestUser> = {
  alice: { password: 'alice-password-1' },
  bob: { password: 'bob-password-2', groups: ['guests'] },
  carol: { password: 'carol-password-3', groups: ['staff'] },
  dave: { password: 'dave-password-4' },
};

let demo: DemoDesktop;
beforeAll(async () => {
  demo = await startDemoDesktop({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await demo?.close();
});

/** Desktops with rules, all showing the demo scene, so each session can prove itself by its RFB greeting. */
function ruledDesktops(rules: Record<string, object>) {
  return Object.entries(rules).map(([name, rule]) => ({ name, host: demo.host, port: demo.port, ...rule }));
}

/** Cut this file's WebSockets and wait until the gateway has let their sessions go. */
async function endSessions(gw: RunningGateway): Promise<void> {
  closeOpenedSockets();
  await waitFor(() => gw.gateway.sessions().length === 0, 'the sessions to end');
}

/** What a page and the upgrade answer to the same credentials. */
async function pageAndUpgrade(gw: RunningGateway, desktop: string, headers: Record<string, string>, localAddress?: string) {
  const page = await send(`${gw.httpUrl}/view/${desktop}`, { headers, localAddress });
  return { page: page.status, upgrade: await upgradeStatus(gw.wsUrl(desktop), { headers, localAddress }) };
}

describe('password mode', () => {
  let dir: string;
  let usersFile: string;
  let gw: RunningGateway;
  const logs = captureLogs();
  let as: Record<'alice' | 'bob' | 'carol', { Cookie: string }>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'deskgate-auth-'));
    usersFile = join(dir, 'users.yaml');
    await writeUsers(usersFile, USERS);
    gw = await startGateway(
      {
        auth: { mode: 'password', usersFile },
        demo: true,
        desktops: ruledDesktops({
          secret: { allow: { users: ['alice'] } },
          'staff-room': { allow: { groups: ['staff'] } },
          gallery: { viewOnly: { groups: ['guests'] } },
        }),
      },
      { logger: logs.logger },
    );
    const login = (user: keyof typeof as) => loggedIn(gw.httpUrl, user, USERS[user]?.password as string);
    as = { alice: await login('alice'), bob: await login('bob'), carol: await login('carol') };
  });
  afterEach(() => endSessions(gw));
  afterAll(async () => {
    await gw?.gateway.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('login and logout', () => {
    it('logs in with the form: 303 to next and an HttpOnly, SameSite=Strict cookie, not Secure over plain HTTP', async () => {
      const reply = await logIn(gw.httpUrl, 'alice', 'alice-password-1', { next: 'view/demo', origin: gw.httpUrl });
      expect(reply.status).toBe(303);
      expect(reply.headers.location).toBe('./view/demo');
      const cookie = loginSetCookie(reply);
      expect(cookie).toMatch(/^deskgate_login=[\w-]+\.[\w-]+\.[\w-]+; /);
      expect(cookie).toContain('; HttpOnly');
      expect(cookie).toContain('; SameSite=Strict');
      expect(cookie).toContain('; Path=/');
      expect(cookie).not.toMatch(/;\s*Secure/i);
    });

    it('the login cookie opens the dashboard, the viewer and a session to the demo desktop', async () => {
      const dashboard = await send(`${gw.httpUrl}/`, { headers: as.alice });
      expect(dashboard.status).toBe(200);
      expect(dashboard.body).toContain('data-desktop="demo"');
      expect(dashboard.body).toContain('action="./logout"');
      expect((await send(`${gw.httpUrl}/view/demo`, { headers: as.alice })).status).toBe(200);
      await openDesktop(gw.wsUrl('demo'), { headers: as.alice });
    });

    it('without a login, sends pages to the login form and refuses the upgrade with 401', async () => {
      const page = await send(`${gw.httpUrl}/view/demo`);
      expect(page.status).toBe(303);
      expect(page.headers.location).toBe('../login?next=view%2Fdemo');
      const refused = await tryUpgrade(gw.wsUrl('demo'));
      expect(refused).toMatchObject({ status: 401, body: 'Log in first\n' });
    });

    it('answers a wrong password with 401, the login page saying so, and no cookie', async () => {
      const reply = await logIn(gw.httpUrl, 'alice', 'not-her-password');
      expect(reply.status).toBe(401);
      expect(reply.body).toContain('Wrong user name or password');
      expect(reply.body).toContain('id="login-user"');
      expect(reply.headers['set-cookie']).toBeUndefined();
    });

    it('follows next only to a path on this gateway', async () => {
      const landing = async (next: string) => (await logIn(gw.httpUrl, 'carol', 'carol-password-3', { next })).headers.location;
      for (const next of ['//evil.example', 'https://evil.example', '/\\evil.example']) {
        const location = await landing(next);
        expect(location, next).toBe('./');
        expect(new URL(location as string, `${gw.httpUrl}/login`).origin, next).toBe(new URL(gw.httpUrl).origin);
      }
      expect(await landing('view/staff-room?from=dashboard')).toBe('./view/staff-room?from=dashboard');
    });

    it('refuses a login form posted from another site with 403 and sets no cookie', async () => {
      const reply = await logIn(gw.httpUrl, 'alice', 'alice-password-1', { origin: 'https://evil.example' });
      expect(reply.status).toBe(403);
      expect(reply.headers['set-cookie']).toBeUndefined();
    });

    it('logout revokes the cookie on the server and ends its sessions: the old value replayed afterwards is refused', async () => {
      const cookie = await loggedIn(gw.httpUrl, 'alice', 'alice-password-1');
      const session = await openDesktop(gw.wsUrl('demo'), { headers: cookie });
      const otherLogin = await openDesktop(gw.wsUrl('demo'), { headers: as.alice });

      const logout = await send(`${gw.httpUrl}/logout`, { method: 'POST', headers: cookie });
      expect(await session.closed).toEqual({ code: 4401, reason: 'You logged out' });
      expect(otherLogin.ws.readyState).toBe(otherLogin.ws.OPEN);
      expect(logout.status).toBe(303);
      expect(logout.headers.location).toBe('./login');
      expect(loginSetCookie(logout)).toMatch(/^deskgate_login=; .*Max-Age=0/);

      expect(await upgradeStatus(gw.wsUrl('demo'), { headers: cookie })).toBe(401);
      for (const path of ['/', '/view/demo']) {
        const page = await send(`${gw.httpUrl}${path}`, { headers: cookie });
        expect(page.status, path).toBe(303);
        expect(page.headers.location, path).toBe(path === '/' ? './login?next=' : '../login?next=view%2Fdemo');
      }
      // Alice's other login is a different cookie and stays valid.
      expect(await upgradeStatus(gw.wsUrl('demo'), { headers: as.alice })).toBe(101);
    });

    it('a user removed from the users file loses access and open sessions once the gateway reloads it', async () => {
      const cookie = await loggedIn(gw.httpUrl, 'dave', 'dave-password-4');
      expect((await send(`${gw.httpUrl}/`, { headers: cookie })).status).toBe(200);
      const session = await openDesktop(gw.wsUrl('demo'), { headers: cookie });
      const carols = await openDesktop(gw.wsUrl('demo'), { headers: as.carol });
      await writeUsers(usersFile, Object.fromEntries(Object.entries(USERS).filter(([name]) => name !== 'dave')));
      try {
        await gw.gateway.reload();
        expect(await session.closed).toEqual({ code: 4401, reason: 'Your account was removed or its password changed: log in again' });
        expect(carols.ws.readyState).toBe(carols.ws.OPEN);
        expect((await send(`${gw.httpUrl}/`, { headers: cookie })).status).toBe(303);
        expect(await upgradeStatus(gw.wsUrl('demo'), { headers: cookie })).toBe(401);
        expect((await logIn(gw.httpUrl, 'dave', 'dave-password-4')).status).toBe(401);
        expect(await upgradeStatus(gw.wsUrl('demo'), { headers: as.carol })).toBe(101);
      } finally {
        await writeUsers(usersFile, USERS);
        await gw.gateway.reload();
      }
    });
  });

  describe('desktop rules', () => {
    it('allow by user: only the named user may open the desktop, on the page and the upgrade', async () => {
      expect(await pageAndUpgrade(gw, 'secret', as.alice)).toEqual({ page: 200, upgrade: 101 });
      expect(await pageAndUpgrade(gw, 'secret', as.bob)).toEqual({ page: 403, upgrade: 403 });
      expect(await pageAndUpgrade(gw, 'secret', as.carol)).toEqual({ page: 403, upgrade: 403 });
      await openDesktop(gw.wsUrl('secret'), { headers: as.alice });
    });

    it('allow by group: members of the group may open the desktop, others get 403', async () => {
      expect(await pageAndUpgrade(gw, 'staff-room', as.carol)).toEqual({ page: 200, upgrade: 101 });
      expect(await pageAndUpgrade(gw, 'staff-room', as.alice)).toEqual({ page: 403, upgrade: 403 });
      const refused = await tryUpgrade(gw.wsUrl('staff-room'), { headers: as.bob });
      expect(refused).toMatchObject({ status: 403, body: "bob may not open desktop 'staff-room'\n" });
    });

    it('the dashboard lists only the desktops the user may open', async () => {
      const listed = async (user: keyof typeof as) => {
        const { body } = await send(`${gw.httpUrl}/`, { headers: as[user] });
        return [...body.matchAll(/data-desktop="([^"]+)"/g)].map((m) => m[1]).sort();
      };
      expect(await listed('alice')).toEqual(['demo', 'gallery', 'secret']);
      expect(await listed('bob')).toEqual(['demo', 'gallery']);
      expect(await listed('carol')).toEqual(['demo', 'gallery', 'staff-room']);
    });

    it('viewOnly by group: the viewer page says so and the session start is logged with viewOnly', async () => {
      const page = async (user: keyof typeof as) => (await send(`${gw.httpUrl}/view/gallery`, { headers: as[user] })).body;
      expect(await page('bob')).toContain('data-view-only="true"');
      expect(await page('alice')).toContain('data-view-only="false"');

      await openDesktop(gw.wsUrl('gallery'), { headers: as.bob });
      await openDesktop(gw.wsUrl('gallery'), { headers: as.alice });
      const started = (user: string) => logs.lines.find((l) => l.msg === 'session start' && l.desktop === 'gallery' && l.user === user);
      await waitFor(() => started('bob') !== undefined && started('alice') !== undefined, 'both session start lines');
      expect(started('bob')).toMatchObject({ viewOnly: true, remote: '127.0.0.1' });
      expect(started('alice')).toMatchObject({ viewOnly: false });
    });
  });
});

describe('header mode behind a trusted proxy', () => {
  let gw: RunningGateway;
  const proxy = (user: string, more: Record<string, string> = {}) => ({ 'X-Forwarded-User': user, ...more });
  /** A user's upgrade through the proxy on behalf of a client at `address`. */
  const from = (user: string, address: string) => ({ headers: proxy(user, { 'X-Forwarded-For': address }) });

  beforeAll(async () => {
    gw = await startGateway({
      auth: { mode: 'header' },
      trustProxy: ['127.0.0.1/32'],
      demo: true,
      desktops: ruledDesktops({ team: { allow: { groups: ['admins'] } } }),
      limits: { maxSessionsPerAddress: 1, maxSessionsPerUser: 2 },
    });
  });
  afterEach(() => endSessions(gw));
  afterAll(async () => {
    await gw?.gateway.destroy();
  });

  it('believes the identity headers from the trusted proxy, for pages and the upgrade', async () => {
    const dashboard = await send(`${gw.httpUrl}/`, { headers: proxy('erin') });
    expect(dashboard.status).toBe(200);
    expect(dashboard.body).toContain('data-desktop="demo"');
    expect(dashboard.body).not.toContain('action="/logout"');
    expect((await send(`${gw.httpUrl}/view/demo`, { headers: proxy('erin') })).status).toBe(200);
    await openDesktop(gw.wsUrl('demo'), { headers: proxy('erin') });
  });

  it('refuses the same headers from an address that is not a trusted proxy, and a request without a user, with 401', async () => {
    expect(await pageAndUpgrade(gw, 'demo', proxy('erin'), '127.0.0.2')).toEqual({ page: 401, upgrade: 401 });
    expect(await pageAndUpgrade(gw, 'demo', {})).toEqual({ page: 401, upgrade: 401 });
  });

  it('a group from the groups header grants a desktop allowed to that group', async () => {
    const admin = proxy('erin', { 'X-Forwarded-Groups': 'dev, admins' });
    const developer = proxy('finn', { 'X-Forwarded-Groups': 'dev' });
    expect(await pageAndUpgrade(gw, 'team', admin)).toEqual({ page: 200, upgrade: 101 });
    expect(await pageAndUpgrade(gw, 'team', developer)).toEqual({ page: 403, upgrade: 403 });
    expect((await send(`${gw.httpUrl}/`, { headers: admin })).body).toContain('data-desktop="team"');
    expect((await send(`${gw.httpUrl}/`, { headers: developer })).body).not.toContain('data-desktop="team"');
    await openDesktop(gw.wsUrl('team'), { headers: admin });
  });

  it('counts the per-address limit by the forwarded client address, not the proxy', async () => {
    await openDesktop(gw.wsUrl('demo'), from('u1', '203.0.113.5'));
    const refused = await tryUpgrade(gw.wsUrl('demo'), from('u2', '203.0.113.5'));
    expect(refused).toMatchObject({ status: 429, body: 'Too many sessions from 203.0.113.5 (limit 1)\n' });
    await openDesktop(gw.wsUrl('demo'), from('u2', '203.0.113.6'));
    expect(gw.gateway.sessions().length).toBe(2); // both through the one proxy address 127.0.0.1
  });

  it('refuses a user over maxSessionsPerUser with 429 while another user still gets in', async () => {
    await openDesktop(gw.wsUrl('demo'), from('frank', '198.51.100.10'));
    await openDesktop(gw.wsUrl('demo'), from('frank', '198.51.100.11'));
    const refused = await tryUpgrade(gw.wsUrl('demo'), from('frank', '198.51.100.12'));
    expect(refused).toMatchObject({ status: 429, body: 'Too many sessions for frank (limit 2)\n' });
    await openDesktop(gw.wsUrl('demo'), from('gina', '198.51.100.12'));
  });
});

describe('cookies carried into a second gateway', () => {
  it('a login cookie from one gateway does not open another (each signs with its own secret)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deskgate-auth-'));
    const usersFile = join(dir, 'users.yaml');
    await writeUsers(usersFile, { alice: USERS.alice as TestUser });
    const [first, second] = [await startGateway({ auth: { mode: 'password', usersFile } }), await startGateway({ auth: { mode: 'password', usersFile } })];
    try {
      const cookie = cookieFrom(await logIn(first.httpUrl, 'alice', 'alice-password-1'));
      expect(await upgradeStatus(first.wsUrl('demo'), { headers: cookie })).toBe(101);
      expect(await upgradeStatus(second.wsUrl('demo'), { headers: cookie })).toBe(401);
    } finally {
      await first.gateway.destroy();
      await second.gateway.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
