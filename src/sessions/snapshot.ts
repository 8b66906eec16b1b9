/**
 * What the public API shows of a live session: a copy, not the live object. In a module of its
 * own, so the library's declarations do not reach the session layer's (and its `ws` types).
 */
export interface SessionSnapshot {
  readonly id: string;
  readonly desktop: string;
  readonly user: string;
  readonly remoteAddress: string;
  readonly viewOnly: boolean;
  /** How its desktop is shared: shared, exclusive or controlled. */
  readonly sharing: 'shared' | 'exclusive' | 'controlled';
  readonly startedAt: Date;
  /** Whether it is bridged to the VNC server yet. */
  readonly connected: boolean;
  /** The security type used with the VNC server, once connected. */
  readonly security: string | undefined;
  /** Input and control messages its view-only filter dropped. */
  readonly droppedMessages: number;
  readonly bytesToUpstream: number;
  readonly bytesToBrowser: number;
  /** Bytes the gateway holds for it right now, both directions. */
  readonly bufferedBytes: number;
}
