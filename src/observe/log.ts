import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout: one line per session start and end, one per refusal. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'deskgate' } });
}
