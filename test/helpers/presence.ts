/**
 * A viewer as the sharing tests need it: an RFB session opened with a presence key, and its
 * presence channel, whose JSON messages a test waits for by what they say.
 */
import { randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import { waitFor } from './processes.js';
import { openDesktop, type TestClient, type UpgradeOptions } from './ws-client.js';

export interface PresenceState {
  type: 'presence';
  desktop: string;
  sharing: 'shared' | 'exclusive' | 'controlled';
  you: { session: string; user: string; role: 'control' | 'view'; mayControl: boolean; mayTakeOver: boolean };
  controller: { user: string; since: number } | null;
  request: { user: string; mine: boolean } | null;
  people: { user: string; role: 'control' | 'view'; since: number }[];
}

export interface Viewer {
  rfb: TestClient;
  viewKey: string;
  presence: PresenceChannel;
}

export class PresenceChannel {
  readonly ws: WebSocket;
  readonly states: PresenceState[] = [];
  readonly notices: string[] = [];
  readonly opened: Promise<void>;

  constructor(url: string, options: UpgradeOptions = {}) {
    this.ws = new WebSocket(url, { headers: options.headers, origin: options.origin });
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as PresenceState | { type: 'notice'; text: string };
      if (message.type === 'notice') this.notices.push(message.text);
      else this.states.push(message);
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`presence refused with HTTP ${res.statusCode}`)));
    });
  }

  get latest(): PresenceState | undefined {
    return this.states.at(-1);
  }

  /** Wait until the latest presence passes `check`; returns it. */
  async until(check: (state: PresenceState) => boolean, what: string, timeoutMs = 10_000): Promise<PresenceState> {
    await waitFor(() => this.latest !== undefined && check(this.latest), what, timeoutMs);
    return this.latest as PresenceState;
  }

  async notice(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    await waitFor(() => this.notices.some((n) => pattern.test(n)), `a notice matching ${pattern}`, timeoutMs);
    return this.notices.find((n) => pattern.test(n)) as string;
  }

  send(action: object): void {
    this.ws.send(JSON.stringify(action));
  }

  close(): void {
    this.ws.terminate();
  }
}

export function newViewKey(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * Open a desktop as the viewer page does: the RFB session with a fresh presence key (the
 * RFB handshake done), then its presence channel. `base`: ws://HOST:PORT of the gateway.
 */
export async function openViewer(base: string, desktop: string, options: UpgradeOptions = {}): Promise<Viewer> {
  const viewKey = newViewKey();
  const rfb = await openDesktop(`${base}/websockify?desktop=${encodeURIComponent(desktop)}&view=${viewKey}`, options);
  const presence = new PresenceChannel(`${base}/presence?view=${viewKey}`, options);
  await presence.opened;
  return { rfb, viewKey, presence };
}
