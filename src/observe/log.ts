/**
 * The log: JSON lines (pino) on stdout, written by one subscriber to the lifecycle events
 * (events.ts), so every line of a kind has the same fields: `remote`, `user`, `desktop`,
 * `session`; `error` is a catalogue code, `err` an Error with its stack.
 */
import { pino } from 'pino';
import { events } from './events.js';

/**
 * One log call: fields then a message, or a message alone (pino's order). pino's methods fit,
 * and so do `console`'s and `(fields: object | string, message?: string) => void`.
 */
export interface LogMethod {
  (fields: Record<string, unknown>, message: string): void;
  (message: string): void;
}

/**
 * What the gateway logs to: the four methods it calls, nothing else. A pino logger, `console`
 * or a small object of your own; the gateway never asks it for a level or a child.
 */
export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

/**
 * The default: pino at `level` on stdout. JSON lines for machines (`json`, or `auto` when
 * stdout is not a terminal); for a person at a terminal, pino-pretty's coloured lines with the
 * local time, loaded only then.
 */
export async function createLogger(level: string, format: 'auto' | 'json' | 'pretty' = 'auto'): Promise<Logger> {
  const options = { level, base: { name: 'deskgate' } };
  // pino's logger type carries a `then` of its own: the Logger it is used as has none.
  let logger: Logger;
  if (format === 'json' || (format === 'auto' && !process.stdout.isTTY)) logger = pino(options);
  else {
    const { default: pretty } = await import('pino-pretty');
    // In this thread, not a worker transport: lines come out in order with the process's own output, and nothing is lost at exit.
    const stream = pretty({ colorize: Boolean(process.stdout.isTTY), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', sync: true });
    logger = pino(options, stream);
  }
  return logger;
}

/** Log the events of `gateway` to `logger`; returns the function that stops it. */
export function logEvents(gateway: object, logger: Logger): () => void {
  const mine =
    <T extends { gateway: object }>(write: (message: Omit<T, 'gateway'>) => void) =>
    (message: T): void => {
      if (message.gateway !== gateway) return;
      const fields: Omit<T, 'gateway'> & { gateway?: object } = { ...message };
      delete fields.gateway;
      write(fields);
    };
  const stops = [
    events.upgradeRefused.subscribe(mine((m) => logger.warn(m, 'upgrade refused'))),
    events.requestRefused.subscribe(mine((m) => logger.warn(m, 'request refused'))),
    events.sessionStarted.subscribe(mine((m) => logger.info(m, 'session start'))),
    events.sessionModeChanged.subscribe(mine((m) => logger.info(m, 'session mode'))),
    events.adminAction.subscribe(mine((m) => logger.info(m, 'admin action'))),
    events.sessionEnded.subscribe(mine((m) => logger.info(m, 'session end'))),
    events.sessionRefused.subscribe(mine((m) => logger.warn(m, 'session refused'))),
    events.loggedIn.subscribe(mine((m) => logger.info(m, 'login'))),
    events.ticketIssued.subscribe(mine((m) => logger.info(m, 'ticket issued'))),
    events.recordingStopped.subscribe(mine((m) => logger.error(m, `recording stopped: ${m.problem}; ${m.then}`))),
    events.recordingServed.subscribe(mine((m) => logger.info(m, 'recording served'))),
    events.failed.subscribe(mine(({ what, ...m }) => logger.error(m, `unexpected error ${what}`))),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
