/**
 * What a websockify user brings along, on an in-process gateway with raw clients: token files
 * (both layouts, any token text, re-read on change, on reload and on a miss, without dropping
 * sessions), `?token=`, the default desktop a query-less upgrade opens, WebSockets on any path,
 * an operator's web directory, and a lifetime for a gateway started on demand.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, openDesktop, tryUpgrade, upgradeStatus, type TestClient } from '../helpers/ws-client.js';

let demo: DemoDesktop;
let other: DemoDesktop;
let dir: string;
const running: RunningGateway[] = [];

beforeAll(async () => {
  [demo, other] = await Promise.all([startDemoDesktop({ host: '127.0.0.1', port: 0 }), startDemoDesktop({ host: '127.0.0.1', port: 0 })]);
});
afterAll(async () => {
  await Promise.all([demo?.close(), other?.close()]);
});
afterEach(async () => {
  closeOpenedSockets();
  await Promise.all(running.splice(0).map((g) => g.gateway.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function scratch(): string {
  dir = mkdtempSync(join(tmpdir(), 'deskgate-tokens-'));
  return dir;
}

async function gatewayWith(input: Parameters<typeof startGateway>[0], options: Parameters<typeof startGateway>[1] = {}): Promise<RunningGateway> {
  const started = await startGateway(input, options);
  running.push(started);
  return started;
}

const at = (d: DemoDesktop): string => `${d.host}:${d.port}`;
const tokenUrl = (g: RunningGateway, token: string): string => g.wsUrl(`?token=${encodeURIComponent(token)}`);

/** The session still relays: an update request gets an answer from the desktop. */
async function stillRelays(session: TestClient): Promise<void> {
  session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
  expect((await session.nextMessage()).length).toBeGreaterThan(0);
}

