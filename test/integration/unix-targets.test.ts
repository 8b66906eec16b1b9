/**
 * Desktops on Unix sockets (websockify's --unix-target): a real TigerVNC listening on a socket,
 * reached as a configured desktop, as an allowed ad-hoc `?target=unix:` and through a TLS
 * wrapper on a socket, and probed by the dashboard. Ad-hoc sockets are refused before the 101
 * (HTTP 403, DG_ERR_FORBIDDEN) without a `unix` rule, outside its directory, by `..` and by a
 * symlink leading out; canary sockets count connections to prove none was attempted.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { captureLogs } from '../helpers/log-capture.js';
import { NOVNC_PIXEL_FORMAT } from '../helpers/rfb-client.js';
import { makeCertificate } from '../helpers/tls.js';
import { closeOpenedSockets, connectRfb, connectWs, tryUpgrade, viewerHandshake } from '../helpers/ws-client.js';
import { startXvnc, type Xvnc } from '../helpers/xvnc.js';

/** A socket that counts the connections it accepts, and cuts them. */
interface Canary {
  readonly accepted: number;
  close(): Promise<void>;
}

async function startCanary(path: string): Promise<Canary> {
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    socket.destroy();
  });
  await listenOn(server, path);
  return {
    get accepted() {
      return accepted;
    },
    close: () => closeServer(server),
  };
}

