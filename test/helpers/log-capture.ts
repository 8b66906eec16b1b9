/** A pino logger for createGateway that keeps its JSON lines in memory, for tests that read the log. */
import { pino } from 'pino';
import type { Logger } from '../../src/observe/log.js';

export type LogLine = Record<string, unknown> & { msg: string };

export function captureLogs(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}
