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