function listenOn(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** How an upgrade is answered: a refusal's HTTP status and reason, or 'a WebSocket' (cut after the test). */
async function refusalOf(url: string): Promise<{ status: number; reason: string } | 'a WebSocket'> {
  const answer = await tryUpgrade(url);
  return 'client' in answer ? 'a WebSocket' : { status: answer.status, reason: answer.body.trimEnd() };
}

const target = (path: string): string => `?target=${encodeURIComponent(`unix:${path}`)}`;

describe('desktops on Unix sockets', () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'dg-unix-')));
  const allowed = join(root, 'allowed');
  const outside = join(root, 'outside');
  const vncSocket = join(allowed, 'xvnc.sock');
  const gateways: RunningGateway[] = [];
  let xvnc: Xvnc;
  let inside: Canary;
  let trap: Canary;

  beforeAll(async () => {
    mkdirSync(allowed);
    mkdirSync(outside);
    xvnc = await startXvnc({ unixSocket: vncSocket, width: 320, height: 240 });
    await xvnc.paint('#3366ff');
    [inside, trap] = await Promise.all([startCanary(join(allowed, 'canary.sock')), startCanary(join(outside, 'trap.sock'))]);
    symlinkSync(join(outside, 'trap.sock'), join(allowed, 'escape.sock'));
  });
  afterEach(async () => {
    closeOpenedSockets();
    await Promise.all(gateways.splice(0).map((gw) => gw.gateway.destroy()));
  });
  afterAll(async () => {
    await Promise.all([xvnc?.stop(), inside?.close(), trap?.close()]);
    rmSync(root, { recursive: true, force: true });
  });

  async function gateway(...args: Parameters<typeof startGateway>): Promise<RunningGateway> {
    const gw = await startGateway(...args);
    gateways.push(gw);
    return gw;
  }

  /** The centre pixel of the desktop behind `url`, through the gateway (Raw, the encoding every server speaks). */
  async function centrePixel(url: string): Promise<number> {
    const { rfb, init } = await connectRfb(url);
    rfb.setPixelFormat(NOVNC_PIXEL_FORMAT);
    rfb.requestUpdate(false);
    await rfb.readUpdate();
    return rfb.pixel(init.width >> 1, init.height >> 1);
  }

  it('opens a configured socket desktop (socket: and NAME=unix:/PATH), logging its address as unix:/PATH', async () => {
    const { logger, lines } = captureLogs();
    const gw = await gateway({ desktops: [{ name: 'lab', socket: vncSocket }, `short=unix:${vncSocket}`] }, { logger });
    expect(await centrePixel(gw.wsUrl('lab'))).toBe(0x3366ff);
    expect(await centrePixel(gw.wsUrl('short'))).toBe(0x3366ff);
    expect(lines.filter((line) => line.msg === 'session start').map((line) => [line.desktop, line.upstream])).toEqual([
      ['lab', `unix:${vncSocket}`],
      ['short', `unix:${vncSocket}`],
    ]);
  });

  it('shows a socket desktop up on the dashboard, and a missing socket down, its sessions closed with 4502', async () => {
    const gw = await gateway({
      desktops: [
        { name: 'lab', socket: vncSocket },
        { name: 'gone', socket: join(allowed, 'gone.sock') },
      ],
    });
    const page = await (await fetch(`${gw.httpUrl}/`)).text();
    expect(page).toContain('data-desktop="lab" data-status="up"');
    expect(page).toMatch(/data-desktop="gone" data-status="down"[\s\S]*no such socket/);
    expect(await connectWs(gw.wsUrl('gone')).closed).toEqual({ code: 4502, reason: "Desktop 'gone' is not reachable (no such socket)" });
  });

  it('refuses every ad-hoc unix target without a unix rule, connecting to nothing', async () => {
    const none = await gateway({ desktops: [{ name: 'lab', socket: vncSocket }] });
    expect(await refusalOf(none.wsUrl(target(join(allowed, 'canary.sock'))))).toEqual({
      status: 403,
      reason: 'Ad-hoc targets are not enabled on this gateway',
    });
    const cidrOnly = await gateway({ targets: { allow: [{ cidr: '127.0.0.0/8', ports: '1-65535' }] } });
    expect(await refusalOf(cidrOnly.wsUrl(target(join(allowed, 'canary.sock'))))).toEqual({
      status: 403,
      reason: `Target unix:${allowed}/canary.sock is not allowed by this gateway's rules`,
    });
    expect(inside.accepted).toBe(0);
  });

  it('opens an ad-hoc unix target below a unix rule directory', async () => {
    const gw = await gateway({ targets: { allow: [{ unix: allowed }] } });
    expect(await centrePixel(gw.wsUrl(target(vncSocket)))).toBe(0x3366ff);
  });

  it('refuses a socket outside the directory, by .. or by a symlink leading out, connecting to nothing', async () => {
    const gw = await gateway({ targets: { allow: [{ unix: allowed }] } });
    const outsideName = `unix:${outside}/trap.sock`;
    for (const [path, name] of [
      [join(outside, 'trap.sock'), outsideName],
      [`${allowed}/../outside/trap.sock`, outsideName],
      [join(allowed, 'escape.sock'), `unix:${allowed}/escape.sock`],
    ] as const) {
      expect(await refusalOf(gw.wsUrl(target(path))), path).toEqual({ status: 403, reason: `Target ${name} is not allowed by this gateway's rules` });
    }
    expect(trap.accepted).toBe(0);
  });

  describe('TLS from the first byte over a Unix socket', () => {
    const certificate = makeCertificate('ec');
    const tlsSocket = join(allowed, 'tls.sock');
    const caFile = join(root, 'ca.pem');
    let wrapper: Server;

    beforeAll(async () => {
      writeFileSync(caFile, certificate.cert);
      // TLS on the outside, Xvnc's socket inside: a failure on either side ends both.
      wrapper = createTlsServer({ cert: certificate.cert, key: certificate.key }, (secure) => {
        pipeline(secure, netConnect({ path: vncSocket }), secure, () => {});
      });
      await listenOn(wrapper, tlsSocket);
    });
    afterAll(async () => {
      if (wrapper) await closeServer(wrapper);
    });

    it('follows the viewer with the certificate pinned, or checked against vnc.serverName, and the probe sees it up', async () => {
      const gw = await gateway({
        desktops: [
          { name: 'pinned', socket: tlsSocket, vnc: { tls: 'tls-first', fingerprint: `sha256:${certificate.fingerprint}` } },
          { name: 'named', socket: tlsSocket, vnc: { tls: 'tls-first', ca: caFile, serverName: '127.0.0.1' } },
          { name: 'misnamed', socket: tlsSocket, vnc: { tls: 'tls-first', ca: caFile, serverName: 'vnc.example.org' } },
        ],
      });
      for (const name of ['pinned', 'named']) {
        const client = connectWs(gw.wsUrl(name));
        await client.opened;
        expect((await viewerHandshake(client)).width, name).toBe(320);
      }
      const closed = await connectWs(gw.wsUrl('misnamed')).closed;
      expect(closed.code).toBe(4502);
      expect(closed.reason).toMatch(/^Desktop 'misnamed': TLS failed/);
      const page = await (await fetch(`${gw.httpUrl}/`)).text();
      expect(page).toContain('data-desktop="pinned" data-status="up"');
    });
  });
});
