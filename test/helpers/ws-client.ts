/**
 * WebSocket clients for tests, asking as noVNC does (subprotocol "binary"), with whatever
 * credentials a test carries: how the upgrade was answered (101, or the HTTP status and
 * body that refused it), the close code and reason as a promise, and every message the
 * server sent — its first bytes too, which can arrive in the same TCP read as the 101 and
 * so before any caller could listen. Every socket opened here is cut by `closeOpenedSockets()`.
 */
import { WebSocket } from 'ws';
import { parsePixelFormat } from '../../src/rfb/protocol.js';
import { RfbClient, type ServerInit } from './rfb-client.js';
import { fillPattern } from './tcp-peers.js';

export interface UpgradeOptions {
  /** Request headers, e.g. a Cookie or identity headers. */
  headers?: Record<string, string>;
  /** The Origin header; none is sent when unset. */
  origin?: string;
  /** Trust this certificate (wss only). */
  ca?: Buffer;
  /** Source address on loopback, e.g. 127.0.0.2. */
  localAddress?: string;
  /** The subprotocols asked for; noVNC's ['binary'] when unset. */
  protocols?: string[];
  /** Answer pings (default true); false plays a browser that has silently gone. */
  autoPong?: boolean;
}

export interface Closed {
  code: number;
  reason: string;
}

export interface TestClient {
  ws: WebSocket;
  /** Resolves when the WebSocket is open; rejects, naming the HTTP status, if it never opens. */
  opened: Promise<void>;
  closed: Promise<Closed>;
  /** The oldest message not yet taken (those that came before this call first); rejects if the socket closes first. */
  nextMessage(): Promise<Buffer>;
  /** Hand every message not yet taken, and each one after, to `listener`: for a consumer that reads to the end. */
  onMessage(listener: (data: Buffer) => void): void;
}

/** How an upgrade went: opened (101), or refused with a plain HTTP response. */
export type Upgrade = { status: 101; client: TestClient } | { status: number; body: string };

const openSockets = new Set<WebSocket>();

/** Start a WebSocket now; `opened` says whether it opens. Callers that only care how it closed need not await it. */
export function connectWs(url: string, options: UpgradeOptions = {}): TestClient {
  return startClient(url, options).client;
}

/** Ask for a WebSocket; resolves either way, rejects only if no HTTP answer came. */
export function tryUpgrade(url: string, options: UpgradeOptions = {}): Promise<Upgrade> {
  return startClient(url, options).answer;
}

/** The status of an upgrade; an accepted one is cut again at once. */
export async function upgradeStatus(url: string, options: UpgradeOptions = {}): Promise<number> {
  const result = await tryUpgrade(url, options);
  if ('client' in result) result.client.ws.terminate();
  return result.status;
}

/**
 * Open a session and do the RFB handshake as a viewer would (security None, ServerInit
 * read): from then on the client's messages are the relay's. Fails with the refusal otherwise.
 */
export async function openDesktop(url: string, options: UpgradeOptions = {}): Promise<TestClient> {
  const result = await tryUpgrade(url, options);
  if (!('client' in result)) throw new Error(`upgrade refused with HTTP ${result.status}: ${result.body.trim()}`);
  await viewerHandshake(result.client);
  return result.client;
}

/**
 * The viewer's side of the RFB handshake (3.8, security None) over an open WebSocket, read
 * message by message so that nothing after ServerInit is taken: resolves with ServerInit.
 */
