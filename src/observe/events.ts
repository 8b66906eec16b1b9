/**
 * The gateway's lifecycle events, published on `node:diagnostics_channel` as undici does:
 * the code that refuses, admits or ends something says so here and knows nothing of logs
 * or metrics, which subscribe (see log.ts). Publishing costs nothing while no one listens.
 * Channels are process-wide: every message names the gateway it comes from, so that two
 * gateways in one process each log their own.
 */
import { channel, type Channel } from 'node:diagnostics_channel';

/** Who a request came from, as the gateway believes it. */
interface From {
  readonly gateway: object;
  /** The client's address (behind a trusted proxy: the forwarded one). */
  readonly remote: string;
  readonly user?: string | undefined;
}

export interface Refused extends From {
  readonly desktop?: string | undefined;
  /** The catalogue code, e.g. DG_ERR_FORBIDDEN. */
  readonly code: string;
  readonly status: number;
  readonly reason: string;
  readonly origin?: string | undefined;
  /** The request URL, tickets blanked out. */
  readonly url?: string | undefined;
}

export interface SessionStarted extends From {
  readonly session: string;
  readonly desktop: string;
  readonly viewOnly: boolean;
  /** Where it connected: `host:port`, or `unix:/path` for a Unix socket. */
  readonly upstream: string;
  /** The security type used with the VNC server, e.g. "VNC authentication", "VeNCrypt X509Vnc". */
  readonly security: string;
  /** Whether the gateway read the handshake through; false: the viewer chose a type it cannot follow. */
  readonly followed: boolean;
  /** How long connecting to the VNC server took, and then the RFB handshake (ms). */
  readonly connectMs: number;
  readonly handshakeMs: number;
  /** The recording's id (its file is ID.dgrec), when the session is recorded. */
  readonly recording?: string | undefined;
}

export interface SessionModeChanged extends From {
  readonly session: string;
  readonly desktop: string;
  readonly viewOnly: boolean;
}

export interface SessionEnded extends From {
  readonly session: string;
  readonly desktop: string;
  readonly durationMs: number;
  readonly bytesToUpstream: number;
  readonly bytesToBrowser: number;
  readonly code: number;
  readonly reason: string;
  readonly by: 'browser' | 'upstream' | 'gateway';
  /** Input and control messages a view-only filter dropped. */
  readonly droppedMessages: number;
  /** The recording's id, when the session was recorded. */
  readonly recording?: string | undefined;
}

/** A session's recording failed or stopped before the session ended. */
export interface RecordingStopped extends From {
  readonly session: string;
  readonly desktop: string;
  readonly recording: string;
  readonly problem: string;
  /** What the desktop's `record.onFailure` made of it. */
  readonly then: 'session ended' | 'session goes on unrecorded';
  readonly err?: unknown;
}

export interface SessionRefused extends From {
  readonly session: string;
  readonly desktop: string;
  /** The close code sent. */
  readonly code: number;
  readonly error: string;
  readonly reason: string;
}

export interface LoggedIn extends From {
  readonly user: string;
}

export interface TicketIssued extends From {
  readonly desktop: string;
  readonly user: string;
  readonly viewOnly: boolean;
  readonly ticket: string;
  readonly expiresAt: Date;
}

/** An administrator ended a session or changed its role. */
export interface AdminAction extends From {
  /** The administrator: a user of the `admins` rule, or `api-key`. */
  readonly user: string;
  /** `end`, `role control`, `role view`. */
  readonly action: string;
  readonly session: string;
  readonly desktop: string;
  /** Whose session it is. */
  readonly of: string;
}

/** A recording's player page or file was served. */
export interface RecordingServed extends From {
  readonly user: string;
  readonly recording: string;
  readonly desktop: string;
  /** Whose session it was. */
  readonly of: string;
  /** `player`: the player page; `file`: the file (the player reads it so); `download`: the file as an attachment. */
  readonly as: 'player' | 'file' | 'download';
  /** The bytes sent of a range request, `first-last/size`. */
  readonly range?: string | undefined;
}

/** Something went wrong that should not have: a bug. */
export interface Failed {
  readonly gateway: object;
  readonly what: string;
  readonly err: unknown;
  readonly url?: string | undefined;
}

/** One named channel carrying messages of one shape. */
export class LifecycleEvent<T> {
  readonly #channel: Channel;

  constructor(name: string) {
    this.#channel = channel(name);
  }

  /** Publish only when someone listens: building the message is the cost. */
  publish(message: () => T): void {
    if (this.#channel.hasSubscribers) this.#channel.publish(message());
  }

  /** Listen; returns the function that stops listening. */
  subscribe(listener: (message: T) => void): () => void {
    const onMessage = (message: unknown): void => listener(message as T);
    this.#channel.subscribe(onMessage);
    return () => this.#channel.unsubscribe(onMessage);
  }
}

export const events = {
  /** An upgrade answered with an HTTP status instead of a WebSocket. */
  upgradeRefused: new LifecycleEvent<Refused>('deskgate:upgrade:refused'),
  /** A page, form or API request refused (login, viewer, tickets). */
  requestRefused: new LifecycleEvent<Refused>('deskgate:request:refused'),
  sessionStarted: new LifecycleEvent<SessionStarted>('deskgate:session:started'),
  /** A running session switched between control and view-only. */
  sessionModeChanged: new LifecycleEvent<SessionModeChanged>('deskgate:session:mode'),
  sessionEnded: new LifecycleEvent<SessionEnded>('deskgate:session:ended'),
  /** A WebSocket accepted and then closed before it was bridged (the VNC server not reachable, say). */
  sessionRefused: new LifecycleEvent<SessionRefused>('deskgate:session:refused'),
  loggedIn: new LifecycleEvent<LoggedIn>('deskgate:login'),
  /** A login form with a wrong password, or from a blocked address (the refusal itself is a requestRefused). */
  loginFailed: new LifecycleEvent<LoggedIn>('deskgate:login:failed'),
  ticketIssued: new LifecycleEvent<TicketIssued>('deskgate:ticket:issued'),
  adminAction: new LifecycleEvent<AdminAction>('deskgate:admin'),
  recordingStopped: new LifecycleEvent<RecordingStopped>('deskgate:recording:stopped'),
  /** Someone played or downloaded a recording. */
  recordingServed: new LifecycleEvent<RecordingServed>('deskgate:recording:served'),
  failed: new LifecycleEvent<Failed>('deskgate:failed'),
};
