/**
 * A gateway started on demand ends itself, as websockify's `--idle-timeout` and `--timeout`
 * do: `exitAfterIdleMs` closes it once no session has been open that long; `acceptForMs`
 * stops it taking new sessions that long after it started, and closes it when the last
 * session still open ends.
 */
import type { Config } from '../config/schema.js';
import { events } from '../observe/events.js';
import type { Logger } from '../observe/log.js';

export interface LifetimeParts {
  /** Whom events name as their source. */
  gateway: object;
  sessions: { readonly size: number };
  logger: Logger;
  close(): Promise<void>;
  stopAccepting(): void;
}

/** Start keeping the lifetime; returns the function that stops it (the gateway closing anyway). */
export function keepLifetime({ exitAfterIdleMs, acceptForMs }: Config['lifetime'], parts: LifetimeParts): () => void {
  if (exitAfterIdleMs === 0 && acceptForMs === 0) return () => {};
  const { gateway, sessions, logger } = parts;
  let accepting = true;
  let idleTimer: NodeJS.Timeout | undefined;
  const exit = (why: string): void => {
    logger.info(why);
    void parts.close();
  };
  // Counted when the timer fires: a session still connecting keeps the gateway up too.
  const startIdle = (): void => {
    clearTimeout(idleTimer);
    if (exitAfterIdleMs === 0 || sessions.size > 0) return;
    idleTimer = setTimeout(() => {
      if (sessions.size === 0) exit(`no session for ${exitAfterIdleMs} ms (lifetime.exitAfterIdleMs): stopping`);
    }, exitAfterIdleMs);
  };
  const whenNoneLeft = (): void => {
    if (!accepting && sessions.size === 0) exit('the last session ended after lifetime.acceptForMs: stopping');
  };
  // The session is forgotten just after its end is told.
  const ended = (message: { gateway: object }): void => {
    if (message.gateway !== gateway) return;
    setImmediate(() => {
      startIdle();
      whenNoneLeft();
    });
  };
  const stopListening = [
    events.sessionStarted.subscribe((message) => message.gateway === gateway && clearTimeout(idleTimer)),
    events.sessionEnded.subscribe(ended),
    events.sessionRefused.subscribe(ended),
  ];
  const acceptTimer =
    acceptForMs > 0
      ? setTimeout(() => {
          accepting = false;
          parts.stopAccepting();
          logger.info({ sessions: sessions.size }, `taking no new sessions after ${acceptForMs} ms (lifetime.acceptForMs)`);
          whenNoneLeft();
        }, acceptForMs)
      : undefined;
  startIdle();
  return () => {
    clearTimeout(idleTimer);
    clearTimeout(acceptTimer);
    for (const stop of stopListening) stop();
  };
}
