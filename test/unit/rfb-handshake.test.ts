/**
 * The RFB handshake phase (src/rfb/handshake.ts) between two scripted fake peers: a viewer and
 * a VNC server, each a HandshakeReader the test pushes bytes into and a `write` that records
 * what the gateway sent that side. No sockets, no programs: every byte on either wire is
 * asserted exactly.
 */
import type { ConnectionOptions, PeerCertificate, TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { errors, formatDuration, GatewayError, type ErrorCode } from '../../src/errors.js';
import {
  handshake,
  PLAIN_VNC,
  type HandshakeOptions,
  type HandshakeResult,
  type HandshakeSide,
  type UpstreamSide,
  type VncSettings,
} from '../../src/rfb/handshake.js';
import { HandshakeReader, type ReaderFailures, type ReaderFlow } from '../../src/rfb/handshake-reader.js';
import { NATIVE_PIXEL_FORMAT } from '../../src/demo/framebuffer.js';
import { encodeServerInit } from '../../src/rfb/protocol.js';
import { vncAuthResponse } from '../../src/rfb/vnc-auth.js';

const LABEL = "Desktop 'lab'";
/** What either side may send beyond what the handshake reads before its transport is paused, as src/sessions/handshake-phase.ts has it. */
const LIMIT_BYTES = 64 * 1024;
const TIMEOUT_MS = 200;

// The sides' failures, worded as src/sessions/handshake-phase.ts words them.
const VIEWER_FAILURES: ReaderFailures = {
  timedOut: (waitingFor, ms) => errors.viewerTimeout(waitingFor, formatDuration(ms)),
  ended: () => errors.viewerBrokeProtocol('it closed the connection'),
};
const SERVER_FAILURES: ReaderFailures = {
  timedOut: (waitingFor, ms) => errors.handshakeTimeout(LABEL, waitingFor, formatDuration(ms)),
  ended: (waitingFor) => errors.vncClosed(LABEL, waitingFor),
};

// ---------------------------------------------------------------------------------------------
// The harness: two fake sides and a script per peer.

/**
 * One side as the handshake sees it; records what the gateway wrote to it. Its peer's bytes go
 * through a fake transport that honours the reader's back-pressure as a socket does: nothing is
 * pushed while paused, and what is queued flows again (on a later turn) once resumed.
 */
class FakeSide implements HandshakeSide {
  readonly reader: HandshakeReader;
  readonly writes: Buffer[] = [];
  paused = false;
  pauses = 0;
  resumes = 0;
  /** Bytes the transport has pushed into the reader. */
  delivered = 0;
  #queue: Buffer[] = [];
  #waiters: { length: number; resolve: () => void }[] = [];

  constructor(failures: ReaderFailures, limitBytes = LIMIT_BYTES) {
    const flow: ReaderFlow = {
      pause: () => {
        this.paused = true;
        this.pauses++;
      },
      resume: () => {
        this.paused = false;
        this.resumes++;
        setImmediate(() => this.#drain());
      },
    };
    this.reader = new HandshakeReader(failures, limitBytes, flow);
  }

  /** The peer sends `chunks`, each a push into the reader when the transport is not paused. */
  deliver(...chunks: Buffer[]): void {
    this.#queue.push(...chunks);
    this.#drain();
  }

  /** Bytes the peer sent that the transport has not delivered (paused). */
  get queued(): number {
    return this.#queue.reduce((sum, bytes) => sum + bytes.length, 0);
  }

  #drain(): void {
    while (!this.paused && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      this.delivered += chunk.length;
      this.reader.push(chunk);
    }
  }

  write(bytes: Buffer): void {
    this.writes.push(Buffer.from(bytes));
    const length = this.writtenLength;
    const due = this.#waiters.filter((waiter) => waiter.length <= length);
    this.#waiters = this.#waiters.filter((waiter) => waiter.length > length);
    for (const waiter of due) waiter.resolve();
  }

  get written(): Buffer {
    return Buffer.concat(this.writes);
  }

  get writtenLength(): number {
    return this.writes.reduce((sum, bytes) => sum + bytes.length, 0);
  }

  /** Resolves once the gateway has written `length` bytes to this side in all. */
  untilWritten(length: number): Promise<void> {
    if (this.writtenLength >= length) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ length, resolve }));
  }
}

interface TlsCall {
  options: ConnectionOptions;
  verify: (socket: TLSSocket) => void;
  /** How many bytes the gateway had written to the server when it started TLS. */
  writtenBefore: number;
}

/** The VNC server's side: also speaks "TLS", as a fake that records the call. */
class FakeServer extends FakeSide implements UpstreamSide {
  readonly tlsCalls: TlsCall[] = [];
  /** What startTls does; resolves by default. */
  tls: (options: ConnectionOptions, verify: (socket: TLSSocket) => void) => Promise<void> = () => Promise.resolve();
  #tlsWaiters: (() => void)[] = [];

  constructor(limitBytes = LIMIT_BYTES) {
    super(SERVER_FAILURES, limitBytes);
  }

