/**
 * TLS on the gateway's one port: HTTPS and WSS with a self-signed certificate made by
 * openssl, HSTS, Secure login cookies, no plain HTTP; and certificate reloads — by
 * `gateway.reload()` and by SIGHUP to the CLI — that new connections see while open
 * sessions keep relaying, with a broken key leaving the old certificate in place.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/schema.js';
import { createGateway } from '../../src/gateway.js';
import { cookieFrom, loggedIn, logIn, loginSetCookie, writeUsers } from '../helpers/auth.js';
import { spawnDeskgate } from '../helpers/cli-process.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { freePort, waitFor } from '../helpers/processes.js';
import { rfbServer, startPeer, type Peer } from '../helpers/tcp-peers.js';
import { makeCertificate, servedFingerprint, type Certificate } from '../helpers/tls.js';
import { closeOpenedSockets, openDesktop, roundTrip, tryUpgrade, viewerHandshake } from '../helpers/ws-client.js';

let dir: string;
let certFile: string;
let keyFile: string;

/** Put a certificate where the gateway's config points, as an operator renewing it would. */
function install(certificate: Pick<Certificate, 'cert' | 'key'>): void {
  writeFileSync(certFile, certificate.cert);
  writeFileSync(keyFile, certificate.key);
}

let first: Certificate;
let second: Certificate;

beforeAll(() => {
  first = makeCertificate('ec');
  second = makeCertificate('rsa');
  dir = mkdtempSync(join(tmpdir(), 'deskgate-tls-'));
  [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a gateway serving TLS', () => {
  let echo: Peer;
  let gw: RunningGateway;
  let ca: Buffer;
  let cookie: { Cookie: string };

  beforeAll(async () => {
    install(first);
    ca = first.cert;
    const usersFile = join(dir, 'users.yaml');
    await writeUsers(usersFile, { alice: { password: 'alice-password-1' } });
    echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    gw = await startGateway({
      tls: { cert: certFile, key: keyFile },
      auth: { mode: 'password', usersFile },
      demo: true,
      desktops: [`echo=127.0.0.1:${echo.port}`],
    });
    cookie = await loggedIn(gw.httpUrl, 'alice', 'alice-password-1', { ca });
  });
  afterEach(() => closeOpenedSockets());
  afterAll(async () => {
    await gw?.gateway.destroy();
    await echo?.close();
  });

  it('answers HTTPS with HSTS to a client that trusts the certificate', async () => {
    expect(gw.httpUrl).toBe(`https://127.0.0.1:${gw.port}`);
    const health = await send(`${gw.httpUrl}/healthz`, { ca });
    expect(health.status).toBe(200);
    expect(health.headers['strict-transport-security']).toBe('max-age=31536000');
    const login = await send(`${gw.httpUrl}/login`, { ca });
    expect(login.status).toBe(200);
    expect(login.headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('is refused by a client that does not trust the certificate', async () => {
    await expect(send(`${gw.httpUrl}/healthz`)).rejects.toThrow(/self[- ]signed/i);
  });

  it('gives no HTTP answer to plain HTTP on its port', async () => {
    await expect(send(`http://127.0.0.1:${gw.port}/healthz`)).rejects.toThrow();
  });

  it('sets the login cookie with Secure', async () => {
    const reply = await logIn(gw.httpUrl, 'alice', 'alice-password-1', { ca, origin: gw.httpUrl });
    expect(reply.status).toBe(303);
    expect(loginSetCookie(reply)).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
    expect(cookieFrom(reply).Cookie).toMatch(/^deskgate_login=/);
  });

  it('opens a desktop over WSS with the login cookie', async () => {
    expect(gw.wsUrl('demo')).toMatch(/^wss:\/\//);
    await openDesktop(gw.wsUrl('demo'), { headers: cookie, ca });
  });

  it('reload() serves a renewed certificate to new connections while an open session keeps relaying', async () => {
    install(first);
    await gw.gateway.reload();
    const session = await tryUpgrade(gw.wsUrl('echo'), { headers: cookie, ca });
    if (!('client' in session)) throw new Error(`upgrade refused with HTTP ${session.status}`);
    await viewerHandshake(session.client);
    expect(await roundTrip(session.client, 'before the renewal')).toBe('before the renewal');
    expect(await servedFingerprint(gw.port)).toBe(first.fingerprint);

    install(second);
    await gw.gateway.reload();
    expect(await servedFingerprint(gw.port)).toBe(second.fingerprint);
    expect(await roundTrip(session.client, 'after the renewal')).toBe('after the renewal');
    expect((await send(`${gw.httpUrl}/healthz`, { ca: second.cert })).status).toBe(200);
    await expect(send(`${gw.httpUrl}/healthz`, { ca: first.cert })).rejects.toThrow();
    await openDesktop(gw.wsUrl('demo'), { headers: cookie, ca: second.cert });
  });

  it('a broken key file makes reload() fail and the certificate in use keeps serving', async () => {
    install(second);
    await gw.gateway.reload();
    writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
    await expect(gw.gateway.reload()).rejects.toThrow();
    expect(await servedFingerprint(gw.port)).toBe(second.fingerprint);
    expect((await send(`${gw.httpUrl}/healthz`, { ca: second.cert })).status).toBe(200);

    // Regression: an RSA key beside an EC certificate passed OpenSSL's own check, was
    // installed, and every new handshake failed.
    install({ cert: first.cert, key: second.key });
    await expect(gw.gateway.reload()).rejects.toThrow(`the key in tls.key ${keyFile} does not belong to the certificate in tls.cert ${certFile}`);
    expect(await servedFingerprint(gw.port)).toBe(second.fingerprint);
    expect((await send(`${gw.httpUrl}/healthz`, { ca: second.cert })).status).toBe(200);
  });

  it('refuses to start with a key that belongs to another certificate', async () => {
    install({ cert: second.cert, key: first.key });
    const config = parseConfig({ listen: '127.0.0.1:0', tls: { cert: certFile, key: keyFile } });
    await expect(createGateway(config)).rejects.toThrow('does not belong to the certificate in tls.cert');
  });
});

describe('deskgate --tls-cert --tls-key', () => {
  it('serves the renewed certificate after SIGHUP', async () => {
    install(first);
    const port = await freePort();
    const cli = spawnDeskgate(['--listen', `127.0.0.1:${port}`, '--tls-cert', certFile, '--tls-key', keyFile]);
    try {
      const healthy = async (ca: Buffer) => (await send(`https://127.0.0.1:${port}/healthz`, { ca }).catch(() => undefined))?.status === 200;
      await waitFor(() => healthy(first.cert), `deskgate on port ${port} to answer /healthz over HTTPS`);
      expect(await servedFingerprint(port)).toBe(first.fingerprint);

      install(second);
      cli.child.kill('SIGHUP');
      await waitFor(async () => (await servedFingerprint(port)) === second.fingerprint, 'the renewed certificate');
      expect(await healthy(second.cert)).toBe(true);
      expect(cli.child.exitCode).toBeNull();
      expect(cli.output()).toContain('"msg":"reloaded"');
    } finally {
      await cli.stop();
    }
  });
});
