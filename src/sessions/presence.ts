/**
 * The viewer's presence channel: a second WebSocket, beside the RFB stream, that tells a
 * session's viewer who else is on the desktop, who controls it and who asks for control, and
 * carries the viewer's control actions back.
 *
 * It is authorised by the session itself: the viewer makes a random presence key, sends it
 * with its RFB upgrade (`&view=KEY`), and opens `presence?view=KEY` once the session is up.
 * Only the digest is stored, so the key works like a session cookie no one else ever saw;
 * it works on any node, because the session's record is in the coordination store.
 *
 * To the viewer, JSON text messages:
 *   { type: 'presence', desktop, sharing, you: { session, user, role, mayControl, mayTakeOver },
 *     controller: { user, since } | null, request: { user, mine } | null,
 *     people: [{ user, role, since }] }
 *   { type: 'notice', text }
 * From the viewer: { type: 'request-control' | 'take-control' | 'release-control' } and
 * { type: 'answer', allow: boolean }.
 */
import type { RawData, WebSocket } from 'ws';
import type { Coordinator } from '../coordination/coordinator.js';
import type { SessionRecord } from '../coordination/store.js';

interface Watcher {
  readonly ws: WebSocket;
  readonly session: string;
  readonly desktop: string;
  alive: boolean;
}

/** Presence channels one session may have open: a viewer needs one; a reload briefly two. */
export const MAX_CHANNELS_PER_SESSION = 4;

/** The largest message a viewer sends here: an action is a few dozen bytes. */
export const PRESENCE_MAX_MESSAGE_BYTES = 1024;

export class PresenceHub {
  readonly #coordinator: Coordinator;
  readonly #byDesktop = new Map<string, Set<Watcher>>();
  /** Desktops whose presence is to be sent again once this turn's changes are in. */
  readonly #dirty = new Set<string>();
  readonly #stop: (() => void)[];
  readonly #pinger: NodeJS.Timeout | undefined;

  constructor(coordinator: Coordinator, keepaliveMs: number) {
    this.#coordinator = coordinator;
    this.#stop = [coordinator.onChange((desktop) => this.#markDirty(desktop)), coordinator.onNotice((session, text) => this.#notice(session, text))];
    // Like the RFB stream: proxies cut a connection on which nothing moves.
    if (keepaliveMs > 0) {
      this.#pinger = setInterval(() => this.#ping(), keepaliveMs);
      this.#pinger.unref();
    }
  }

  /** The live session a presence key belongs to, on any node. */
  find(digest: string): Promise<SessionRecord | undefined> {
    return this.#coordinator.store.sessionByViewKey(digest);
  }

  /** How many presence channels this node has open for a session. */
  channelsOf(session: string, desktop: string): number {
    let count = 0;
    for (const watcher of this.#byDesktop.get(desktop) ?? []) if (watcher.session === session) count += 1;
    return count;
  }

  /** Take an accepted presence socket of this session's viewer. */
  attach(ws: WebSocket, record: SessionRecord): void {
    const watcher: Watcher = { ws, session: record.id, desktop: record.desktop, alive: true };
    let watchers = this.#byDesktop.get(record.desktop);
    if (!watchers) this.#byDesktop.set(record.desktop, (watchers = new Set()));
    watchers.add(watcher);
    ws.on('pong', () => (watcher.alive = true));
    ws.on('error', () => {}); // the 'close' that follows ends it
    ws.on('message', (data, isBinary) => void this.#act(watcher, data, isBinary));
    ws.on('close', () => {
      watchers.delete(watcher);
      if (watchers.size === 0) this.#byDesktop.delete(record.desktop);
    });
    this.#markDirty(record.desktop);
  }

  #markDirty(desktop: string): void {
    if (!this.#byDesktop.has(desktop)) return;
    if (this.#dirty.size === 0) setImmediate(() => void this.#sendDirty());
    this.#dirty.add(desktop);
  }

  async #sendDirty(): Promise<void> {
    const desktops = [...this.#dirty];
    this.#dirty.clear();
    await Promise.all(desktops.map((desktop) => this.#send(desktop)));
  }

  /** Everyone watching the desktop gets its presence, as seen from their own session. */
  async #send(desktop: string): Promise<void> {
    const watchers = this.#byDesktop.get(desktop);
    if (!watchers) return;
    const { store } = this.#coordinator;
    let state;
    try {
      state = await Promise.all([store.sessions(desktop), store.holder(desktop), store.pendingRequest(desktop)]);
    } catch {
      return; // the store is away: the next change after it is back sends it again
    }
    const [sessions, holder, request] = state;
    const people = sessions.sort((a, b) => a.since - b.since).map((s) => ({ user: s.user, role: s.role, since: s.since }));
    for (const watcher of watchers) {
      const you = sessions.find((s) => s.id === watcher.session);
      if (!you) {
        watcher.ws.close(1000, 'The session ended');
        continue;
      }
      const message = {
        type: 'presence',
        desktop,
        sharing: you.sharing,
        you: { session: you.id, user: you.user, role: you.role, mayControl: you.mayControl, mayTakeOver: you.mayTakeOver },
        controller: you.sharing === 'controlled' && holder ? { user: holder.user, since: holder.since } : null,
        request: request ? { user: request.user, mine: request.session === you.id } : null,
        people,
      };
      watcher.ws.send(JSON.stringify(message));
    }
  }

  #notice(session: string, text: string): void {
    for (const watchers of this.#byDesktop.values()) {
      for (const watcher of watchers) if (watcher.session === session) watcher.ws.send(JSON.stringify({ type: 'notice', text }));
    }
  }

  /** A viewer's action, for its own session as the store knows it now. */
  async #act(watcher: Watcher, data: RawData, isBinary: boolean): Promise<void> {
    const action = isBinary ? undefined : parseAction(data.toString());
    if (!action) return watcher.ws.close(1003, 'Expected a JSON action such as {"type":"request-control"}');
    const coordinator = this.#coordinator;
    try {
      const record = await coordinator.store.session(watcher.session);
      if (!record) return;
      switch (action.type) {
        case 'request-control':
          return await coordinator.requestControl(record);
        case 'take-control':
          return await coordinator.takeControl(record);
        case 'release-control':
          return await coordinator.releaseControl(record);
        case 'answer':
          return await coordinator.answer(record, action.allow);
      }
    } catch {
      watcher.ws.send(JSON.stringify({ type: 'notice', text: 'The gateway cannot reach its cluster store: try again in a moment' }));
    }
  }

  #ping(): void {
    for (const watchers of this.#byDesktop.values()) {
      for (const watcher of watchers) {
        if (!watcher.alive) watcher.ws.terminate();
        watcher.alive = false;
        watcher.ws.ping();
      }
    }
  }

  close(): void {
    clearInterval(this.#pinger);
    for (const stop of this.#stop) stop();
    for (const watchers of this.#byDesktop.values()) for (const watcher of watchers) watcher.ws.terminate();
  }
}

type Action = { type: 'request-control' | 'take-control' | 'release-control' } | { type: 'answer'; allow: boolean };

function parseAction(text: string): Action | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const { type, allow } = (value ?? {}) as { type?: unknown; allow?: unknown };
  if (type === 'request-control' || type === 'take-control' || type === 'release-control') return { type };
  if (type === 'answer' && typeof allow === 'boolean') return { type, allow };
  return undefined;
}
