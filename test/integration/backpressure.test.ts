/**
 * Back-pressure both ways: whatever the peers do, the gateway holds at most about one
 * high-water mark per direction for a session, and every byte arrives intact and in order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { floodPattern, PatternChecker, readInBursts, rfbServer, startPeer, type Peer } from '../helpers/tcp-peers.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { openDesktop, sendPattern } from '../helpers/ws-client.js';

const MiB = 1024 * 1024;
const HIGH_WATER_MARK = MiB;

describe('back-pressure', () => {
  let source: Peer;
  let sink: Peer;
  let sinkChecker: PatternChecker;
  let gw: RunningGateway;
  const FLOOD_BYTES = 512 * MiB;
  const UPLOAD_BYTES = 64 * MiB;

  beforeAll(async () => {
    source = await startPeer(rfbServer((socket) => floodPattern(socket, FLOOD_BYTES)));
    sinkChecker = new PatternChecker();
    sink = await startPeer(rfbServer(readInBursts((chunk) => sinkChecker.check(chunk))));
    gw = await startGateway({
      desktops: [`flood=127.0.0.1:${source.port}`, `sink=127.0.0.1:${sink.port}`],
      session: { highWaterMarkBytes: HIGH_WATER_MARK },
    });
  });
  afterAll(async () => {
    await gw?.gateway.destroy();
    await source?.close();
    await sink?.close();
  });

  /** The most bytes the gateway held for any session, sampled every millisecond. */
  function watchBuffered(): { stop(): number } {
    let max = 0;
    const timer = setInterval(() => {
      for (const session of gw.gateway.sessions()) max = Math.max(max, session.bufferedBytes);
    }, 1);
    return {
      stop() {
        clearInterval(timer);
        return max;
      },
    };
  }

  it('VNC -> slow browser: 512 MiB arrive intact while the gateway buffers a bounded amount', async () => {
    const checker = new PatternChecker();
    const watch = watchBuffered();
    const client = await openDesktop(gw.wsUrl('flood'));
    client.onMessage((data) => checker.check(data));
    // Read in short bursts so the browser side is always the bottleneck.
    const reader = setInterval(() => {
      client.ws.resume();
      setTimeout(() => client.ws.pause(), 3);
    }, 6);
    const closed = await client.closed;
    clearInterval(reader);
    const maxBuffered = watch.stop();

    expect(checker.mismatchAt).toBe(-1);
    expect(checker.received).toBe(FLOOD_BYTES);
    expect(closed.code).toBe(4500); // the source ended the stream: the VNC side closed the session
    expect(maxBuffered).toBeGreaterThan(HIGH_WATER_MARK / 2); // the slow reader did hold the gateway back
    expect(maxBuffered).toBeLessThan(HIGH_WATER_MARK + 2 * MiB);
  }, 120_000);

  it('browser -> slow VNC server: 64 MiB arrive intact while the gateway buffers a bounded amount', async () => {
    const watch = watchBuffered();
    const client = await openDesktop(gw.wsUrl('sink'));
    await sendPattern(client, UPLOAD_BYTES);
    const deadline = Date.now() + 60_000;
    while (sinkChecker.received < UPLOAD_BYTES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const maxBuffered = watch.stop();
    client.ws.close();
    await client.closed;

    expect(sinkChecker.mismatchAt).toBe(-1);
    expect(sinkChecker.received).toBe(UPLOAD_BYTES);
    expect(maxBuffered).toBeGreaterThan(16 * 1024); // past the TCP write high-water mark: the sink held the gateway back
    expect(maxBuffered).toBeLessThan(2 * MiB);
  }, 120_000);
});
