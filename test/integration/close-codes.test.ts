/**
 * Every way a session can be refused or end: refused before the 101 with its documented
 * HTTP status and reason, or closed with its documented close code and reason; and the
 * gateway still serving afterwards. Targets are TCP peers on loopback that speak RFB; the
 * canary counts accepted connections to prove that refused targets are never connected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, type SessionEnded } from '../../src/observe/events.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { freePort, requireCommand, waitFor, within } from '../helpers/processes.js';
import { rfbServer, startPeer, type Peer } from '../helpers/tcp-peers.js';
import { connectWs, openDesktop, roundTrip, tryUpgrade } from '../helpers/ws-client.js';

/** How an upgrade the gateway knows to refuse is answered: an HTTP status and reason, never a WebSocket. */
async function refusalOf(url: string): Promise<{ status: number; reason: string }> {
  const answer = await tryUpgrade(url);
  if ('client' in answer) {
    answer.client.ws.terminate();
    throw new Error(`expected a refusal before the 101, got a WebSocket for ${url}`);
  }
  return { status: answer.status, reason: answer.body.trimEnd() };
}

/** A listener whose accept queue is full: SYNs to it go unanswered, so connects time out. */
async function startBlackhole(): Promise<{ port: number; child: ChildProcess; fillers: Socket[] }> {
  requireCommand('python3', 'python3');
  const child = spawn(
    'python3',
    [
      '-c',
      [
        'import socket, sys, time',
        's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
        'print(s.getsockname()[1], flush=True)',
        'time.sleep(300)',
      ].join('\n'),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve) => child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  // Fill the queue: these complete the handshake and are never accepted.
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = createConnection({ host: '127.0.0.1', port });
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { port, child, fillers };
}

describe('close codes', () => {
  let echo: Peer;
  let canary: Peer;
  let downPort: number;
  let blackhole: Awaited<ReturnType<typeof startBlackhole>>;
  let gw: RunningGateway;

  beforeAll(async () => {
    echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    canary = await startPeer();
    downPort = await freePort();
    blackhole = await startBlackhole();
    gw = await startGateway({
      desktops: [`echo=127.0.0.1:${echo.port}`, `down=127.0.0.1:${downPort}`, `hole=127.0.0.1:${blackhole.port}`],
      session: { connectTimeoutMs: 300, idleTimeoutMs: 1000, maxMessageBytes: 4096 },
    });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
    await echo?.close();
    await canary?.close();
    blackhole?.fillers.forEach((s) => s.destroy());
    blackhole?.child.kill();
  });

  /**
   * How a refused session closes. The bound guards the closing handshake: a gateway that
   * stops reading the browser would only drop the socket after ws's 30 s fallback.
   */
  function closeOf(query: string) {
    return within(10_000, 'completed closing handshake', connectWs(gw.wsUrl(query)).closed);
  }

  /** A session that works: bytes go to the echo server and come back. */
  async function expectEchoWorks(): Promise<void> {
    const client = await openDesktop(gw.wsUrl('echo'));
    expect(await roundTrip(client, 'ping')).toBe('ping');
    client.ws.close(1000);
    expect((await client.closed).code).toBe(1000);
  }

  it('negotiates the binary subprotocol noVNC asks for, and accepts a client that asks for none', async () => {
    const withProtocol = connectWs(gw.wsUrl('echo'));
    await withProtocol.opened;
    expect(withProtocol.ws.protocol).toBe('binary');
    withProtocol.ws.close();
    const without = connectWs(gw.wsUrl('echo'), { protocols: [] });
    await without.opened;
    expect(without.ws.protocol).toBe('');
    without.ws.close();
    await Promise.all([withProtocol.closed, without.closed]);
  });

  it('unknown desktop -> HTTP 404 before the 101', async () => {
    expect(await refusalOf(gw.wsUrl('nosuch'))).toEqual({ status: 404, reason: "There is no desktop named 'nosuch'" });
  });

  it('malformed requests -> HTTP 400 before the 101', async () => {
    for (const query of ['?desktop=../etc', '?desktop=a&desktop=b', '?', '?target=127.0.0.1', '?target=2130706433:5900']) {
      expect((await refusalOf(gw.wsUrl(query))).status, query).toBe(400);
    }
  });

  it('ad-hoc target without allow rules -> HTTP 403 before the 101, and no TCP connection is made', async () => {
    expect(await refusalOf(gw.wsUrl(`?target=127.0.0.1:${canary.port}`))).toEqual({ status: 403, reason: 'Ad-hoc targets are not enabled on this gateway' });
    expect(canary.accepted).toBe(0);
  });

  it('VNC server down -> 4502 with the reason in words', async () => {
    expect(await closeOf('down')).toEqual({ code: 4502, reason: "Desktop 'down' is not reachable (connection refused)" });
  });

  it('VNC server not answering -> 4504 after the connect timeout', async () => {
    expect(await closeOf('hole')).toEqual({ code: 4504, reason: "Desktop 'hole' did not answer within 300 ms" });
  });

  it('text frame -> 1003', async () => {
    const client = await openDesktop(gw.wsUrl('echo'));
    client.ws.send('hello');
    expect((await client.closed).code).toBe(1003);
  });

  it('message over the size limit -> 1009', async () => {
    const client = await openDesktop(gw.wsUrl('echo'));
    client.ws.send(Buffer.alloc(8192));
    expect((await client.closed).code).toBe(1009);
  });

  it('no traffic for the idle timeout -> 4408', async () => {
    const client = await openDesktop(gw.wsUrl('echo'));
    const started = Date.now();
    const closed = await client.closed;
    expect(closed).toEqual({ code: 4408, reason: 'Session closed after 1 s without activity' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('keeps serving sessions after every refusal above', async () => {
    await expectEchoWorks();
    expect(gw.gateway.sessions().length).toBe(0);
  });

  it('refuses upgrades on other paths with HTTP 404 and no WebSocket', async () => {
    const client = connectWs(`ws://127.0.0.1:${gw.port}/other?desktop=echo`);
    await expect(client.opened).rejects.toThrow('upgrade refused with HTTP 404');
  });
});

describe('keepalive', () => {
  let echo: Peer;
  let gw: RunningGateway;
  const ends: SessionEnded[] = [];
  let unsubscribe: () => void;

  beforeAll(async () => {
    echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    gw = await startGateway({ desktops: [`echo=127.0.0.1:${echo.port}`], session: { keepaliveMs: 1000, idleTimeoutMs: 2500 } });
    unsubscribe = events.sessionEnded.subscribe((end) => ends.push(end));
  });
  afterAll(async () => {
    unsubscribe?.();
    await gw?.gateway.destroy();
    await echo?.close();
  });

  it('pings an idle browser, which stays until the idle timeout: pings are not activity', async () => {
    const client = await openDesktop(gw.wsUrl('echo'));
    let pings = 0;
    client.ws.on('ping', () => (pings += 1));
    const closed = await client.closed;
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(closed).toEqual({ code: 4408, reason: 'Session closed after 2.5 s without activity' });
  });

  it('cuts a browser that answers no ping, and logs why', async () => {
    const client = await openDesktop(gw.wsUrl('echo'), { autoPong: false });
    const started = Date.now();
    const closed = await client.closed;
    // The close frame is sent as the connection is cut: a peer that still reads sees it, a gone one sees nothing.
    expect([4408, 1006]).toContain(closed.code);
    expect(Date.now() - started).toBeLessThan(2_500);
    await waitFor(() => ends.some((e) => e.code === 4408 && /answered no ping/.test(e.reason)), 'the session end of the silent browser');
    expect(ends.find((e) => /answered no ping/.test(e.reason))).toMatchObject({
      reason: 'The browser answered no ping for 1 s: the connection is gone',
      by: 'gateway',
    });
  });
});

describe('with allow rules', () => {
  let canary: Peer;
  let allowed: Peer;
  let gw: RunningGateway;

  beforeAll(async () => {
    canary = await startPeer();
    allowed = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    gw = await startGateway({ targets: { allow: [{ cidr: '127.0.0.0/8', ports: String(allowed.port) }] } });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
    await canary?.close();
    await allowed?.close();
  });

  it('connects to an allowed target and refuses one outside the rules without connecting', async () => {
    const ok = await openDesktop(gw.wsUrl(`?target=127.0.0.1:${allowed.port}`));
    expect(await roundTrip(ok, 'hi')).toBe('hi');
    ok.ws.close();

    expect(await refusalOf(gw.wsUrl(`?target=127.0.0.1:${canary.port}`))).toEqual({
      status: 403,
      reason: `Target 127.0.0.1:${canary.port} is not allowed by this gateway's rules`,
    });
    expect((await refusalOf(gw.wsUrl(`?target=127.0.0.1:${gw.port}`))).status).toBe(403);
    expect((await refusalOf(gw.wsUrl('?target=169.254.169.254:80'))).status).toBe(403);
    expect(canary.accepted).toBe(0);
  });
});

describe('shutdown deadline', () => {
  it('cuts a session that does not finish the closing handshake once shutdownTimeoutMs has passed', async () => {
    const echo = await startPeer(rfbServer((socket) => socket.pipe(socket)));
    const gw = await startGateway({ desktops: [`echo=127.0.0.1:${echo.port}`], shutdownTimeoutMs: 300 });
    try {
      const client = await openDesktop(gw.wsUrl('echo'));
      await roundTrip(client, 'ping'); // bridged
      client.ws.pause(); // a browser that no longer reads: it never answers the close frame
      const started = Date.now();
      await gw.gateway.close();
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(gw.gateway.sessions().length).toBe(0);
      client.ws.resume();
      expect((await client.closed).code).toBe(1001);
    } finally {
      await gw.gateway.destroy();
      await echo.close();
    }
  });
});
