/**
 * WebSocket upgrades carrying credentials (cookie, proxy headers, a CA for wss): either
 * the open socket with the first message the desktop sends, or the HTTP status that
 * refused it. Every socket opened here is cut by `closeOpenedSockets()`.
 */
import { WebSocket } from 'ws';

export interface UpgradeOptions {
  headers?: Record<string, string>;
  ca?: Buffer;
  localAddress?: string;
}

export type Upgrade =
  | { status: 101; ws: WebSocket; firstMessage: Promise<Buffer> }
  | { status: number; body: string };

const opened = new Set<WebSocket>();

export function tryUpgrade(url: string, options: UpgradeOptions = {}): Promise<Upgrade> {
  const ws = new WebSocket(url, ['binary'], { ...options, perMessageDeflate: false });
  opened.add(ws);
  ws.once('close', () => opened.delete(ws));
  const firstMessage = new Promise<Buffer>((resolve, reject) => {
    ws.once('message', (data: Buffer) => resolve(data));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before the desktop said anything`)));
  });
  firstMessage.catch(() => {}); // a refused upgrade never has one
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ status: 101, ws, firstMessage }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

/** The status of an upgrade; an accepted one is closed again at once. */
export async function upgradeStatus(url: string, options: UpgradeOptions = {}): Promise<number> {
  const result = await tryUpgrade(url, options);
  if ('ws' in result) result.ws.terminate();
  return result.status;
}

/** Open a session and wait for the desktop's RFB greeting; fails with the refusal otherwise. */
export async function openDesktop(url: string, options: UpgradeOptions = {}): Promise<WebSocket> {
  const result = await tryUpgrade(url, options);
  if (!('ws' in result)) throw new Error(`upgrade refused with HTTP ${result.status}: ${result.body.trim()}`);
  const greeting = (await result.firstMessage).toString('latin1');
  if (!/^RFB \d{3}\.\d{3}\n$/.test(greeting)) throw new Error(`expected an RFB greeting, got ${JSON.stringify(greeting)}`);
  return result.ws;
}

export function closeOpenedSockets(): void {
  for (const ws of opened) ws.terminate();
  opened.clear();
}
