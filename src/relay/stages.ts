/**
 * Relay stages: optional hooks on the bridge, one per direction, so that features such as a
 * view-only filter, an RFB handshake rewriter or a session recorder plug into the relay
 * without the relay knowing what they are for (as Guacamole's `GuacamoleFilter` does).
 *
 * - browser -> VNC: an `UpstreamFilter` sees each binary WebSocket message and passes,
 *   replaces or drops it;
 * - VNC -> browser: a `BrowserTap` sees each chunk read from the VNC server and can neither
 *   change nor hold it: that direction is never parsed or rewritten after the handshake.
 *
 * Both are synchronous and run on the relay's hot path: keep them small. A stage that throws
 * ends its session with DG_ERR_INTERNAL (close code 1011); the process carries on. With no
 * stage configured, the bridge runs exactly its unstaged path (see bridge.ts).
 */
import type { Closing } from './bridge.js';

/** What a stage may do to its session besides relaying: end it, with a catalogue error. */
export interface StageSession {
  /**
   * Close both sides with `closing`'s close code and reason (e.g. a `GatewayError` from
   * `errors` in src/errors.ts). Idempotent; the first reason wins. Bytes the stage returns
   * after calling it are not relayed.
   */
  close(closing: Closing): void;
}

/**
 * Sees each complete binary message from the browser before it is written to the VNC server.
 * Message boundaries are the browser's WebSocket messages, not RFB messages: one message may
 * hold several RFB messages, or part of one.
 */
export interface UpstreamFilter {
  /**
   * Returns the bytes to write: `message` itself to pass it, other bytes to replace it, `null`
   * to drop it. `message` is the filter's to keep. Bytes returned belong to the socket from
   * then on: do not modify or reuse them. Only the bytes written count as sent upstream
   * (`bytesToUpstream`, the idle timer), and they are subject to the VNC side's back-pressure.
   */
  filter(message: Buffer, session: StageSession): Buffer | null;
}

/** Sees each chunk read from the VNC server, in order, before it is sent to the browser. */
export interface BrowserTap {
  /**
   * `chunk` is a view of the read buffer that every upstream socket shares: it is valid only
   * during this call and is overwritten by the next read, of any session. Copy what you keep
   * (`Buffer.from(chunk)`), and never write to it: the browser is sent these bytes after the
   * tap returns. If the tap closes the session, this chunk is not sent.
   */
  tap(chunk: Buffer, session: StageSession): void;
}

/** The stages of one session; a direction with none runs the bridge's unstaged path. */
export interface RelayStages {
  /** browser -> VNC server. */
  readonly toUpstream?: UpstreamFilter | undefined;
  /** VNC server -> browser. */
  readonly toBrowser?: BrowserTap | undefined;
}

/** Two browser -> VNC filters in a row: `second` sees what `first` passes; a message `first` drops goes no further. */
export function chainFilters(first: UpstreamFilter, second: UpstreamFilter | undefined): UpstreamFilter {
  if (!second) return first;
  return {
    filter(message, session) {
      const passed = first.filter(message, session);
      return passed === null ? null : second.filter(passed, session);
    },
  };
}
