/**
 * Relay stages on the bridge: a browser -> VNC filter that passes, drops or rewrites whole
 * messages, a VNC -> browser tap that sees exactly what the browser is sent, stages that end
 * the session with a catalogue error or by throwing, and back-pressure that still holds with
 * a stage in the way. Each test bridges a real WebSocket server to a real TCP peer on loopback,
 * wired as the session layer wires them (paused WebSocket, the connector, `upstreamRead`).
 */
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { errors } from '../../src/errors.js';
import { Bridge, type BridgeEnd, type BridgeEndings } from '../../src/relay/bridge.js';
import { buildConnector } from '../../src/relay/connector.js';
import type { BrowserTap, RelayStages, UpstreamFilter } from '../../src/relay/stages.js';
import { waitFor, within } from '../helpers/processes.js';
import { fillPattern, floodPattern, PatternChecker, readInBursts, startPeer, type Peer } from '../helpers/tcp-peers.js';
import { closeOpenedSockets, connectWs, sendPattern, type TestClient } from '../helpers/ws-client.js';

const MiB = 1024 * 1024;
const DESKTOP = "Desktop 'test'";
const INTERNAL = { code: 1011, reason: 'Unexpected gateway error' };

const endings: BridgeEndings = {
  idle: () => errors.idle('1 minute'),
  expired: () => errors.expired('10 minutes'),
  upstreamClosed: (err) => (err ? errors.upstreamBroke(DESKTOP, err.message) : errors.upstreamClosed(DESKTOP)),
  noPong: () => errors.noPong('1 minute'),
};
const connect = buildConnector({ timeoutMs: 5_000 });

/** Run after each test, last registered first: every server, peer and socket a test started. */
const teardown: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  closeOpenedSockets();
  for (const step of teardown.splice(0).reverse()) await step();
});

interface RelaySession {
  /** The gateway's end of the WebSocket. */
  ws: WebSocket;
  bridge: Bridge;
  /** Every end `onEnd` reported: exactly one once the session is over. */
  ends: BridgeEnd[];
  ended: Promise<BridgeEnd>;
}

interface Relay {
  url: string;
  /** The `index`th session, once its bridge has started. */
  session(index?: number): Promise<RelaySession>;
}

