/**
 * The gateway speaking RFB to real TigerVNC servers (Xvnc): credentials it holds so the viewer
 * never sees them, VeNCrypt with X509 certificates and TLS from the first byte, both verified;
 * view-only enforced on the wire (the X server's pointer and keyboard are checked with
 * xdotool and xset, not the viewer page); and the shared flag the gateway sets itself.
 * The clients are raw WebSocket clients that ignore what a viewer page would say.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.js';
import { encodeKeyEvent, encodePointerEvent, encodeClientCutText, encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { requireCommand, waitFor } from '../helpers/processes.js';
import { connectTcp } from '../helpers/rfb-client.js';
import { makeCertificate, type Certificate } from '../helpers/tls.js';
import { closeOpenedSockets, connectWs, openDesktop, viewerHandshake, type TestClient } from '../helpers/ws-client.js';
import { startXvnc, writeVncPasswdFile, type Xvnc } from '../helpers/xvnc.js';

const PASSWORD = 'gw-s3cret';
const CAPS_LOCK = 0xffe5;

let dir: string;
/** A file written by `vncpasswd -f`, as Xvnc -PasswordFile reads it. */
let vncpasswdFile: string;
/** The same password as text, as an operator writes it for the gateway. */
let passwordFile: string;
let serverCert: Certificate;
let certFiles: { cert: string; key: string };
/** A certificate no server here uses: a CA that does not match. */
let strangerCert: Certificate;

const running: { stop(): Promise<void> | void }[] = [];
afterEach(() => closeOpenedSockets());
afterAll(async () => {
  for (const thing of running.splice(0).reverse()) await thing.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'deskgate-rfb-'));
  vncpasswdFile = join(dir, 'xvnc.passwd');
  writeVncPasswdFile(vncpasswdFile, PASSWORD);
  passwordFile = join(dir, 'lab.pass');
  writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  serverCert = makeCertificate('rsa');
  strangerCert = makeCertificate('rsa');
  certFiles = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  writeFileSync(certFiles.cert, serverCert.cert);
  writeFileSync(certFiles.key, serverCert.key);
  writeFileSync(join(dir, 'ca.pem'), serverCert.cert);
  writeFileSync(join(dir, 'stranger.pem'), strangerCert.cert);
});

async function xvnc(options: Parameters<typeof startXvnc>[0]): Promise<Xvnc> {
  const server = await startXvnc(options);
  running.push(server);
  return server;
}

async function gateway(input: ConfigInput): Promise<RunningGateway> {
  const gw = await startGateway(input);
  running.push({ stop: () => gw.gateway.destroy() });
  return gw;
}

/** Every message the gateway sends a raw client, from the first, as the viewer would receive them. */
function record(client: TestClient): Buffer[] {
  const messages: Buffer[] = [];
  client.ws.on('message', (data: Buffer) => messages.push(data));
  return messages;
}