export async function viewerHandshake(client: TestClient, options: { shared?: boolean } = {}): Promise<ServerInit> {
  let held = Buffer.alloc(0);
  const read = async (length: number): Promise<Buffer> => {
    while (held.length < length) held = Buffer.concat([held, await client.nextMessage()]);
    const bytes = held.subarray(0, length);
    held = held.subarray(length);
    return bytes;
  };
  const reason = async (): Promise<string> => (await read((await read(4)).readUInt32BE(0))).toString();
  const send = (bytes: Buffer | string): void => client.ws.send(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  const version = (await read(12)).toString('latin1');
  if (version !== 'RFB 003.008\n') throw new Error(`expected RFB 3.8, got ${JSON.stringify(version)}`);
  send('RFB 003.008\n');
  const [count = 0] = await read(1);
  if (count === 0) throw new Error(`refused: ${await reason()}`);
  const offered = [...(await read(count))];
  if (!offered.includes(1)) throw new Error(`security types ${offered.join(', ')} do not include None`);
  send(Buffer.from([1]));
  if ((await read(4)).readUInt32BE(0) !== 0) throw new Error(`security failed: ${await reason()}`);
  send(Buffer.from([options.shared === false ? 0 : 1]));
  const head = await read(24);
  const name = (await read(head.readUInt32BE(20))).toString();
  if (held.length > 0) throw new Error(`${held.length} bytes came with ServerInit: expected them in a message of their own`);
  return { width: head.readUInt16BE(0), height: head.readUInt16BE(2), pixelFormat: parsePixelFormat(head, 4), name };
}

/** Send `text` through an echo desktop; resolves with what came back once it is as long. */
export async function roundTrip(client: TestClient, text: string): Promise<string> {
  client.ws.send(Buffer.from(text));
  let received = '';
  while (received.length < text.length) received += (await client.nextMessage()).toString();
  return received;
}

/** Speak RFB over an open WebSocket: handshake done, every message of the server fed to the client. */
export async function startRfb(client: TestClient): Promise<{ rfb: RfbClient; init: ServerInit }> {
  const rfb = new RfbClient((bytes) => client.ws.send(bytes));
  client.onMessage((data) => rfb.push(data));
  void client.closed.then(({ code, reason }) => rfb.end(new Error(`WebSocket closed: ${code} ${reason}`)));
  return { rfb, init: await rfb.handshake() };
}

/** An RFB client speaking through the gateway's WebSocket, handshake done. */
export async function connectRfb(url: string, options: UpgradeOptions = {}): Promise<TestClient & { rfb: RfbClient; init: ServerInit }> {
  const client = connectWs(url, options);
  await client.opened;
  return { ...client, ...(await startRfb(client)) };
}

/** Cut every WebSocket this module opened that has not closed yet. */
export function closeOpenedSockets(): void {
  for (const ws of openSockets) ws.terminate();
  openSockets.clear();
}

function startClient(url: string, options: UpgradeOptions): { client: TestClient; answer: Promise<Upgrade> } {
  const { protocols = ['binary'], ...wsOptions } = options;
  const ws = new WebSocket(url, protocols, wsOptions);
  openSockets.add(ws);
  ws.on('error', () => {}); // after the upgrade, how it closed is what tests look at
  const closed = new Promise<Closed>((resolve) => {
    ws.once('close', (code, reason) => {
      openSockets.delete(ws);
      resolve({ code, reason: reason.toString() });
    });
  });
  const inbox = new Inbox(ws, closed); // listening from the start: the first message may come with the 101
  const answer = new Promise<Upgrade>((resolve, reject) => {
    ws.once('open', () => resolve({ status: 101, client }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
    ws.once('error', reject);
  });
  const opened = answer.then((result) => {
    if (!('client' in result)) throw new Error(`upgrade refused with HTTP ${result.status}: ${result.body.trim()}`);
  });
  opened.catch(() => {}); // callers that only care how it closed need not await it
  const client: TestClient = {
    ws,
    opened,
    closed,
    nextMessage: () => inbox.next(),
    onMessage: (listener) => inbox.handTo(listener),
  };
  return { client, answer };
}

/**
 * The server's messages, kept from the moment the socket exists until a consumer takes
 * them. Past `QUEUE_LIMIT` unread bytes the socket is paused, so a test that never reads
 * cannot make it grow without bound; it resumes when the messages are taken.
 */
class Inbox {
  static readonly QUEUE_LIMIT = 16 * 1024 * 1024;
  readonly #ws: WebSocket;
  readonly #closed: Promise<Closed>;
  readonly #queued: Buffer[] = [];
  #queuedBytes = 0;
  #pausedHere = false;
  #consumer: ((data: Buffer) => void) | undefined;

  constructor(ws: WebSocket, closed: Promise<Closed>) {
    this.#ws = ws;
    this.#closed = closed;
    ws.on('message', (data: Buffer) => this.#receive(data));
  }

  next(): Promise<Buffer> {
    const queued = this.#take();
    if (queued) return Promise.resolve(queued);
    if (this.#consumer) return Promise.reject(new Error('the messages of this WebSocket already go to a consumer'));
    return new Promise((resolve, reject) => {
      const once = (data: Buffer): void => {
        this.#consumer = undefined;
        resolve(data);
      };
      this.#consumer = once;
      void this.#closed.then(({ code, reason }) => {
        if (this.#consumer !== once) return;
        this.#consumer = undefined;
        reject(new Error(`WebSocket closed with ${code} ${reason} before the server sent a message`));
      });
    });
  }

  handTo(listener: (data: Buffer) => void): void {
    if (this.#consumer) throw new Error('the messages of this WebSocket already go to a consumer');
    this.#consumer = listener;
    for (let data = this.#take(); data; data = this.#take()) listener(data);
  }

  #receive(data: Buffer): void {
    if (this.#consumer) {
      this.#consumer(data);
      return;
    }
    this.#queued.push(data);
    this.#queuedBytes += data.length;
    if (this.#queuedBytes > Inbox.QUEUE_LIMIT && !this.#ws.isPaused) {
      this.#ws.pause();
      this.#pausedHere = true;
    }
  }

  #take(): Buffer | undefined {
    const data = this.#queued.shift();
    if (!data) return undefined;
    this.#queuedBytes -= data.length;
    if (this.#pausedHere && this.#queuedBytes <= Inbox.QUEUE_LIMIT) {
      this.#pausedHere = false;
      this.#ws.resume();
    }
    return data;
  }
}

/**
 * Send `total` bytes of the pattern stream in 64 KiB binary messages, as fast as the
 * client's own socket takes them (at most 4 MiB queued); resolves once all are sent.
 */
export function sendPattern(client: TestClient, total: number): Promise<void> {
  let sent = 0;
  return new Promise<void>((resolve, reject) => {
    const sendMore = (): void => {
      while (sent < total && client.ws.bufferedAmount < 4 * 1024 * 1024) {
        const chunk = Buffer.allocUnsafe(64 * 1024);
        fillPattern(chunk, sent);
        sent += chunk.length;
        client.ws.send(chunk, (err) => (err ? reject(err) : sent >= total ? resolve() : undefined));
      }
      if (sent < total) setTimeout(sendMore, 1);
    };
    sendMore();
  });
}
