/** Session limits refuse at the HTTP upgrade with 429; the maximum duration closes with 4408. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { waitFor } from '../helpers/processes.js';
import { rfbServer, startPeer, type Peer } from '../helpers/tcp-peers.js';
import { connectWs, openDesktop, type TestClient } from '../helpers/ws-client.js';

describe('session limits', () => {
  let echo: Peer;
  let gw: RunningGateway;
  const open: TestClient[] = [];

  beforeAll(async () => {
    echo = await startPeer((socket) => socket.pipe(socket));
    gw = await startGateway({ desktops: [`echo=127.0.0.1:${echo.port}`], limits: { maxSessions: 3, maxSessionsPerAddress: 2 } });
  });
  afterAll(async () => {
    open.forEach((client) => client.ws.terminate());
    await gw?.gateway.destroy();
    await echo?.close();
  });

  async function openFrom(localAddress: string): Promise<TestClient> {
    const client = connectWs(gw.wsUrl('echo'), { localAddress });
    await client.opened;
    open.push(client);
    return client;
  }

  it('refuses a client address over its limit with HTTP 429, others still get in', async () => {
    await openFrom('127.0.0.1');
    const second = await openFrom('127.0.0.1');
    const before = echo.accepted;
    await expect(connectWs(gw.wsUrl('echo'), { localAddress: '127.0.0.1' }).opened).rejects.toThrow('HTTP 429');
    await openFrom('127.0.0.2');
    await waitFor(() => echo.accepted === before + 1, 'the 127.0.0.2 session to connect');

    second.ws.close();
    await second.closed;
    await waitFor(() => gw.gateway.sessions().length === 2, 'the closed session to be forgotten');
    await openFrom('127.0.0.1'); // a freed slot can be used again
  });

  it('refuses any client once the gateway is at its global limit', async () => {
    expect(gw.gateway.sessions().length).toBe(3);
    await expect(connectWs(gw.wsUrl('echo'), { localAddress: '127.0.0.3' }).opened).rejects.toThrow('HTTP 429');
  });
});

describe('maximum session duration', () => {
  it('closes a busy session with 4408 once it has lasted maxDurationMs', async () => {
    const echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    const gw = await startGateway({ desktops: [`echo=127.0.0.1:${echo.port}`], session: { maxDurationMs: 1000 } });
    try {
      const client = await openDesktop(gw.wsUrl('echo'));
      const chatter = setInterval(() => client.ws.send(Buffer.from('x')), 50); // never idle
      const started = Date.now();
      const closed = await client.closed;
      clearInterval(chatter);
      expect(closed).toEqual({ code: 4408, reason: 'Session reached its maximum duration of 1 s' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      await gw.gateway.destroy();
      await echo.close();
    }
  });
});