/** A WebSocket server on port 0 bridging each connection to the VNC peer on `vncPort`. */
async function startRelay(vncPort: number, stages?: RelayStages, highWaterMarkBytes = MiB): Promise<Relay> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  teardown.push(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  const started: RelaySession[] = [];
  wss.on('connection', (ws) => {
    ws.pause(); // as the session layer does: nothing is read until the VNC side exists
    ws.on('error', () => {});
    const ends: BridgeEnd[] = [];
    let onEnded: (end: BridgeEnd) => void = () => {};
    const ended = new Promise<BridgeEnd>((resolve) => (onEnded = resolve));
    const options = { endings, highWaterMarkBytes, idleTimeoutMs: 60_000, maxDurationMs: 600_000, keepaliveMs: 0, stages };
    const bridge = new Bridge(ws, options, (end) => {
      ends.push(end);
      onEnded(end);
    });
    const target = { kind: 'desktop' as const, name: 'test', host: '127.0.0.1', port: vncPort };
    connect(target, { onread: bridge.upstreamRead, writableHighWaterMark: highWaterMarkBytes }).then(
      (tcp) => {
        bridge.start(tcp);
        started.push({ ws, bridge, ends, ended });
      },
      () => ws.terminate(),
    );
  });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/`,
    async session(index = 0) {
      await waitFor(() => started[index] !== undefined, `session ${index} to be bridged`);
      return started[index] as RelaySession;
    },
  };
}

/** A VNC peer that keeps everything it receives; `onConnection` may also write. */
async function startCollector(onConnection: (socket: Socket) => void = () => {}): Promise<Peer & { received(): Buffer; closed: Promise<void> }> {
  const chunks: Buffer[] = [];
  let onClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const peer = await startPeer((socket) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', onClosed);
    onConnection(socket);
  });
  teardown.push(() => peer.close());
  return Object.assign(peer, { received: () => Buffer.concat(chunks), closed });
}

async function startPeerWithTeardown(onConnection: (socket: Socket) => void): Promise<Peer> {
  const peer = await startPeer(onConnection);
  teardown.push(() => peer.close());
  return peer;
}

async function open(relay: Relay): Promise<TestClient> {
  const client = connectWs(relay.url);
  await client.opened;
  return client;
}

/** RFB-like client messages: the first byte is the message type, 0-5 in turn; lengths vary. */
function clientMessages(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const message = Buffer.alloc(3 + ((i * 37) % 300), i & 0xff);
    message[0] = i % 6;
    message.writeUInt16BE(i, 1);
    return message;
  });
}

/** Bytes [offset, offset + length) of the test pattern stream. */
function patternBytes(offset: number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  fillPattern(bytes, offset);
  return bytes;
}

const KEY_EVENT = 4;
const POINTER_EVENT = 5;

describe('relay stages: browser -> VNC filter', () => {
  it('drops the messages it rejects: they never reach the VNC server, the others arrive whole and in order', async () => {
    const vnc = await startCollector();
    const seen: Buffer[] = [];
    const viewOnly: UpstreamFilter = {
      filter(message) {
        seen.push(message);
        return message[0] === KEY_EVENT || message[0] === POINTER_EVENT ? null : message;
      },
    };
    const relay = await startRelay(vnc.port, { toUpstream: viewOnly });
    const client = await open(relay);
    const messages = clientMessages(300);
    for (const message of messages) client.ws.send(message);
    const kept = Buffer.concat(messages.filter((m) => m[0] !== KEY_EVENT && m[0] !== POINTER_EVENT));

    await waitFor(() => vnc.received().length >= kept.length, 'the kept messages at the VNC server');
    client.ws.close(1000);
    const end = await (await relay.session()).ended;

    expect(seen).toEqual(messages); // each message seen once, complete
    expect(vnc.received().equals(kept)).toBe(true);
    expect(end).toMatchObject({ code: 1000, by: 'browser', bytesToUpstream: kept.length });
  });

  it('rewrites messages: the VNC server receives the replacement bytes, and only they are counted', async () => {
    const vnc = await startCollector();
    const rewrite = (message: Buffer): Buffer => Buffer.concat([Buffer.from('<'), message.subarray(0, 3), Buffer.from('>')]);
    const relay = await startRelay(vnc.port, {
      toUpstream: { filter: (message) => (message[0] === 2 ? rewrite(message) : message) },
    });
    const client = await open(relay);
    const messages = clientMessages(60);
    for (const message of messages) client.ws.send(message);
    const expected = Buffer.concat(messages.map((m) => (m[0] === 2 ? rewrite(m) : m)));

    await waitFor(() => vnc.received().length >= expected.length, 'the rewritten stream at the VNC server');
    client.ws.close(1000);
    const end = await (await relay.session()).ended;

    expect(vnc.received().equals(expected)).toBe(true);
    expect(end.bytesToUpstream).toBe(expected.length);
  });

  it('still sees text messages close the session with 1003, without being called for them', async () => {
    const vnc = await startCollector();
    let calls = 0;
    const counting: UpstreamFilter = {
      filter(message) {
        calls += 1;
        return message;
      },
    };
    const relay = await startRelay(vnc.port, { toUpstream: counting });
    const client = await open(relay);
    client.ws.send('not RFB');

    expect(await within(5_000, 'close', client.closed)).toEqual({ code: 1003, reason: errors.textMessage().message });
    expect(calls).toBe(0);
  });

  it('a filter that throws closes the session with 1011, ends the bridge once, and the relay serves the next session', async () => {
    const vnc = await startCollector();
    const bug = new Error('filter bug');
    const relay = await startRelay(vnc.port, {
      toUpstream: {
        filter(message) {
          if (message.toString() === 'boom') throw bug;
          return message;
        },
      },
    });
    const client = await open(relay);
    client.ws.send(Buffer.from('before'));
    client.ws.send(Buffer.from('boom'));
    client.ws.send(Buffer.from('after'));

    expect(await within(5_000, 'close', client.closed)).toEqual(INTERNAL);
    const session = await relay.session();
    const end = await session.ended;
    await vnc.closed;
    await new Promise((resolve) => setTimeout(resolve, 100)); // a second onEnd would come by now
    expect(session.ends).toHaveLength(1);
    expect(end).toMatchObject({ ...INTERNAL, by: 'gateway', bytesToUpstream: 'before'.length, stageError: bug });
    expect(vnc.received().toString()).toBe('before');

    const next = await open(relay);
    next.ws.send(Buffer.from('again'));
    await waitFor(() => vnc.received().toString() === 'beforeagain', 'the next session to relay');
  });
});

describe('relay stages: VNC -> browser tap', () => {
  it('sees exactly the bytes the browser receives, in order, and a slow browser still holds the gateway to its high-water mark', async () => {
    const GREETING_BYTES = 12;
    const FLOOD_BYTES = 32 * MiB;
    const HIGH_WATER_MARK = 512 * 1024;
    // A greeting-sized first write, then the flood: reads of both sizes the bridge copies differently.
    const source = await startPeerWithTeardown((socket) => {
      socket.write(patternBytes(0, GREETING_BYTES));
      setTimeout(() => floodPattern(socket, FLOOD_BYTES, 100_000, GREETING_BYTES), 50);
    });
    const tapped: Buffer[] = [];
    const recorder: BrowserTap = { tap: (chunk) => void tapped.push(Buffer.from(chunk)) }; // copies: the chunk is reused
    const relay = await startRelay(source.port, { toBrowser: recorder }, HIGH_WATER_MARK);
    const client = connectWs(relay.url);
    const received: Buffer[] = [];
    const checker = new PatternChecker();
    client.onMessage((data) => {
      received.push(data);
      checker.check(data);
    });
    await client.opened;
    const session = await relay.session();
    let maxBuffered = 0;
    const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, session.bridge.bufferedBytes)), 1);
    teardown.push(() => clearInterval(sampler));
    // Read in short bursts so the browser is the bottleneck: the VNC side is paused, and its
    // reads come in up to 256 KiB, copied into pooled buffers (small ones into their own).
    const reader = setInterval(() => {
      client.ws.resume();
      setTimeout(() => client.ws.pause(), 1);
    }, 10);
    teardown.push(() => clearInterval(reader));
    const closed = await within(60_000, 'the end of the flood', client.closed);
    clearInterval(reader);
    clearInterval(sampler);
    const end = await session.ended;

    const tappedBytes = Buffer.concat(tapped);
    expect(closed.code).toBe(4500); // the source ended its stream
    expect(checker.mismatchAt).toBe(-1);
    expect(checker.received).toBe(GREETING_BYTES + FLOOD_BYTES);
    expect(tappedBytes.length).toBe(GREETING_BYTES + FLOOD_BYTES);
    expect(tappedBytes.equals(Buffer.concat(received))).toBe(true);
    expect(end.bytesToBrowser).toBe(GREETING_BYTES + FLOOD_BYTES);
    const sizes = tapped.map((chunk) => chunk.length);
    expect(Math.min(...sizes)).toBeLessThan(64 * 1024); // copied into a buffer of its own size
    expect(Math.max(...sizes)).toBeGreaterThanOrEqual(64 * 1024); // copied into a pooled buffer
    expect(maxBuffered).toBeGreaterThan(HIGH_WATER_MARK / 2); // the slow reader did hold the gateway back
    expect(maxBuffered).toBeLessThan(HIGH_WATER_MARK + MiB);
  }, 90_000);

  it('a tap that throws closes the session with 1011 and ends the bridge once', async () => {
    const vnc = await startCollector((socket) => socket.write('RFB 003.008\n'));
    const bug = new Error('tap bug');
    const relay = await startRelay(vnc.port, {
      toBrowser: {
        tap() {
          throw bug;
        },
      },
    });
    const client = connectWs(relay.url);
    const messages: Buffer[] = [];
    client.onMessage((data) => messages.push(data));

    expect(await within(5_000, 'close', client.closed)).toEqual(INTERNAL);
    const session = await relay.session();
    const end = await session.ended;
    await vnc.closed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(session.ends).toHaveLength(1);
    expect(end).toMatchObject({ ...INTERNAL, by: 'gateway', bytesToBrowser: 0, stageError: bug });
    expect(messages).toEqual([]); // the chunk the tap failed on was not sent
  });
});

describe('relay stages: a stage ends the session', () => {
  it('a filter closes with a catalogue error: the browser and onEnd see its close code and reason, the VNC server is cut', async () => {
    const vnc = await startCollector();
    const refusal = errors.notAllowed('alice', 'test');
    const relay = await startRelay(vnc.port, {
      toUpstream: {
        filter(message, session) {
          if (message[0] !== KEY_EVENT) return message;
          session.close(refusal);
          return message; // not relayed: the session is closing
        },
      },
    });
    const client = await open(relay);
    const [setEncodings, keyEvent] = [Buffer.from([2, 0, 0, 0]), Buffer.from([KEY_EVENT, 1, 0, 0, 0, 0, 0, 0x61])];
    client.ws.send(setEncodings);
    client.ws.send(keyEvent);

    expect(await within(5_000, 'close', client.closed)).toEqual({ code: 4403, reason: "alice may not open desktop 'test'" });
    const end = await (await relay.session()).ended;
    expect(end).toMatchObject({ code: 4403, reason: refusal.message, by: 'gateway', bytesToUpstream: setEncodings.length, stageError: undefined });
    await within(5_000, 'the VNC connection to close', vnc.closed);
    expect(vnc.received().equals(setEncodings)).toBe(true);
  });

  it('a tap closes with a catalogue error: the chunk it saw is not sent, both ends see the close code and reason', async () => {
    const vnc = await startCollector((socket) => {
      socket.write('RFB 003.008\n');
      socket.on('data', () => socket.write('BYE'));
    });
    const relay = await startRelay(vnc.port, {
      toBrowser: {
        tap(chunk, session) {
          if (chunk.toString() === 'BYE') session.close(errors.loggedOut());
        },
      },
    });
    const client = await open(relay);
    expect((await client.nextMessage()).toString()).toBe('RFB 003.008\n');
    client.ws.send(Buffer.from('RFB 003.008\n'));

    expect(await within(5_000, 'close', client.closed)).toEqual({ code: 4401, reason: 'You logged out' });
    const end = await (await relay.session()).ended;
    expect(end).toMatchObject({ code: 4401, reason: 'You logged out', by: 'gateway', bytesToBrowser: 12 });
    await within(5_000, 'the VNC connection to close', vnc.closed);
  });
});

describe('relay stages: back-pressure', () => {
  it('browser floods through a filter to a slow VNC server: every byte arrives in order while the gateway buffers a bounded amount', async () => {
    const UPLOAD_BYTES = 32 * MiB;
    const sinkChecker = new PatternChecker();
    const sink = await startPeerWithTeardown(readInBursts((chunk) => sinkChecker.check(chunk)));
    let filtered = 0;
    const copying: UpstreamFilter = {
      // Replaces every message with a copy of it: what is written is the filter's, not ws's, buffer.
      filter(message) {
        filtered += 1;
        return Buffer.from(message);
      },
    };
    const relay = await startRelay(sink.port, { toUpstream: copying });
    const client = await open(relay);
    const session = await relay.session();
    let maxBuffered = 0;
    const sampler = setInterval(() => (maxBuffered = Math.max(maxBuffered, session.bridge.bufferedBytes)), 1);
    teardown.push(() => clearInterval(sampler));

    await sendPattern(client, UPLOAD_BYTES);
    await waitFor(() => sinkChecker.received >= UPLOAD_BYTES, 'the upload at the VNC server', 60_000);
    clearInterval(sampler);
    client.ws.close(1000);
    const end = await session.ended;

    expect(sinkChecker.mismatchAt).toBe(-1);
    expect(sinkChecker.received).toBe(UPLOAD_BYTES);
    expect(filtered).toBe(UPLOAD_BYTES / (64 * 1024));
    expect(end.bytesToUpstream).toBe(UPLOAD_BYTES);
    expect(maxBuffered).toBeGreaterThan(16 * 1024); // past Node's default write high-water mark: the sink held the gateway back
    expect(maxBuffered).toBeLessThan(2 * MiB);
  }, 90_000);
});

describe('relay stages: none configured', () => {
  it('runs the unstaged handlers: no stage code on the path of a message or a read', async () => {
    const echo = await startPeerWithTeardown((socket) => socket.pipe(socket));
    const relay = await startRelay(echo.port);
    const client = await open(relay);
    const { ws, bridge } = await relay.session();

    expect(bridge.upstreamRead.callback).toBe(bridge['tcpOnRead']);
    expect(ws.listeners('message')).toEqual([bridge['wsOnMessage']]);
    client.ws.send(Buffer.from('ping'));
    expect((await client.nextMessage()).toString()).toBe('ping');
  });

  it('a stage in one direction leaves the other direction on its unstaged handler', async () => {
    const echo = await startPeerWithTeardown((socket) => socket.pipe(socket));
    const filterOnly = await startRelay(echo.port, { toUpstream: { filter: (m) => m } });
    const tapOnly = await startRelay(echo.port, { toBrowser: { tap: () => {} } });
    const clients = [await open(filterOnly), await open(tapOnly)];
    const [filtered, tapped] = [await filterOnly.session(), await tapOnly.session()];

    expect(filtered.bridge.upstreamRead.callback).toBe(filtered.bridge['tcpOnRead']);
    expect(filtered.ws.listeners('message')).not.toContain(filtered.bridge['wsOnMessage']);
    expect(tapped.bridge.upstreamRead.callback).not.toBe(tapped.bridge['tcpOnRead']);
    expect(tapped.ws.listeners('message')).toEqual([tapped.bridge['wsOnMessage']]);
    for (const client of clients) {
      client.ws.send(Buffer.from('ping'));
      expect((await client.nextMessage()).toString()).toBe('ping');
    }
  });
});
