/** A `ws` client for tests: the close code and reason as a promise, the subprotocol noVNC asks for. */
import { WebSocket } from 'ws';
import { RfbClient, type ServerInit } from './rfb-client.js';

export interface Closed {
  code: number;
  reason: string;
}

export interface TestClient {
  ws: WebSocket;
  /** Resolves when the WebSocket is open; rejects if it never opens. */
  opened: Promise<void>;
  closed: Promise<Closed>;
}

export function connectWs(url: string, options: { protocols?: string[]; localAddress?: string } = {}): TestClient {
  const ws = new WebSocket(url, options.protocols ?? ['binary'], { localAddress: options.localAddress });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
  opened.catch(() => {}); // callers that only care how it closed need not await it
  const closed = new Promise<Closed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return { ws, opened, closed };
}

/** An RFB client speaking through the gateway's WebSocket, handshake done. */
export async function connectRfb(url: string): Promise<TestClient & { rfb: RfbClient; init: ServerInit }> {
  const client = connectWs(url);
  await client.opened;
  const rfb = new RfbClient((bytes) => client.ws.send(bytes));
  client.ws.on('message', (data: Buffer) => rfb.push(data));
  void client.closed.then(({ code, reason }) => rfb.end(new Error(`WebSocket closed: ${code} ${reason}`)));
  const init = await rfb.handshake();
  return { ...client, rfb, init };
}

export interface UpgradeOptions {
  /** Request headers, e.g. a Cookie or identity headers. */
  headers?: Record<string, string>;
  /** The Origin header; none is sent when unset. */
  origin?: string;
  /** Source address on loopback, e.g. 127.0.0.2. */
  localAddress?: string;
  /**
   * Pause the WebSocket as it opens: the server's first bytes can arrive with the 101 and
   * would be emitted before the caller listens. startRfb() resumes it.
   */
  paused?: boolean;
}

/** How an upgrade went: opened (101), or refused with a plain HTTP response. */
export type Upgrade = { status: 101; client: TestClient } | { status: number; body: string };

/** Ask for a WebSocket (subprotocol "binary"); resolves either way, rejects only if no HTTP answer came. */
export function tryUpgrade(url: string, options: UpgradeOptions = {}): Promise<Upgrade> {
  const { paused, ...wsOptions } = options;
  const ws = new WebSocket(url, ['binary'], wsOptions);
  const closed = new Promise<Closed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      if (paused) ws.pause();
      ws.on('error', () => {}); // after the upgrade, how it closed is what tests look at
      resolve({ status: 101, client: { ws, opened: Promise.resolve(), closed } });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.once('error', reject);
    });
    ws.once('error', reject);
  });
}

/** Speak RFB over an open (and perhaps paused) WebSocket: handshake done, the server's messages fed to the client. */
export async function startRfb(client: TestClient): Promise<{ rfb: RfbClient; init: ServerInit }> {
  const rfb = new RfbClient((bytes) => client.ws.send(bytes));
  client.ws.on('message', (data: Buffer) => rfb.push(data));
  client.ws.resume();
  void client.closed.then(({ code, reason }) => rfb.end(new Error(`WebSocket closed: ${code} ${reason}`)));
  return { rfb, init: await rfb.handshake() };
}
