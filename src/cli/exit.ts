/**
 * How the command ends when something throws. An operator's mistake (a bad flag, value or
 * configuration, a file that cannot be read or used) exits 2 with its message alone; anything
 * else is a bug and exits 70 (EX_SOFTWARE in sysexits.h) with its stack, so that a script or
 * a service manager can tell "fix the configuration" from "report this".
 */
import { inspect } from 'node:util';
import { ConfigError, FileError } from '../config/schema.js';

export const EXIT = { ok: 0, cannotListen: 1, usage: 2, software: 70 } as const;

export function failure(err: unknown): { exitCode: number; message: string } {
  if (err instanceof ConfigError || err instanceof FileError) return { exitCode: EXIT.usage, message: `deskgate: ${err.message}\n` };
  // inspect, not .stack alone: it adds the cause and the error's own properties (code, errno, path).
  return { exitCode: EXIT.software, message: `deskgate: unexpected error (a bug; please report it):\n${inspect(err)}\n` };
}