describe('token files', () => {
  it("open the desktop a token names, whatever the token's text, and list none of them", async () => {
    const tokens = scratch();
    // websockify's own test data writes base64-like and dotted tokens; one file holds several lines.
    writeFileSync(join(tokens, 'lab'), `# lab machines\nhost1: ${at(demo)}\n\naGVsbG8+/w==: ${at(other)}\nvm.7: [::ffff:127.0.0.1]:${other.port}\n`);
    const g = await gatewayWith({ tokens: { source: tokens } });
    const first = await openDesktop(tokenUrl(g, 'host1'));
    const second = await openDesktop(tokenUrl(g, 'aGVsbG8+/w=='));
    await stillRelays(first);
    await stillRelays(second);
    expect(await upgradeStatus(tokenUrl(g, 'vm.7'))).toBe(101);
    expect(await upgradeStatus(g.wsUrl('?desktop=host1'))).toBe(101); // a plain token is a desktop name too
    const unknown = await tryUpgrade(tokenUrl(g, 'nope'));
    expect(unknown).toMatchObject({ status: 404, body: "There is no desktop named 'nope'\n" });
    const malformed = await tryUpgrade(g.wsUrl('?token=a%01b'));
    expect(malformed.status).toBe(400);
    const dashboard = await send(`${g.httpUrl}/`);
    expect(dashboard.body).not.toContain('host1');
    expect(dashboard.body).not.toContain('aGVsbG8');
    // Our own viewer opens a token too, by the token's name (one without a slash: it is a path segment).
    expect((await send(`${g.httpUrl}/view/vm.7`)).status).toBe(200);
  });

  it('are listed on the dashboard when the operator says so', async () => {
    const tokens = scratch();
    writeFileSync(join(tokens, 'lab'), `host1: ${at(demo)}\n`);
    const g = await gatewayWith({ tokens: { source: tokens, listed: true } });
    expect((await send(`${g.httpUrl}/`)).body).toContain('host1');
  });

  it('are read again when they change, without dropping the sessions they opened', async () => {
    const tokens = scratch();
    const file = join(tokens, 'tokens.cfg');
    writeFileSync(file, `one: ${at(demo)}\n`);
    const g = await gatewayWith({ tokens: { source: file } });
    const session = await openDesktop(tokenUrl(g, 'one'));
    // As tools write them: a new file renamed over the old one.
    writeFileSync(`${file}.tmp`, `two: ${at(other)}\n`);
    renameSync(`${file}.tmp`, file);
    await waitFor(async () => (await upgradeStatus(tokenUrl(g, 'one'))) === 404, "token 'one' to be gone");
    expect(await upgradeStatus(tokenUrl(g, 'two'))).toBe(101);
    await stillRelays(session);
    // And edited in place.
    writeFileSync(file, `two: ${at(other)}\none: ${at(demo)}\n`);
    await waitFor(async () => (await upgradeStatus(tokenUrl(g, 'one'))) === 101, "token 'one' to be back");
    await stillRelays(session);
  });

  it('find a token written just before the browser asks for it', async () => {
    const tokens = scratch();
    writeFileSync(join(tokens, 'a'), `old: ${at(demo)}\n`);
    const g = await gatewayWith({ tokens: { source: tokens } });
    // A console writes the token and sends the browser at once: no waiting for the watcher.
    for (let i = 0; i < 5; i += 1) {
      writeFileSync(join(tokens, `console-${i}`), `fresh-${i}: ${at(demo)}\n`);
      expect(await upgradeStatus(tokenUrl(g, `fresh-${i}`))).toBe(101);
    }
  });

  it('take the directory of file names (TokenFileName), and skip what they cannot use, saying why', async () => {
    const tokens = scratch();
    writeFileSync(join(tokens, 'kiosk-1'), `${at(demo)}\n`);
    writeFileSync(join(tokens, 'kiosk-2'), 'not an address\n');
    writeFileSync(join(tokens, '.hidden'), `${at(demo)}\n`);
    const { logger, lines } = captureLogs();
    const g = await gatewayWith({ tokens: { source: tokens, format: 'filenames' } }, { logger });
    expect(await upgradeStatus(tokenUrl(g, 'kiosk-1'))).toBe(101);
    expect(await upgradeStatus(tokenUrl(g, 'kiosk-2'))).toBe(404);
    expect(await upgradeStatus(tokenUrl(g, '.hidden'))).toBe(404);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        file: join(tokens, 'kiosk-2'),
        msg: "token file: expected host:port, [IPv6]:port or unix_socket:/path, got 'not an address'",
      }),
    );
  });

  it('skip bad lines and tokens that configured desktops already name, and keep the rest', async () => {
    const tokens = scratch();
    writeFileSync(join(tokens, 'mixed'), `good: ${at(demo)}\nno separator here\nlab: ${at(other)}\ngood: ${at(other)}\n`);
    const { logger, lines } = captureLogs();
    const g = await gatewayWith({ desktops: [`lab=${at(demo)}`], tokens: { source: tokens } }, { logger });
    expect(await upgradeStatus(tokenUrl(g, 'good'))).toBe(101);
    const problems = lines.filter((l) => l.msg.startsWith('token file:')).map((l) => [l.line, l.msg]);
    expect(problems).toEqual([
      [2, "token file: expected 'token: host:port'"],
      [4, "token file: token 'good' is given again"],
      [undefined, "token file: token 'lab' is skipped: a configured desktop has that name"],
    ]);
    // The configured desktop keeps its own address.
    const session = await openDesktop(g.wsUrl('?desktop=lab'));
    await stillRelays(session);
  });

  it('stop the start when the source cannot be read at all, and keep the last tokens when it later cannot', async () => {
    const missing = join(scratch(), 'missing');
    await expect(startGateway({ tokens: { source: missing } })).rejects.toThrow(`tokens.source ${missing} cannot be read`);
    const file = join(dir, 'tokens');
    writeFileSync(file, `kept: ${at(demo)}\n`);
    const { logger, lines } = captureLogs();
    const g = await gatewayWith({ tokens: { source: file } }, { logger });
    rmSync(file);
    await g.gateway.reload();
    expect(lines.some((l) => l.msg.includes('cannot be read, the tokens stay as they were'))).toBe(true);
    expect(await upgradeStatus(tokenUrl(g, 'kept'))).toBe(101);
  });

  it('are read again by reload (SIGHUP)', async () => {
    const tokens = scratch();
    const sub = join(tokens, 'd');
    mkdirSync(sub);
    const file = join(sub, 'tokens');
    writeFileSync(file, `a: ${at(demo)}\n`);
    const g = await gatewayWith({ tokens: { source: sub } });
    // A symlinked directory swapped under the watcher is the case only a reload can see.
    const replacement = join(tokens, 'e');
    mkdirSync(replacement);
    writeFileSync(join(replacement, 'tokens'), `b: ${at(demo)}\n`);
    rmSync(sub, { recursive: true });
    symlinkSync(replacement, sub);
    await g.gateway.reload();
    expect(await upgradeStatus(tokenUrl(g, 'b'))).toBe(101);
  });
});