describe('credentials held by the gateway', () => {
  let server: Xvnc;
  beforeAll(async () => {
    server = await xvnc({ securityTypes: ['VncAuth'], passwordFile: vncpasswdFile });
  });

  it.each([
    ['passwordFile', () => ({ passwordFile })],
    ['vncpasswdFile (the file Xvnc reads)', () => ({ vncpasswdFile })],
    ['passwordEnv', () => ({ passwordEnv: 'DESKGATE_TEST_LAB_PASSWORD' })],
  ])('opens a VNC-authenticated desktop with the password from %s; the viewer sees security None only', async (_name, vnc) => {
    process.env.DESKGATE_TEST_LAB_PASSWORD = PASSWORD;
    const gw = await gateway({ desktops: [{ name: 'lab', host: '127.0.0.1', port: server.port, vnc: vnc() }] });
    const client = connectWs(gw.wsUrl('lab'));
    const messages = record(client);
    await client.opened;
    const init = await viewerHandshake(client);

    expect(init.width).toBe(320);
    // Version, the security types (None only), the security result, ServerInit: no challenge.
    expect(messages.map((m) => m.length)).toEqual([12, 2, 4, 24 + Buffer.byteLength(init.name)]);
    expect([...messages[1]!]).toEqual([1, 1]);
    expect(gw.gateway.sessions()[0]).toMatchObject({ security: 'VNC authentication', connected: true });
  });

  it('a wrong configured password ends the session with 4502 and a reason naming the desktop, never the password', async () => {
    const wrong = join(dir, 'wrong.pass');
    writeFileSync(wrong, 'not-it\n');
    const gw = await gateway({ desktops: [{ name: 'lab', host: '127.0.0.1', port: server.port, vnc: { passwordFile: wrong } }] });
    const client = connectWs(gw.wsUrl('lab'));
    const messages = record(client);
    const closed = await client.closed;

    expect(closed.code).toBe(4502);
    expect(closed.reason).toMatch(/^Desktop 'lab' rejected the gateway's VNC credentials/);
    expect(closed.reason).not.toContain('not-it');
    expect(messages.some((m) => m.length === 16)).toBe(false);
  });

  it('pass-through still works without gateway-held credentials: the viewer answers the challenge itself', async () => {
    const gw = await gateway({ desktops: [`lab=127.0.0.1:${server.port}`] });
    const client = connectWs(gw.wsUrl('lab'));
    await client.opened;
    const { vncAuthResponse } = await import('../../src/rfb/vnc-auth.js');
    client.ws.send(Buffer.from('RFB 003.008\n'));
    const version = await client.nextMessage();
    expect(version.toString()).toBe('RFB 003.008\n');
    expect([...(await client.nextMessage())]).toEqual([1, 2]); // Xvnc offers VncAuth only
    client.ws.send(Buffer.from([2]));
    const challenge = await client.nextMessage();
    expect(challenge.length).toBe(16);
    client.ws.send(vncAuthResponse(PASSWORD, challenge));
    expect((await client.nextMessage()).readUInt32BE(0)).toBe(0);
    client.ws.send(Buffer.from([1]));
    expect((await client.nextMessage()).readUInt16BE(0)).toBe(320);
  });
});

describe('VeNCrypt with X509 certificates', () => {
  const desktop = (port: number, vnc: Record<string, unknown>): ConfigInput['desktops'] => [
    { name: 'lab', host: '127.0.0.1', port, vnc: { tls: 'vencrypt', ...vnc } },
  ];

  it.each([
    ['X509Vnc', true],
    ['X509None', false],
  ])('%s: works with the CA configured, and is refused when the CA or the pinned fingerprint does not match', async (type, needsPassword) => {
    const server = await xvnc({ securityTypes: [type], passwordFile: vncpasswdFile, x509: certFiles });
    const withPassword = needsPassword ? { passwordFile } : {};

    const good = await gateway({ desktops: desktop(server.port, { ...withPassword, ca: join(dir, 'ca.pem') }) });
    const client = await openDesktop(good.wsUrl('lab'));
    expect(good.gateway.sessions()[0]).toMatchObject({ security: `VeNCrypt ${type}`, connected: true });
    client.ws.close();

    const pinned = await gateway({ desktops: desktop(server.port, { ...withPassword, fingerprint: `sha256:${serverCert.fingerprint}` }) });
    await openDesktop(pinned.wsUrl('lab'));

    const wrongCa = await gateway({ desktops: desktop(server.port, { ...withPassword, ca: join(dir, 'stranger.pem') }) });
    const refused = await connectWs(wrongCa.wsUrl('lab')).closed;
    expect(refused.code).toBe(4502);
    expect(refused.reason).toMatch(/^Desktop 'lab': TLS failed \(.*(self-signed|verify|certificate)/i);

    const wrongPin = await gateway({ desktops: desktop(server.port, { ...withPassword, fingerprint: `sha256:${strangerCert.fingerprint}` }) });
    const unpinned = await connectWs(wrongPin.wsUrl('lab')).closed;
    expect(unpinned.code).toBe(4502);
    expect(unpinned.reason).toMatch(/^Desktop 'lab': TLS failed \(its certificate does not match vnc\.fingerprint; it is sha256:[0-9A-F:]+/);
  });

  it('never falls back to an unencrypted type when vnc.tls is vencrypt', async () => {
    const server = await xvnc({ securityTypes: ['VncAuth'], passwordFile: vncpasswdFile });
    const gw = await gateway({ desktops: desktop(server.port, { passwordFile, ca: join(dir, 'ca.pem') }) });
    const closed = await connectWs(gw.wsUrl('lab')).closed;
    expect(closed.code).toBe(4502);
    expect(closed.reason).toMatch(/does not offer VeNCrypt/);
  });

  it('anonymous TLS (TLSVnc) only when the desktop opts in', async () => {
    const server = await xvnc({ securityTypes: ['TLSVnc'], passwordFile: vncpasswdFile });
    const refusing = await gateway({ desktops: desktop(server.port, { passwordFile, insecureSkipVerify: true }) });
    const closed = await connectWs(refusing.wsUrl('lab')).closed;
    expect(closed.code).toBe(4502);
    expect(closed.reason).toMatch(/anonymousTls/);

    const optedIn = await gateway({ desktops: desktop(server.port, { passwordFile, anonymousTls: true }) });
    await openDesktop(optedIn.wsUrl('lab'));
    expect(optedIn.gateway.sessions()[0]).toMatchObject({ security: 'VeNCrypt TLSVnc' });
  });
});

describe('TLS from the first byte (a TLS wrapper in front of the VNC server)', () => {
  let server: Xvnc;
  let wrapper: TlsServer;
  let wrapperPort: number;
  beforeAll(async () => {
    server = await xvnc({});
    wrapper = createTlsServer({ cert: serverCert.cert, key: serverCert.key }, (secure) => {
      const plain = netConnect({ host: '127.0.0.1', port: server.port });
      secure.pipe(plain).pipe(secure);
      const cut = (): void => {
        secure.destroy();
        plain.destroy();
      };
      secure.on('error', cut);
      plain.on('error', cut);
    });
    await new Promise<void>((resolve) => wrapper.listen(0, '127.0.0.1', resolve));
    wrapperPort = (wrapper.address() as { port: number }).port;
    running.push({ stop: () => new Promise<void>((resolve) => wrapper.close(() => resolve())) });
  });

  it('follows the viewer over TLS when the CA matches, and refuses when it does not', async () => {
    const good = await gateway({ desktops: [{ name: 'lab', host: '127.0.0.1', port: wrapperPort, vnc: { tls: 'tls-first', ca: join(dir, 'ca.pem') } }] });
    const init = await viewerHandshake(await opened(connectWs(good.wsUrl('lab'))));
    expect(init.width).toBe(320);

    const bad = await gateway({ desktops: [{ name: 'lab', host: '127.0.0.1', port: wrapperPort, vnc: { tls: 'tls-first', ca: join(dir, 'stranger.pem') } }] });
    const closed = await connectWs(bad.wsUrl('lab')).closed;
    expect(closed.code).toBe(4502);
    expect(closed.reason).toMatch(/^Desktop 'lab': TLS failed/);
  });

  it('the dashboard probe reports it up through TLS', async () => {
    const gw = await gateway({ desktops: [{ name: 'lab', host: '127.0.0.1', port: wrapperPort, vnc: { tls: 'tls-first', ca: join(dir, 'ca.pem') } }] });
    const page = await (await fetch(`${gw.httpUrl}/`)).text();
    expect(page).toContain('data-desktop="lab" data-status="up"');
  });
});

describe('view-only enforced by the gateway', () => {
  let server: Xvnc;
  let gw: RunningGateway;
  const as = (user: string) => ({ headers: { 'x-forwarded-user': user } });

  beforeAll(async () => {
    requireCommand('xdotool', 'xdotool');
    requireCommand('xset', 'x11-xserver-utils');
    server = await xvnc({});
    gw = await gateway({
      auth: { mode: 'header' },
      trustProxy: ['127.0.0.1/32'],
      desktops: [{ name: 'lab', host: '127.0.0.1', port: server.port, viewOnly: { users: ['watcher'] } }],
    });
  });

  function pointer(): { x: number; y: number } {
    const out = execFileSync('xdotool', ['getmouselocation', '--shell'], { env: { ...process.env, DISPLAY: `:${server.display}` } }).toString();
    return { x: Number(/X=(\d+)/.exec(out)?.[1]), y: Number(/Y=(\d+)/.exec(out)?.[1]) };
  }

  function capsLock(): boolean {
    const out = execFileSync('xset', ['-display', `:${server.display}`, 'q']).toString();
    return /Caps Lock:\s+on/.test(out);
  }

  /** Input a raw client sends after the handshake: a click at (x, y), Caps Lock pressed and released, a clipboard update. */
  function sendInput(client: TestClient, x: number, y: number): void {
    client.ws.send(Buffer.concat([encodePointerEvent(x, y, 0), encodePointerEvent(x, y, 1), encodePointerEvent(x, y, 0)]));
    client.ws.send(Buffer.concat([encodeKeyEvent(CAPS_LOCK, true), encodeKeyEvent(CAPS_LOCK, false)]));
    client.ws.send(encodeClientCutText('from a view-only client'));
    client.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 320, height: 240 }, false)); // allowed: the screen comes back
  }

  it('drops a view-only client’s pointer, keys and clipboard; the same client with control moves the pointer', async () => {
    const start = pointer();
    const capsBefore = capsLock();
    const watcher = await openDesktop(gw.wsUrl('lab'), as('watcher'));
    sendInput(watcher, start.x === 40 ? 41 : 40, 50);
    await watcher.nextMessage(); // the FramebufferUpdate: everything before it reached Xvnc, or was dropped
    expect(pointer()).toEqual(start);
    expect(capsLock()).toBe(capsBefore);
    const session = gw.gateway.sessions().find((s) => s.user === 'watcher');
    expect(session).toMatchObject({ viewOnly: true, droppedMessages: 6 });

    const worker = await openDesktop(gw.wsUrl('lab'), as('worker'));
    sendInput(worker, 123, 77);
    await worker.nextMessage();
    await waitFor(() => pointer().x === 123 && pointer().y === 77, 'the pointer to move to (123, 77)');
    await waitFor(() => capsLock() !== capsBefore, 'Caps Lock to toggle');
    worker.ws.send(Buffer.concat([encodeKeyEvent(CAPS_LOCK, true), encodeKeyEvent(CAPS_LOCK, false)])); // put it back
    await waitFor(() => capsLock() === capsBefore, 'Caps Lock to toggle back');
  });

  it('switches a running session between view-only and control without reconnecting', async () => {
    const watcher = await openDesktop(gw.wsUrl('lab'), as('watcher'));
    const id = gw.gateway.sessions().find((s) => s.user === 'watcher' && s.connected)?.id as string;

    expect(gw.gateway.setViewOnly(id, false)).toBe(true);
    sendInput(watcher, 200, 100);
    await watcher.nextMessage();
    await waitFor(() => pointer().x === 200, 'the pointer to move to (200, 100)');

    expect(gw.gateway.setViewOnly(id, true)).toBe(true);
    sendInput(watcher, 210, 110);
    await watcher.nextMessage();
    expect(pointer()).toEqual({ x: 200, y: 100 });
    watcher.ws.send(Buffer.concat([encodeKeyEvent(CAPS_LOCK, true), encodeKeyEvent(CAPS_LOCK, false)]));
  });

  it('a session opened with control has no filter and cannot be switched', async () => {
    await openDesktop(gw.wsUrl('lab'), as('worker'));
    const id = gw.gateway.sessions().find((s) => s.user === 'worker' && s.connected)?.id as string;
    expect(gw.gateway.setViewOnly(id, true)).toBe(false);
  });
});

describe('the shared flag', () => {
  it('a client asking for exclusive access does not disconnect the others; without the gateway it would', async () => {
    const server = await xvnc({ alwaysShared: false });
    const gw = await gateway({ desktops: [`lab=127.0.0.1:${server.port}`] });

    const worker = await openDesktop(gw.wsUrl('lab'));
    const greedy = await opened(connectWs(gw.wsUrl('lab')));
    await viewerHandshake(greedy, { shared: false });
    worker.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
    await worker.nextMessage(); // still served
    expect(gw.gateway.sessions().filter((s) => s.connected)).toHaveLength(2);

    // The control: the same request straight to Xvnc disconnects the gateway's sessions.
    const direct = await connectTcp('127.0.0.1', server.port);
    await direct.rfb.handshake({ shared: false });
    const closed = await worker.closed;
    expect(closed).toEqual({ code: 4500, reason: "Desktop 'lab' closed the connection" });
    direct.socket.destroy();
  });
});

async function opened(client: TestClient): Promise<TestClient> {
  await client.opened;
  return client;
}
