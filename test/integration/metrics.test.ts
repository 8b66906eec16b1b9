/**
 * Prometheus metrics: served on their own address only, moved by real sessions, refusals and
 * logins, and named as the README's table says (both ways).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { logIn, writeUsers } from '../helpers/auth.js';
import { send } from '../helpers/http-client.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, openDesktop, tryUpgrade } from '../helpers/ws-client.js';

let gw: RunningGateway;
let metricsUrl: string;

/** The value of one sample, e.g. `deskgate_sessions_started_total{desktop="demo"}`; 0 when absent. */
async function sample(name: string): Promise<number> {
  const text = (await send(metricsUrl)).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

beforeAll(async () => {
  gw = await startGateway({ demo: true, metrics: { listen: '127.0.0.1:0' } });
  const { port } = gw.gateway.metricsServer?.address() as AddressInfo;
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
});

afterAll(async () => {
  await gw?.gateway.close();
});

describe('metrics', () => {
  it('are served on their own address, not on the public port', async () => {
    expect((await send(`${gw.httpUrl}/metrics`)).status).toBe(404);
    const reply = await send(metricsUrl);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toContain('text/plain');
    expect(reply.body).toContain('process_cpu_seconds_total');
    expect((await send(metricsUrl.replace('/metrics', '/'))).status).toBe(404);
  });

  it('count sessions, their bytes, connect and handshake times, and refusals', async () => {
    const before = await sample('deskgate_sessions_started_total{desktop="demo"}');
    const client = await openDesktop(gw.wsUrl('demo'));
    await waitFor(async () => (await sample('deskgate_sessions_open{desktop="demo",role="control"}')) === 1, 'one open session');
    expect(await sample('deskgate_sessions_started_total{desktop="demo"}')).toBe(before + 1);
    expect(await sample('deskgate_upstream_connect_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(await sample('deskgate_rfb_handshake_seconds_count')).toBeGreaterThanOrEqual(1);
    client.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 16, height: 16 }, false)); // bytes to the VNC server, and an update back
    await client.nextMessage();
    const toBrowser = await sample('deskgate_relayed_bytes_total{direction="to_browser"}');
    expect(toBrowser).toBeGreaterThan(0);
    client.ws.close(1000);
    await waitFor(async () => (await sample('deskgate_sessions_ended_total{code="1000",by="browser"}')) >= 1, 'the session end to be counted');
    expect(await sample('deskgate_sessions_open{desktop="demo",role="control"}')).toBe(0);
    expect(await sample('deskgate_relayed_bytes_total{direction="to_browser"}')).toBeGreaterThanOrEqual(toBrowser);
    expect(await sample('deskgate_relayed_bytes_total{direction="to_upstream"}')).toBeGreaterThan(0);

    expect((await tryUpgrade(gw.wsUrl('nowhere'))).status).toBe(404);
    expect(await sample('deskgate_sessions_refused_total{error="DG_ERR_UNKNOWN_DESKTOP"}')).toBe(1);
    closeOpenedSockets();
  });

  it('are the ones the README lists, and no others', async () => {
    const exposed = new Set(
      (await send(metricsUrl)).body
        .split('\n')
        .filter((line) => line.startsWith('# TYPE deskgate_'))
        .map((line) => line.split(' ')[2]),
    );
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const listed = new Set([...readme.matchAll(/^\| `(deskgate_[a-z_]+)` \|/gm)].map((m) => m[1]));
    expect(listed).toEqual(exposed);
  });
});

describe('login metrics', () => {
  it('count logins that succeeded and failed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deskgate-metrics-'));
    const usersFile = join(dir, 'users.yaml');
    await writeUsers(usersFile, { alice: { password: 'alice-metrics-pw' } });
    const login = await startGateway({ demo: true, auth: { mode: 'password', usersFile }, metrics: { listen: '127.0.0.1:0' } });
    try {
      const { port } = login.gateway.metricsServer?.address() as AddressInfo;
      const scrape = async (): Promise<string> => (await send(`http://127.0.0.1:${port}/metrics`)).body;
      expect((await logIn(login.httpUrl, 'alice', 'wrong')).status).toBe(401);
      expect((await logIn(login.httpUrl, 'alice', 'alice-metrics-pw')).status).toBe(303);
      const text = await scrape();
      expect(text).toContain('deskgate_logins_total{result="failed"} 1');
      expect(text).toContain('deskgate_logins_total{result="succeeded"} 1');
      expect(text).toContain('deskgate_requests_refused_total{error="DG_ERR_UNAUTHENTICATED"} 1');
    } finally {
      await login.gateway.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