  startTls(options: ConnectionOptions, verify: (socket: TLSSocket) => void): Promise<void> {
    this.tlsCalls.push({ options, verify, writtenBefore: this.writtenLength });
    for (const resolve of this.#tlsWaiters.splice(0)) resolve();
    return this.tls(options, verify);
  }

  untilTls(): Promise<void> {
    if (this.tlsCalls.length > 0) return Promise.resolve();
    return new Promise((resolve) => this.#tlsWaiters.push(resolve));
  }
}

/** A peer's script: wait for the gateway to write `expect` to it, push `send`, wait for startTls, pause. */
type Step = { expect: Buffer } | { send: Buffer } | { tls: true } | { pause: number };
/**
 * How a peer's bytes reach the reader: a push per message, a push per byte, or all of them in
 * one push (up to a TLS start: bytes after it come through TLS, never with the plain ones).
 */
type Delivery = 'chunked' | 'bytewise' | 'coalesced';

const expectBytes = (bytes: Buffer | readonly number[]): Step => ({ expect: Buffer.from(bytes) });
const send = (bytes: Buffer | readonly number[]): Step => ({ send: Buffer.from(bytes) });
const TLS: Step = { tls: true };

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Play a peer. It only waits and pushes: what the gateway wrote is compared with the script's
 * `expect`s afterwards (transcript()). A script the gateway never satisfies just stays pending.
 */
async function play(side: FakeSide, steps: readonly Step[], delivery: Delivery): Promise<void> {
  /** All the bytes the peer sends from step `from` up to its next TLS start. */
  const segment = (from: number): Buffer => {
    const end = steps.findIndex((step, i) => i >= from && 'tls' in step);
    return Buffer.concat(steps.slice(from, end === -1 ? undefined : end).flatMap((step) => ('send' in step ? [step.send] : [])));
  };
  if (delivery === 'coalesced') side.deliver(segment(0));
  let offset = 0;
  for (const [i, step] of steps.entries()) {
    if ('expect' in step) await side.untilWritten((offset += step.expect.length));
    else if ('tls' in step) {
      await (side as FakeServer).untilTls();
      if (delivery === 'coalesced') side.deliver(segment(i + 1));
    } else if ('pause' in step) await sleep(step.pause);
    else if (delivery === 'chunked') side.deliver(step.send);
    else if (delivery === 'bytewise') {
      for (const byte of step.send) {
        side.deliver(Buffer.from([byte]));
        await nextTurn(); // let the gateway read what is there so far
      }
    }
  }
}

/** Everything the script expects the gateway to write to its peer, in order. */
function transcript(steps: readonly Step[]): string {
  return hex(Buffer.concat(steps.flatMap((step) => ('expect' in step ? [step.expect] : []))));
}

function hex(bytes: Buffer): string {
  return bytes.toString('hex');
}

/** Every side of the running test: failed after it, so no read (and its timer) outlives a test. */
let live: FakeSide[] = [];

afterEach(() => {
  for (const side of live) side.reader.fail(errors.internal());
  live = [];
});

interface Scenario {
  options: HandshakeOptions;
  server: Step[];
  viewer: Step[];
}

function start(scenario: Scenario, delivery: Delivery = 'chunked', limitBytes = LIMIT_BYTES) {
  const viewer = new FakeSide(VIEWER_FAILURES, limitBytes);
  const server = new FakeServer(limitBytes);
  live.push(viewer, server);
  void play(server, scenario.server, delivery);
  void play(viewer, scenario.viewer, delivery);
  const started = Date.now();
  const promise = handshake(viewer, server, scenario.options);
  const elapsed = (): number => Date.now() - started;
  return { viewer, server, promise, elapsed };
}

/** Run a scenario that must succeed; checks both transcripts exactly. */
async function succeeds(scenario: Scenario, delivery: Delivery = 'chunked') {
  const run = start(scenario, delivery);
  const result = await run.promise;
  expect(hex(run.server.written)).toBe(transcript(scenario.server));
  expect(hex(run.viewer.written)).toBe(transcript(scenario.viewer));
  return { ...run, result };
}

/** The handshake's rejection, which must be a catalogue error with this code, close code and message. */
async function rejection(promise: Promise<unknown>, code: ErrorCode, closeCode: number, message: RegExp): Promise<GatewayError> {
  const error: unknown = await promise.then(
    () => new Error('expected the handshake to reject'),
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(GatewayError);
  const { code: actualCode, closeCode: actualCloseCode, message: actualMessage } = error as GatewayError;
  expect({ code: actualCode, closeCode: actualCloseCode }).toEqual({ code, closeCode });
  expect(actualMessage).toMatch(message);
  return error as GatewayError;
}

// ---------------------------------------------------------------------------------------------
// RFB bytes.

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');
const V33 = ascii('RFB 003.003\n');
const V37 = ascii('RFB 003.007\n');
const V38 = ascii('RFB 003.008\n');

function u32(...values: number[]): Buffer {
  const bytes = Buffer.alloc(4 * values.length);
  values.forEach((value, i) => bytes.writeUInt32BE(value, 4 * i));
  return bytes;
}

/** A length-prefixed string (a reason). */
function text(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
}

const OK = u32(0);
const FAILED = u32(1);
const CHALLENGE = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
/** What a viewer answers to CHALLENGE when the gateway only follows: opaque to the gateway. */
const VIEWER_RESPONSE = Buffer.alloc(16, 0xa5);
const PASSWORD = 'hunter22';
const PIXEL_FORMAT = NATIVE_PIXEL_FORMAT;
const DESKTOP = { width: 1280, height: 800, name: 'lab:1 (alice) ✓' };
const SERVER_INIT = encodeServerInit(DESKTOP.width, DESKTOP.height, PIXEL_FORMAT, DESKTOP.name);

const VENCRYPT = 19;
/** 255 security types, 1 to 255. */
const TYPES_255 = Buffer.from([255, ...Array.from({ length: 255 }, (_, i) => i + 1)]);
const Subtype = { Plain: 256, TLSNone: 257, TLSVnc: 258, X509None: 260, X509Vnc: 261 } as const;

function options(vnc: Partial<VncSettings> = {}, rest: Partial<Omit<HandshakeOptions, 'vnc'>> = {}): HandshakeOptions {
  return {
    label: LABEL,
    host: 'lab.example',
    mustFollow: false,
    timeoutMs: TIMEOUT_MS,
    personTimeoutMs: 2 * TIMEOUT_MS,
    ...rest,
    vnc: { ...PLAIN_VNC, ...vnc },
  };
}

/** A pinned fingerprint, as the config normalises it. */
const PINNED = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, '0').toUpperCase()).join(':');

function fakeTlsSocket(fingerprint256: string | undefined): TLSSocket {
  const certificate = (fingerprint256 === undefined ? {} : { fingerprint256 }) as PeerCertificate;
  return { getPeerCertificate: () => certificate } as unknown as TLSSocket;
}

// ---------------------------------------------------------------------------------------------
// Scenarios that succeed, run with every delivery.

/** Followed: a 3.8 server offering None; the viewer's ClientInit asks for exclusive access (0). */
const followedNone = (): Scenario => ({
  options: options(),
  server: [send(V38), expectBytes(V38), send([1, 1]), expectBytes([1]), send(OK), expectBytes([1]), send(SERVER_INIT)],
  viewer: [expectBytes(V38), send(V38), expectBytes([1, 1]), send([1]), expectBytes(OK), send([0]), expectBytes(SERVER_INIT)],
});

/** Followed: VNC authentication between the viewer and the server, the gateway reading along. */
const followedVncAuth = (): Scenario => ({
  options: options(),
  server: [
    send(V38),
    expectBytes(V38),
    send([2, 1, 2]),
    expectBytes([2]),
    send(CHALLENGE),
    expectBytes(VIEWER_RESPONSE),
    send(OK),
    expectBytes([1]),
    send(SERVER_INIT),
  ],
  viewer: [
    expectBytes(V38),
    send(V38),
    expectBytes([2, 1, 2]),
    send([2]),
    expectBytes(CHALLENGE),
    send(VIEWER_RESPONSE),
    expectBytes(OK),
    send([0]),
    expectBytes(SERVER_INIT),
  ],
});

/** What a viewer sees of a terminated handshake: the gateway as a 3.8 server offering None, then the server's ServerInit. */
const TERMINATED_VIEWER: Step[] = [expectBytes(V38), send(V38), expectBytes([1, 1]), send([1]), expectBytes(OK), send([0]), expectBytes(SERVER_INIT)];

/** Terminated: the gateway holds the password and answers the challenge itself. */
const terminatedVncAuth = (): Scenario => ({
  options: options({ password: PASSWORD }),
  server: [
    send(V38),
    expectBytes(V38),
    send([3, 1, 2, 16]),
    expectBytes([2]), // VNC authentication preferred over None when the gateway has a password
    send(CHALLENGE),
    expectBytes(vncAuthResponse(PASSWORD, CHALLENGE)),
    send(OK),
    expectBytes([1]),
    send(SERVER_INIT),
  ],
  viewer: TERMINATED_VIEWER,
});

/** Terminated: VeNCrypt X509Vnc: TLS, then the challenge inside it. */
const terminatedX509Vnc = (vnc: Partial<VncSettings> = {}): Scenario => ({
  options: options({ password: PASSWORD, tls: 'vencrypt', ...vnc }),
  server: [
    send(V38),
    expectBytes(V38),
    send([2, 2, VENCRYPT]),
    expectBytes([VENCRYPT]),
    send([0, 2]),
    expectBytes([0, 2]),
    send([0]),
    send(Buffer.concat([Buffer.from([2]), u32(Subtype.X509Vnc, Subtype.X509None)])),
    expectBytes(u32(Subtype.X509Vnc)),
    send([1]), // TLS go-ahead
    TLS,
    send(CHALLENGE),
    expectBytes(vncAuthResponse(PASSWORD, CHALLENGE)),
    send(OK),
    expectBytes([1]),
    send(SERVER_INIT),
  ],
  viewer: TERMINATED_VIEWER,
});

/** Terminated: VeNCrypt Plain, a user name and password without TLS (and without a go-ahead byte). */
const terminatedPlain = (): Scenario => ({
  options: options({ username: 'alice', password: 's3cret!' }),
  server: [
    send(V38),
    expectBytes(V38),
    send([1, VENCRYPT]),
    expectBytes([VENCRYPT]),
    send([0, 2]),
    expectBytes([0, 2]),
    send([0]),
    send(Buffer.concat([Buffer.from([1]), u32(Subtype.Plain)])),
    expectBytes(u32(Subtype.Plain)),
    expectBytes(Buffer.concat([u32(5, 7), ascii('alice'), ascii('s3cret!')])),
    send(OK),
    expectBytes([1]),
    send(SERVER_INIT),
  ],
  viewer: TERMINATED_VIEWER,
});

const SUCCESSES: [string, () => Scenario, HandshakeResult][] = [
  ['followed, security None', followedNone, { followed: true, security: 'None', desktop: DESKTOP, serverInit: SERVER_INIT }],
  ['followed, VNC authentication', followedVncAuth, { followed: true, security: 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT }],
  ['terminated, VNC authentication', terminatedVncAuth, { followed: true, security: 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT }],
  ['terminated, VeNCrypt X509Vnc', terminatedX509Vnc, { followed: true, security: 'VeNCrypt X509Vnc', desktop: DESKTOP, serverInit: SERVER_INIT }],
  ['terminated, VeNCrypt Plain', terminatedPlain, { followed: true, security: 'VeNCrypt Plain', desktop: DESKTOP, serverInit: SERVER_INIT }],
];

describe.each<Delivery>(['chunked', 'bytewise', 'coalesced'])('a whole handshake, each peer sending %s', (delivery) => {
  it.each(SUCCESSES)('%s', async (_name, scenario, expected) => {
    const { result } = await succeeds(scenario(), delivery);
    expect(result).toEqual(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Followed: the desktop has no VNC credentials.

describe('followed handshake (no VNC credentials)', () => {
  it('forwards a 3.8 server offering None, and replaces the shared flag of ClientInit with the desktop’s', async () => {
    const { server, viewer, result } = await succeeds(followedNone());
    expect(result).toEqual({ followed: true, security: 'None', desktop: DESKTOP, serverInit: SERVER_INIT });
    expect(server.writes.at(-1)).toEqual(Buffer.from([1])); // the viewer sent 0
    expect(viewer.writes.at(-1)).toEqual(SERVER_INIT); // ServerInit whole, name included
    expect(server.tlsCalls).toEqual([]);
  });

  it('sends shared 0 when the desktop says vnc.shared: false, whatever the viewer asks', async () => {
    const scenario = followedNone();
    scenario.options = options({ shared: false });
    scenario.viewer[5] = send([1]);
    scenario.server[5] = expectBytes([0]);
    await succeeds(scenario);
  });

  it('leaves what the viewer sent after ClientInit in its reader, for the relay', async () => {
    const scenario = followedNone();
    const setEncodings = Buffer.from([2, 0, 0, 1, 0, 0, 0, 0]);
    scenario.viewer[5] = send(Buffer.concat([Buffer.from([0]), setEncodings]));
    const { viewer } = await succeeds(scenario);
    expect(viewer.reader.rest()).toEqual(setEncodings);
  });

  it('passes VNC authentication through: the challenge to the viewer, its answer to the server', async () => {
    const { server, viewer, result } = await succeeds(followedVncAuth());
    expect(result.security).toBe('VNC authentication');
    expect(viewer.writes).toContainEqual(CHALLENGE);
    expect(server.writes).toContainEqual(VIEWER_RESPONSE);
  });

  it('gives the person at the viewer personTimeoutMs, not timeoutMs, to type the VNC password', async () => {
    const scenario = followedVncAuth();
    scenario.options = options({}, { timeoutMs: 100, personTimeoutMs: 1_000 });
    scenario.viewer.splice(5, 0, { pause: 250 }); // before the response
    await succeeds(scenario);
  });

  it('ends a followed VNC authentication with a viewer that never answers the challenge: DG_ERR_VIEWER_TIMEOUT', async () => {
    const scenario = followedVncAuth();
    scenario.options = options({}, { timeoutMs: 100, personTimeoutMs: 300 });
    scenario.viewer = scenario.viewer.slice(0, 5);
    const { promise } = start(scenario);
    await rejection(promise, 'DG_ERR_VIEWER_TIMEOUT', 4408, /^The viewer sent no VNC password within 0\.3 s$/);
  });

  it('forwards a failed VNC authentication (3.8, with its reason) to the viewer, then ends with DG_ERR_UNAUTHENTICATED', async () => {
    const scenario = followedVncAuth();
    scenario.server = [...scenario.server.slice(0, 6), send(Buffer.concat([FAILED, text('Authentication failed')]))];
    scenario.viewer = [...scenario.viewer.slice(0, 6), expectBytes(Buffer.concat([FAILED, text('Authentication failed')]))];
    const { promise, server, viewer } = start(scenario);
    await rejection(promise, 'DG_ERR_UNAUTHENTICATED', 4401, /^Desktop 'lab' rejected the VNC password \(Authentication failed\)$/);
    expect(hex(viewer.written)).toBe(transcript(scenario.viewer));
    expect(hex(server.written)).toBe(transcript(scenario.server)); // no ClientInit
  });

  it('passes on a refusal’s reason made safe to show (control and format characters removed)', async () => {
    const scenario = followedVncAuth();
    scenario.server = [...scenario.server.slice(0, 6), send(Buffer.concat([FAILED, text('Too many\r\nattempts\u200b\u001b[31m')]))];
    scenario.viewer = [...scenario.viewer.slice(0, 6), expectBytes(Buffer.concat([FAILED, text('Too many attempts [31m')]))];
    const { promise, viewer } = start(scenario);
    await rejection(promise, 'DG_ERR_UNAUTHENTICATED', 4401, /\(Too many attempts \[31m\)$/);
    expect(hex(viewer.written)).toBe(transcript(scenario.viewer));
  });

  it('follows a 3.7 server with None: no SecurityResult', async () => {
    const result = await succeeds({
      options: options(),
      server: [send(V37), expectBytes(V37), send([1, 1]), expectBytes([1]), expectBytes([1]), send(SERVER_INIT)],
      viewer: [expectBytes(V37), send(V37), expectBytes([1, 1]), send([1]), send([0]), expectBytes(SERVER_INIT)],
    });
    expect(result.result).toEqual({ followed: true, security: 'None', desktop: DESKTOP, serverInit: SERVER_INIT });
  });

  it('follows a 3.8 server and a viewer that answers 3.7: no SecurityResult after None', async () => {
    await succeeds({
      options: options(),
      server: [send(V38), expectBytes(V37), send([1, 1]), expectBytes([1]), expectBytes([1]), send(SERVER_INIT)],
      viewer: [expectBytes(V38), send(V37), expectBytes([1, 1]), send([1]), send([0]), expectBytes(SERVER_INIT)],
    });
  });

  it('follows a 3.3 server that chooses None (a u32 type, no SecurityResult)', async () => {
    const { result } = await succeeds({
      options: options(),
      server: [send(V33), expectBytes(V33), send(u32(1)), expectBytes([1]), send(SERVER_INIT)],
      viewer: [expectBytes(V33), send(V33), expectBytes(u32(1)), send([0]), expectBytes(SERVER_INIT)],
    });
    expect(result).toEqual({ followed: true, security: 'None', desktop: DESKTOP, serverInit: SERVER_INIT });
  });

  it('follows a 3.3 server that chooses VNC authentication', async () => {
    const { result } = await succeeds({
      options: options(),
      server: [send(V33), expectBytes(V33), send(u32(2)), send(CHALLENGE), expectBytes(VIEWER_RESPONSE), send(OK), expectBytes([1]), send(SERVER_INIT)],
      viewer: [
        expectBytes(V33),
        send(V33),
        expectBytes(u32(2)),
        expectBytes(CHALLENGE),
        send(VIEWER_RESPONSE),
        expectBytes(OK),
        send([0]),
        expectBytes(SERVER_INIT),
      ],
    });
    expect(result).toEqual({ followed: true, security: 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT });
  });

  it('forwards a failed 3.3 VNC authentication without a reason (3.3 has none)', async () => {
    const scenario: Scenario = {
      options: options(),
      server: [send(V33), expectBytes(V33), send(u32(2)), send(CHALLENGE), expectBytes(VIEWER_RESPONSE), send(FAILED)],
      viewer: [expectBytes(V33), send(V33), expectBytes(u32(2)), expectBytes(CHALLENGE), send(VIEWER_RESPONSE), expectBytes(FAILED)],
    };
    const { promise, viewer } = start(scenario);
    await rejection(promise, 'DG_ERR_UNAUTHENTICATED', 4401, /^Desktop 'lab' rejected the VNC password$/);
    expect(hex(viewer.written)).toBe(transcript(scenario.viewer));
  });

  it('ends with the reason of a 3.3 server that refuses the connection (type 0)', async () => {
    const { promise } = start({
      options: options(),
      server: [send(V33), expectBytes(V33), send(Buffer.concat([u32(0), text('Too many security failures')]))],
      viewer: [expectBytes(V33), send(V33)],
    });
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' refused the connection: Too many security failures$/);
  });

  it('ends with the reason of a 3.8 server that offers no security type', async () => {
    const { promise, viewer } = start({
      options: options(),
      server: [send(V38), expectBytes(V38), send(Buffer.concat([Buffer.from([0]), text('No more connections')]))],
      viewer: [expectBytes(V38), send(V38)],
    });
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' refused the connection: No more connections$/);
    expect(viewer.written).toEqual(V38);
  });

  describe('view-only (mustFollow)', () => {
    it('offers the viewer only the types it can follow: [19, 2, 1] becomes [2, 1]', async () => {
      const { result } = await succeeds({
        options: options({}, { mustFollow: true }),
        server: [send(V38), expectBytes(V38), send([3, VENCRYPT, 2, 1]), expectBytes([1]), send(OK), expectBytes([1]), send(SERVER_INIT)],
        viewer: [expectBytes(V38), send(V38), expectBytes([2, 2, 1]), send([1]), expectBytes(OK), send([0]), expectBytes(SERVER_INIT)],
      });
      expect(result).toEqual({ followed: true, security: 'None', desktop: DESKTOP, serverInit: SERVER_INIT });
    });

    it('refuses a server that offers only VeNCrypt: DG_ERR_FORBIDDEN, gateway-held credentials needed', async () => {
      const { promise, viewer, server } = start({
        options: options({}, { mustFollow: true }),
        server: [send(V38), expectBytes(V38), send([1, VENCRYPT])],
        viewer: [expectBytes(V38), send(V38)],
      });
      await rejection(promise, 'DG_ERR_FORBIDDEN', 4403, /^Desktop 'lab' uses a security type the gateway cannot follow: .*gateway-held VNC credentials/);
      expect(viewer.written).toEqual(V38); // never offered anything
      expect(server.written).toEqual(V38); // never chose anything
    });

    it('refuses a 3.3 server that chooses a type the gateway cannot follow', async () => {
      const { promise, viewer } = start({
        options: options({}, { mustFollow: true }),
        server: [send(V33), expectBytes(V33), send(u32(16))],
        viewer: [expectBytes(V33), send(V33)],
      });
      await rejection(promise, 'DG_ERR_FORBIDDEN', 4403, /gateway-held VNC credentials/);
      expect(viewer.written).toEqual(V33);
    });
  });

  it('without mustFollow, lets the viewer choose VeNCrypt and stops following (followed: false)', async () => {
    const scenario: Scenario = {
      options: options(),
      server: [send(V38), expectBytes(V38), send([3, VENCRYPT, 2, 1]), expectBytes([VENCRYPT]), send([0, 2])],
      viewer: [expectBytes(V38), send(V38), expectBytes([3, VENCRYPT, 2, 1]), send([VENCRYPT, 0, 2])],
    };
    const { result, viewer } = await succeeds(scenario);
    expect(result).toEqual({ followed: false, security: 'VeNCrypt' });
    // What came after the choice is the byte pipe's, untouched.
    expect(viewer.reader.rest()).toEqual(Buffer.from([0, 2]));
  });

  it('without mustFollow, passes on a 3.3 server’s unknown type (followed: false)', async () => {
    const { result } = await succeeds({
      options: options(),
      server: [send(V33), expectBytes(V33), send(u32(16))],
      viewer: [expectBytes(V33), send(V33), expectBytes(u32(16))],
    });
    expect(result).toEqual({ followed: false, security: 'security type 16' });
  });

  it('ends with DG_ERR_RFB_CLIENT when the viewer chooses a type that was not offered', async () => {
    const { promise, server } = start({
      options: options(),
      server: [send(V38), expectBytes(V38), send([1, 1])],
      viewer: [expectBytes(V38), send(V38), expectBytes([1, 1]), send([2])],
    });
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /^The viewer broke the RFB protocol: it chose security type 2, which was not offered$/);
    expect(server.written).toEqual(V38); // the choice never reached the server
  });

  it('ends with DG_ERR_RFB_CLIENT when a view-only viewer chooses the VeNCrypt it was not offered', async () => {
    const { promise, server } = start({
      options: options({}, { mustFollow: true }),
      server: [send(V38), expectBytes(V38), send([2, VENCRYPT, 1])],
      viewer: [expectBytes(V38), send(V38), expectBytes([1, 1]), send([VENCRYPT])],
    });
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /chose security type 19, which was not offered/);
    expect(server.written).toEqual(V38);
  });

  it('with tls: tls-first, starts TLS before the server’s first byte', async () => {
    const scenario = followedNone();
    scenario.options = options({ tls: 'tls-first' });
    scenario.server.unshift(TLS);
    const { server } = await succeeds(scenario);
    expect(server.tlsCalls).toHaveLength(1);
    expect(server.tlsCalls[0]!.writtenBefore).toBe(0);
    expect(server.tlsCalls[0]!.options).toMatchObject({ servername: 'lab.example', rejectUnauthorized: true });
  });
});

// ---------------------------------------------------------------------------------------------
// Terminated: the gateway holds the desktop's credentials.

describe('terminated handshake (gateway-held credentials)', () => {
  it('answers the challenge itself with the password’s DES response; the viewer is offered None only', async () => {
    const { server, viewer, result } = await succeeds(terminatedVncAuth());
    expect(result).toEqual({ followed: true, security: 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT });
    expect(server.writes).toContainEqual(vncAuthResponse(PASSWORD, CHALLENGE));
    // The viewer never sees the challenge, nor any 16-byte message.
    expect(viewer.written.includes(CHALLENGE)).toBe(false);
    expect(viewer.writes.map((bytes) => bytes.length)).not.toContain(16);
    expect(viewer.writes.slice(0, 3)).toEqual([V38, Buffer.from([1, 1]), OK]);
  });

  it('chooses None when that is all the server offers, even with a password', async () => {
    const { result } = await succeeds({
      options: options({ password: PASSWORD }),
      server: [send(V38), expectBytes(V38), send([1, 1]), expectBytes([1]), send(OK), expectBytes([1]), send(SERVER_INIT)],
      viewer: TERMINATED_VIEWER,
    });
    expect(result.security).toBe('None');
  });

  it('sends the desktop’s shared flag (vnc.shared: false) whatever the viewer asks', async () => {
    const scenario = terminatedVncAuth();
    scenario.options = options({ password: PASSWORD, shared: false });
    scenario.server[7] = expectBytes([0]);
    scenario.viewer = [...TERMINATED_VIEWER];
    scenario.viewer[5] = send([1]);
    await succeeds(scenario);
  });

  it('ends with DG_ERR_VNC_AUTH_FAILED when the server refuses the password, naming the desktop and never the password', async () => {
    const scenario = terminatedVncAuth();
    scenario.server = [...scenario.server.slice(0, 6), send(Buffer.concat([FAILED, text('Authentication failure')]))];
    scenario.viewer = TERMINATED_VIEWER.slice(0, 6);
    const { promise, viewer } = start(scenario);
    const error = await rejection(promise, 'DG_ERR_VNC_AUTH_FAILED', 4502, /^Desktop 'lab' rejected the gateway's VNC credentials \(Authentication failure\)$/);
    expect(error.message).not.toContain(PASSWORD);
    expect(error.reason).not.toContain(PASSWORD);
    expect(viewer.written.includes(SERVER_INIT)).toBe(false);
    expect(viewer.written.includes(Buffer.from('Authentication'))).toBe(false); // the viewer is not told by RFB
  });

  it('speaks 3.3 to a 3.3 server: a u32 type, the challenge, a SecurityResult without reason', async () => {
    const { result } = await succeeds({
      options: options({ password: PASSWORD }),
      server: [
        send(V33),
        expectBytes(V33),
        send(u32(2)),
        send(CHALLENGE),
        expectBytes(vncAuthResponse(PASSWORD, CHALLENGE)),
        send(OK),
        expectBytes([1]),
        send(SERVER_INIT),
      ],
      viewer: TERMINATED_VIEWER,
    });
    expect(result).toEqual({ followed: true, security: 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT });
  });

  it('reads no reason after a 3.3 server’s failed result', async () => {
    const { promise } = start({
      options: options({ password: PASSWORD }),
      server: [send(V33), expectBytes(V33), send(u32(2)), send(CHALLENGE), expectBytes(vncAuthResponse(PASSWORD, CHALLENGE)), send(FAILED)],
      viewer: TERMINATED_VIEWER.slice(0, 6),
    });
    await rejection(promise, 'DG_ERR_VNC_AUTH_FAILED', 4502, /^Desktop 'lab' rejected the gateway's VNC credentials$/);
  });

  it('speaks 3.7 to a 3.7 server', async () => {
    const { result } = await succeeds({
      options: options({ password: PASSWORD }),
      server: [
        send(V37),
        expectBytes(V37),
        send([1, 2]),
        expectBytes([2]),
        send(CHALLENGE),
        expectBytes(vncAuthResponse(PASSWORD, CHALLENGE)),
        send(OK),
        expectBytes([1]),
        send(SERVER_INIT),
      ],
      viewer: TERMINATED_VIEWER,
    });
    expect(result.security).toBe('VNC authentication');
  });

  it('greets a viewer that answers 3.3 with the u32 type None and no SecurityResult', async () => {
    const scenario = terminatedVncAuth();
    scenario.viewer = [expectBytes(V38), send(V33), expectBytes(u32(1)), send([0]), expectBytes(SERVER_INIT)];
    await succeeds(scenario);
  });

  it('greets a viewer that answers 3.7 with [1, 1] and no SecurityResult', async () => {
    const scenario = terminatedVncAuth();
    scenario.viewer = [expectBytes(V38), send(V37), expectBytes([1, 1]), send([1]), send([0]), expectBytes(SERVER_INIT)];
    await succeeds(scenario);
  });

  it('ends with DG_ERR_RFB_CLIENT when the viewer chooses VNC authentication instead of the None it was offered', async () => {
    const scenario = terminatedVncAuth();
    scenario.viewer = [expectBytes(V38), send(V38), expectBytes([1, 1]), send([2])];
    const { promise } = start(scenario);
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /it chose security type 2; only None \(1\) was offered$/);
  });

  it('ends with DG_ERR_VNC_SECURITY when vnc.tls is vencrypt (no password) and the server offers only VNC authentication', async () => {
    const { promise } = start({
      options: options({ tls: 'vencrypt' }),
      server: [send(V38), expectBytes(V38), send([1, 2])],
      viewer: TERMINATED_VIEWER.slice(0, 6),
    });
    await rejection(promise, 'DG_ERR_VNC_SECURITY', 4502, /does not fall back to no TLS/);
  });

  it('does not downgrade with a 3.3 server either: vnc.tls vencrypt and a server that chooses None', async () => {
    const { promise, server } = start({
      options: options({ password: PASSWORD, tls: 'vencrypt' }),
      server: [send(V33), expectBytes(V33), send(u32(1))],
      viewer: TERMINATED_VIEWER.slice(0, 6),
    });
    await rejection(promise, 'DG_ERR_VNC_SECURITY', 4502, /it does not offer VeNCrypt \(it offers None\).*does not fall back to no TLS$/);
    expect(server.written).toEqual(V33);
  });

  describe('VeNCrypt', () => {
    it('X509Vnc: version 0.2, subtype 261, go-ahead, TLS verified against the system CAs, then the challenge', async () => {
      const { server, result } = await succeeds(terminatedX509Vnc());
      expect(result.security).toBe('VeNCrypt X509Vnc');
      expect(server.tlsCalls).toHaveLength(1);
      const { options: tls, verify, writtenBefore } = server.tlsCalls[0]!;
      expect(tls).toMatchObject({ servername: 'lab.example', rejectUnauthorized: true, ca: undefined });
      // TLS starts right after the subtype, before any credential is sent.
      expect(writtenBefore).toBe(V38.length + 1 + 2 + 4);
      // The certificate must name the desktop's host.
      const check = tls.checkServerIdentity!;
      const cert = (name: string) => ({ subject: { CN: name }, subjectaltname: `DNS:${name}` }) as unknown as PeerCertificate;
      expect(check('lab.example', cert('lab.example'))).toBeUndefined();
      expect(check('lab.example', cert('evil.example'))).toBeInstanceOf(Error);
      expect(() => verify(fakeTlsSocket(undefined))).not.toThrow();
    });

    it('checks the certificate against vnc.serverName when set, and sends no SNI for an IP address', async () => {
      const named = terminatedX509Vnc({ serverName: 'vnc.internal' });
      const { server } = await succeeds(named);
      expect(server.tlsCalls[0]!.options.servername).toBe('vnc.internal');
      const cert = { subject: { CN: 'vnc.internal' }, subjectaltname: 'DNS:vnc.internal' } as unknown as PeerCertificate;
      expect(server.tlsCalls[0]!.options.checkServerIdentity!('lab.example', cert)).toBeUndefined();

      const byIp = terminatedX509Vnc();
      byIp.options.host = '192.0.2.7';
      const { server: ipServer } = await succeeds(byIp);
      expect(ipServer.tlsCalls[0]!.options.servername).toBeUndefined();
    });

    it('sends no credential before TLS is up', async () => {
      const scenario = terminatedX509Vnc();
      let up: () => void = () => {};
      const run = start(scenario);
      run.server.tls = () => new Promise<void>((resolve) => (up = resolve));
      await run.server.untilTls();
      const before = run.server.writtenLength;
      for (let i = 0; i < 5; i++) await nextTurn(); // the challenge is in the reader by now
      expect(run.server.writtenLength).toBe(before);
      up();
      await expect(run.promise).resolves.toMatchObject({ security: 'VeNCrypt X509Vnc' });
      expect(hex(run.server.written)).toBe(transcript(scenario.server));
    });

    it('with vnc.fingerprint: lets Node accept any certificate, then accepts only the pinned one', async () => {
      const { server } = await succeeds(terminatedX509Vnc({ fingerprint: PINNED }));
      const { options: tls, verify } = server.tlsCalls[0]!;
      expect(tls).toEqual({ servername: 'lab.example', rejectUnauthorized: false });
      expect(() => verify(fakeTlsSocket(PINNED))).not.toThrow();
      const other = PINNED.replace(/^..:/, 'FF:');
      expect(() => verify(fakeTlsSocket(other))).toThrow(`its certificate does not match vnc.fingerprint; it is sha256:${other}`);
      expect(() => verify(fakeTlsSocket(undefined))).toThrow(/it is sha256:none$/);
    });

    it('ends with DG_ERR_VNC_TLS when the pinned fingerprint does not match', async () => {
      const scenario = terminatedX509Vnc({ fingerprint: PINNED });
      const run = start(scenario);
      const other = PINNED.replace(/^..:/, 'FF:');
      run.server.tls = (_options, verify) => {
        try {
          verify(fakeTlsSocket(other));
          return Promise.resolve();
        } catch (err) {
          return Promise.reject(err as Error);
        }
      };
      const error = await rejection(
        run.promise,
        'DG_ERR_VNC_TLS',
        4502,
        /^Desktop 'lab': TLS failed \(its certificate does not match vnc\.fingerprint; it is sha256:FF:/,
      );
      expect(error.cause).toBeInstanceOf(Error);
      expect(run.server.written.includes(vncAuthResponse(PASSWORD, CHALLENGE))).toBe(false);
    });

    it('with vnc.insecureSkipVerify: rejectUnauthorized false, no check', async () => {
      const { server } = await succeeds(terminatedX509Vnc({ insecureSkipVerify: true }));
      expect(server.tlsCalls[0]!.options).toEqual({ servername: 'lab.example', rejectUnauthorized: false });
    });

    it('ends with DG_ERR_VNC_TLS when the TLS handshake fails', async () => {
      const run = start(terminatedX509Vnc());
      run.server.tls = () => Promise.reject(new Error('certificate has expired'));
      await rejection(run.promise, 'DG_ERR_VNC_TLS', 4502, /^Desktop 'lab': TLS failed \(certificate has expired\)$/);
    });

    it('ends with DG_ERR_HANDSHAKE_TIMEOUT when the TLS handshake never finishes', async () => {
      const run = start(terminatedX509Vnc());
      run.server.tls = () => new Promise<void>(() => {});
      await rejection(run.promise, 'DG_ERR_HANDSHAKE_TIMEOUT', 4504, /^Desktop 'lab': no TLS handshake within 0\.2 s$/);
    });

    it('ends with DG_ERR_VNC_PROTOCOL when the server says it cannot start TLS (go-ahead 0)', async () => {
      const scenario = terminatedX509Vnc();
      scenario.server = [...scenario.server.slice(0, 9), send([0])];
      const { promise, server } = start(scenario);
      await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' refused the connection: it could not start TLS$/);
      expect(server.tlsCalls).toEqual([]);
    });

    it('refuses bytes sent in the clear with the go-ahead, which would pass for TLS data (STARTTLS injection)', async () => {
      const scenario = terminatedX509Vnc();
      // The go-ahead and a forged SecurityResult and ServerInit in one chunk, before any TLS.
      scenario.server = [...scenario.server.slice(0, 9), send(Buffer.concat([Buffer.from([1]), OK, SERVER_INIT]))];
      const { promise, server } = start(scenario);
      await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' broke the RFB handshake: it sent \d+ bytes in the clear where TLS had to begin$/);
      expect(server.tlsCalls).toEqual([]);
    });

    it('does not downgrade: vnc.tls vencrypt against a server offering [2, 1] ends with DG_ERR_VNC_SECURITY', async () => {
      const { promise, server } = start({
        options: options({ password: PASSWORD, tls: 'vencrypt' }),
        server: [send(V38), expectBytes(V38), send([2, 2, 1])],
        viewer: TERMINATED_VIEWER.slice(0, 6),
      });
      await rejection(
        promise,
        'DG_ERR_VNC_SECURITY',
        4502,
        /^Desktop 'lab': it does not offer VeNCrypt \(it offers VNC authentication, None\), and vnc.tls is vencrypt: the gateway does not fall back to no TLS$/,
      );
      expect(server.written).toEqual(V38); // no choice was sent
    });

    it('refuses anonymous TLS subtypes (TLSNone, TLSVnc) unless vnc.anonymousTls', async () => {
      const scenario = terminatedX509Vnc();
      scenario.server[7] = send(Buffer.concat([Buffer.from([2]), u32(Subtype.TLSNone, Subtype.TLSVnc)]));
      scenario.server = scenario.server.slice(0, 8);
      const { promise, server } = start(scenario);
      await rejection(promise, 'DG_ERR_VNC_SECURITY', 4502, /its VeNCrypt subtypes \(TLSNone, TLSVnc\) do not fit .*anonymous TLS needs vnc\.anonymousTls/);
      expect(server.tlsCalls).toEqual([]);
      expect(hex(server.written)).toBe(transcript(scenario.server)); // no subtype chosen
    });

    it('with vnc.anonymousTls: chooses TLSVnc and starts anonymous TLS', async () => {
      const scenario = terminatedX509Vnc({ anonymousTls: true });
      scenario.server[7] = send(Buffer.concat([Buffer.from([2]), u32(Subtype.TLSNone, Subtype.TLSVnc)]));
      scenario.server[8] = expectBytes(u32(Subtype.TLSVnc));
      const { server, result } = await succeeds(scenario);
      expect(result.security).toBe('VeNCrypt TLSVnc');
      expect(server.tlsCalls[0]!.options).toEqual({
        servername: 'lab.example',
        ciphers: 'aNULL:@SECLEVEL=0',
        maxVersion: 'TLSv1.2',
        rejectUnauthorized: false,
      });
    });

    it('refuses VeNCrypt 0.1', async () => {
      const scenario = terminatedX509Vnc();
      scenario.server = [...scenario.server.slice(0, 4), send([0, 1])];
      const { promise, server } = start(scenario);
      await rejection(promise, 'DG_ERR_VNC_SECURITY', 4502, /it speaks VeNCrypt 0\.1; the gateway speaks 0\.2/);
      expect(hex(server.written)).toBe(transcript(scenario.server));
    });

    it('ends with DG_ERR_VNC_PROTOCOL when the server refuses VeNCrypt 0.2 or offers no subtype', async () => {
      const refused = terminatedX509Vnc();
      refused.server = [...refused.server.slice(0, 6), send([1])];
      await rejection(start(refused).promise, 'DG_ERR_VNC_PROTOCOL', 4502, /it would not speak VeNCrypt 0\.2/);

      const none = terminatedX509Vnc();
      none.server = [...none.server.slice(0, 6), send([0, 0])];
      await rejection(start(none).promise, 'DG_ERR_VNC_PROTOCOL', 4502, /it offers no VeNCrypt subtype/);
    });

    it('Plain: user and password lengths as u32, then both, with no go-ahead byte and no TLS', async () => {
      const { server, result } = await succeeds(terminatedPlain());
      expect(result.security).toBe('VeNCrypt Plain');
      expect(server.tlsCalls).toEqual([]);
      expect(server.writes.slice(-2)).toEqual([Buffer.concat([u32(5, 7), ascii('alice'), ascii('s3cret!')]), Buffer.from([1])]);
    });

    it('Plain: counts the user name and password in UTF-8 bytes', async () => {
      const scenario = terminatedPlain();
      scenario.options = options({ username: 'zoë', password: 'pässwörd' });
      scenario.server[9] = expectBytes(Buffer.concat([u32(4, 10), Buffer.from('zoë'), Buffer.from('pässwörd')]));
      await succeeds(scenario);
    });

    it('Plain refused by the server: DG_ERR_VNC_AUTH_FAILED without the password', async () => {
      const scenario = terminatedPlain();
      scenario.server = [...scenario.server.slice(0, 10), send(Buffer.concat([FAILED, text('bad user or password')]))];
      const error = await rejection(
        start(scenario).promise,
        'DG_ERR_VNC_AUTH_FAILED',
        4502,
        /^Desktop 'lab' rejected the gateway's VNC credentials \(bad user or password\)$/,
      );
      expect(error.message).not.toContain('s3cret!');
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile and broken peers, in both modes.

const MODES: [string, Partial<VncSettings>][] = [
  ['followed', {}],
  ['terminated', { password: PASSWORD }],
];

describe.each(MODES)('hostile or broken peers (%s)', (mode, vnc) => {
  const followed = mode === 'followed';
  /** The viewer's part up to the point where the gateway reads the server's security types. */
  const viewerUntilTypes: Step[] = followed ? [expectBytes(V38), send(V38)] : TERMINATED_VIEWER.slice(0, 6);

  it('ends with DG_ERR_VNC_PROTOCOL when the server is not a VNC server', async () => {
    const { promise, viewer } = start({ options: options(vnc), server: [send(ascii('HTTP/1.1 200'))], viewer: [] });
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' broke the RFB handshake: it is not a VNC server \(it began with "HTTP\/1\.1 200"\)$/);
    if (followed) expect(viewer.written).toEqual(Buffer.alloc(0)); // nothing of it reached the viewer
  });

  it('ends with DG_ERR_RFB_CLIENT when the viewer answers with something that is not an RFB version', async () => {
    const { promise } = start({
      options: options(vnc),
      server: followed ? [send(V38)] : terminatedVncAuth().server,
      viewer: [expectBytes(V38), send(ascii('GET / HTTP/1'))],
    });
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /^The viewer broke the RFB protocol: it answered with "GET \/ HTTP\/1", not an RFB version$/);
  });

  it('rejects at once a refusal whose reason would be 0xFFFFFFF0 bytes long', async () => {
    const { promise, elapsed } = start({
      options: options(vnc, { timeoutMs: 10_000 }),
      server: [send(V38), expectBytes(V38), send(Buffer.concat([Buffer.from([0]), u32(0xfffffff0)]))],
      viewer: viewerUntilTypes,
    });
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' broke the RFB handshake: its reason would be 4294967280 bytes long$/);
    expect(elapsed()).toBeLessThan(1_000);
  });

  it('rejects at once a ServerInit whose name would be 0xFFFFFFFF bytes long', async () => {
    const init = Buffer.from(SERVER_INIT.subarray(0, 24));
    init.writeUInt32BE(0xffffffff, 20);
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.options = options(vnc, { timeoutMs: 10_000 });
    scenario.server[scenario.server.length - 1] = send(init);
    const { promise, elapsed } = start(scenario);
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' broke the RFB handshake: its desktop name would be 4294967295 bytes long$/);
    expect(elapsed()).toBeLessThan(1_000);
  });

  it('accepts a desktop name of 64 KiB, the most it allows, in one push', async () => {
    const name = 'n'.repeat(64 * 1024);
    const init = encodeServerInit(640, 480, PIXEL_FORMAT, name);
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.options = options(vnc);
    scenario.server[scenario.server.length - 1] = send(init);
    scenario.viewer = [...scenario.viewer.slice(0, -1), expectBytes(init)];
    const { result } = await succeeds(scenario);
    expect(result.desktop).toEqual({ width: 640, height: 480, name });
  });

  it('pauses a server that sends an endless stream, holds no more than the limit, and still fails quickly', async () => {
    const scenario: Scenario = { options: options(vnc, { timeoutMs: 10_000 }), server: [], viewer: [...viewerUntilTypes, expectBytes(TYPES_255), send([1])] };
    if (!followed) scenario.viewer = TERMINATED_VIEWER.slice(0, 6);
    const { server, viewer, promise, elapsed } = start(scenario);
    // All of it is sent before the gateway reads anything past the version: 255 types, then 4 MiB of junk.
    const junk = Buffer.alloc(16 * 1024, 0x41);
    server.deliver(V38, TYPES_255, ...Array.from({ length: 256 }, () => junk));
    // The junk is read as a failed SecurityResult whose reason would be 0x41414141 bytes long.
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' broke the RFB handshake: its reason would be 1094795585 bytes long$/);
    expect(elapsed()).toBeLessThan(1_000);
    expect(server.pauses).toBe(1);
    expect(server.delivered).toBeLessThanOrEqual(V38.length + 256 + LIMIT_BYTES + junk.length);
    expect(server.queued).toBeGreaterThan(3 * 1024 * 1024);
    if (followed) expect(viewer.writes[1]).toEqual(TYPES_255);
  });

  it('pauses a viewer that floods the gateway, and fails it on what it sent', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.options = options(vnc, { timeoutMs: 10_000 });
    scenario.viewer = [];
    const { viewer, promise, elapsed } = start(scenario);
    viewer.deliver(V38, ...Array.from({ length: 128 }, () => Buffer.alloc(16 * 1024, 0x52))); // 2 MiB after the version
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /^The viewer broke the RFB protocol: it chose security type 82[,;] /);
    expect(elapsed()).toBeLessThan(1_000);
    expect(viewer.pauses).toBe(1);
    expect(viewer.delivered).toBeLessThanOrEqual(V38.length + LIMIT_BYTES + 16 * 1024);
  });

  it('reads a ServerInit followed at once by a megabyte of updates, leaving the updates for the relay', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    const updates = Buffer.alloc(1024 * 1024, 0x00);
    // Right after ServerInit, in 16 KiB pieces, before the gateway has read ServerInit's name.
    scenario.server.push(...Array.from({ length: 64 }, (_, i) => send(updates.subarray(i * 16 * 1024, (i + 1) * 16 * 1024))));
    const { server, viewer, promise } = start(scenario);
    await expect(promise).resolves.toEqual({ followed: true, security: followed ? 'None' : 'VNC authentication', desktop: DESKTOP, serverInit: SERVER_INIT });
    expect(viewer.writes.at(-1)).toEqual(SERVER_INIT); // not a byte of the updates
    expect(server.pauses).toBe(1);
    const rest = server.reader.rest();
    expect(rest.length + server.queued).toBe(updates.length);
    expect(rest.length).toBeLessThanOrEqual(LIMIT_BYTES + 16 * 1024);
  });

  it('resumes a paused transport when the handshake needs more than the reader holds', async () => {
    const name = 'x'.repeat(4096);
    const init = encodeServerInit(640, 480, PIXEL_FORMAT, name);
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.options = options(vnc);
    // ServerInit in 100-byte pieces, against a reader that pauses beyond 64 bytes.
    const pieces = Array.from({ length: Math.ceil(init.length / 100) }, (_, i) => send(init.subarray(i * 100, (i + 1) * 100)));
    scenario.server.splice(-1, 1, ...pieces);
    scenario.viewer.splice(-1, 1, expectBytes(init));
    const { server, promise } = start(scenario, 'chunked', 64);
    await expect(promise).resolves.toEqual({
      followed: true,
      security: followed ? 'None' : 'VNC authentication',
      desktop: { width: 640, height: 480, name },
      serverInit: expect.any(Buffer),
    });
    expect(server.pauses).toBeGreaterThanOrEqual(1);
    expect(server.resumes).toBeGreaterThanOrEqual(1);
  });

  it('ends with DG_ERR_HANDSHAKE_TIMEOUT, naming what it waited for, when the server sends nothing', async () => {
    const { promise, elapsed } = start({ options: options(vnc), server: [], viewer: followed ? [] : TERMINATED_VIEWER.slice(0, 6) });
    await rejection(promise, 'DG_ERR_HANDSHAKE_TIMEOUT', 4504, /^Desktop 'lab': no RFB version within 0\.2 s$/);
    expect(elapsed()).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(elapsed()).toBeLessThan(TIMEOUT_MS + 1_000);
  });

  it('ends with DG_ERR_HANDSHAKE_TIMEOUT when the server stops after its version', async () => {
    const { promise } = start({ options: options(vnc), server: [send(V38)], viewer: viewerUntilTypes });
    await rejection(promise, 'DG_ERR_HANDSHAKE_TIMEOUT', 4504, /^Desktop 'lab': no security types within 0\.2 s$/);
  });

  it('ends with DG_ERR_VIEWER_TIMEOUT when the viewer sends nothing', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.viewer = [];
    const { promise, elapsed } = start(scenario);
    await rejection(promise, 'DG_ERR_VIEWER_TIMEOUT', 4408, /^The viewer sent no RFB version within 0\.2 s$/);
    expect(elapsed()).toBeLessThan(TIMEOUT_MS + 1_000);
  });

  it('ends with DG_ERR_VIEWER_TIMEOUT when the viewer never sends ClientInit', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.viewer = scenario.viewer.slice(0, 5);
    await rejection(start(scenario).promise, 'DG_ERR_VIEWER_TIMEOUT', 4408, /^The viewer sent no ClientInit within 0\.2 s$/);
  });

  it('ends with DG_ERR_VNC_PROTOCOL when the server closes the connection mid-handshake', async () => {
    const { server, promise } = start({ options: options(vnc), server: [send(V38), expectBytes(V38)], viewer: viewerUntilTypes });
    await server.untilWritten(V38.length);
    server.reader.end();
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /^Desktop 'lab' closed the connection during the RFB handshake \(before its security types\)$/);
  });

  it('ends with DG_ERR_VNC_PROTOCOL when the server closes halfway through ServerInit', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.server[scenario.server.length - 1] = send(SERVER_INIT.subarray(0, 10));
    const { server, promise } = start(scenario);
    // Until the gateway has sent the ClientInit's shared flag, its last write before ServerInit.
    for (let turn = 0; turn < 1_000 && hex(server.written) !== transcript(scenario.server); turn++) await nextTurn();
    expect(hex(server.written)).toBe(transcript(scenario.server));
    server.reader.end();
    await rejection(promise, 'DG_ERR_VNC_PROTOCOL', 4502, /closed the connection during the RFB handshake \(before its ServerInit\)$/);
  });

  it('ends with DG_ERR_RFB_CLIENT when the viewer closes the connection', async () => {
    const scenario = followed ? followedNone() : terminatedVncAuth();
    scenario.viewer = [expectBytes(V38)];
    const { viewer, promise } = start(scenario);
    await viewer.untilWritten(V38.length);
    viewer.reader.end();
    await rejection(promise, 'DG_ERR_RFB_CLIENT', 4400, /^The viewer broke the RFB protocol: it closed the connection$/);
  });
});