describe('a single-target gateway', () => {
  it('opens its default desktop for an upgrade that names none, on any path when asked', async () => {
    const g = await gatewayWith({ desktops: [`vnc=${at(demo)}`], defaultDesktop: 'vnc', websocketPath: '*' });
    const base = `ws://127.0.0.1:${g.port}`;
    for (const path of ['/websockify', '/', '/any/path/at/all']) {
      const session = await openDesktop(`${base}${path}`);
      await stillRelays(session);
    }
    // The gateway's own channel keeps its path.
    expect((await tryUpgrade(`${base}/presence`)).status).toBe(400);
  });

  it('keeps one WebSocket path when configured so, and refuses a default desktop that does not exist', async () => {
    const g = await gatewayWith({ desktops: [`vnc=${at(demo)}`], websocketPath: '/ws/vnc' });
    expect(await upgradeStatus(`ws://127.0.0.1:${g.port}/ws/vnc?desktop=vnc`)).toBe(101);
    expect(await upgradeStatus(`ws://127.0.0.1:${g.port}/websockify?desktop=vnc`)).toBe(404);
    expect(await upgradeStatus(`ws://127.0.0.1:${g.port}/ws/vnc`)).toBe(400);
    const viewer = await send(`${g.httpUrl}/view/vnc`);
    expect(viewer.body).toContain('data-websocket-path="ws/vnc"');
    await expect(startGateway({ desktops: [`vnc=${at(demo)}`], defaultDesktop: 'vnx' })).rejects.toThrow(
      "defaultDesktop (--default-desktop): there is no desktop named 'vnx'",
    );
  });
});

describe('a web directory', () => {
  it("serves the operator's files below the gateway's own routes, and nothing outside the directory", async () => {
    const web = scratch();
    mkdirSync(join(web, 'app'));
    writeFileSync(join(web, 'vnc.html'), '<!doctype html><title>vnc</title>');
    writeFileSync(join(web, 'app', 'ui.js'), 'export {};');
    writeFileSync(join(web, 'app', 'bell.oga'), 'OggS');
    writeFileSync(join(tmpdir(), 'deskgate-outside.html'), 'secret');
    symlinkSync(join(tmpdir(), 'deskgate-outside.html'), join(web, 'escape.html'));
    const g = await gatewayWith({ web, frameAncestors: ['https://console.example.com'] });
    const page = await send(`${g.httpUrl}/vnc.html`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe("frame-ancestors 'self' https://console.example.com");
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect((await send(`${g.httpUrl}/app/ui.js`)).headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await send(`${g.httpUrl}/app/bell.oga`)).headers['content-type']).toBe('audio/ogg');
    for (const path of ['/escape.html', '/app/../../deskgate-outside.html', '/missing.html', '/app']) {
      expect((await send(`${g.httpUrl}${path}`)).status, path).toBe(404);
    }
    // The dashboard is still the gateway's.
    expect((await send(`${g.httpUrl}/`)).body).toContain('demo');
    rmSync(join(tmpdir(), 'deskgate-outside.html'));
  });

  it('is behind the login like every page', async () => {
    const web = scratch();
    writeFileSync(join(web, 'vnc.html'), '<!doctype html><title>vnc</title>');
    writeFileSync(join(web, 'users.yaml'), 'users: {}\n');
    const g = await gatewayWith({ web, auth: { mode: 'password', usersFile: join(web, 'users.yaml') } });
    const page = await send(`${g.httpUrl}/vnc.html`);
    expect(page.status).toBe(303);
    expect(page.headers.location).toBe('./login?next=vnc.html');
  });
});

describe('a lifetime', () => {
  it('ends a gateway once no session has been open for exitAfterIdleMs', async () => {
    const g = await gatewayWith({ desktops: [`vnc=${at(demo)}`], lifetime: { exitAfterIdleMs: 300 } });
    const session = await openDesktop(g.wsUrl('vnc'));
    await new Promise((resolve) => setTimeout(resolve, 600));
    await stillRelays(session); // an open session keeps it up however long
    session.ws.close();
    const started = Date.now();
    await g.gateway.stopped;
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('takes no new session after acceptForMs, and ends when the last one does', async () => {
    const g = await gatewayWith({ desktops: [`vnc=${at(demo)}`], lifetime: { acceptForMs: 300 } });
    const session = await openDesktop(g.wsUrl('vnc'));
    await new Promise((resolve) => setTimeout(resolve, 400));
    await expect(tryUpgrade(g.wsUrl('vnc'))).rejects.toThrow(/ECONNREFUSED/); // no longer listening
    await stillRelays(session);
    let stopped = false;
    void g.gateway.stopped.then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    session.ws.close();
    await g.gateway.stopped;
  });
});
