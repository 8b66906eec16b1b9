/**
 * The subcommands for operators and scripts: `hash-password` (for the users file),
 * `api-key` (for tickets.apiKeys) and `ticket` (a one-time viewer URL).
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { hashApiKey } from '../auth/auth.js';
import { PRINCIPAL_NAME, USER_NAME_EXPECTED } from '../config/names.js';
import { MemoryOneTimeStore } from '../auth/one-time.js';
import { TicketAuthority } from '../auth/tickets.js';
import { hashPassword } from '../auth/users.js';
import { CONFIG_FILE, flagsOf } from '../config/options.js';
import { DEMO_DESKTOP, ConfigError } from '../config/schema.js';
import { loadConfig, parseFlags } from '../config/sources.js';
import { ticketUrl } from '../http/tickets-api.js';

export async function hashPasswordCommand(argv: string[]): Promise<number> {
  parseFlags(() => parseArgs({ args: argv, options: {}, strict: true, allowPositionals: false }));
  const password = process.stdin.isTTY ? await promptTwice() : await readStdin();
  if (!password) throw new ConfigError('the password is empty');
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

export async function apiKeyCommand(argv: string[]): Promise<number> {
  parseFlags(() => parseArgs({ args: argv, options: {}, strict: true, allowPositionals: false }));
  const key = `dgk_${randomBytes(32).toString('base64url')}`;
  process.stdout.write(`key:  ${key}\nhash: ${hashApiKey(key)}\n\nGive the key to the console; put the hash in tickets.apiKeys.\n`);
  return 0;
}

const TICKET_FLAGS = {
  ...flagsOf([CONFIG_FILE]),
  desktop: { type: 'string' },
  user: { type: 'string' },
  'view-only': { type: 'boolean' },
  ttl: { type: 'string' },
} as const;

export async function ticketCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const {
    desktop,
    user,
    'view-only': viewOnly,
    ttl,
    ...configFlags
  } = parseFlags(() => parseArgs({ args: argv, options: TICKET_FLAGS, strict: true, allowPositionals: false }).values);
  if (!desktop || !user) throw new ConfigError('deskgate ticket needs --desktop NAME and --user USER (see deskgate --help)');
  // The same rule as the ticket API: the name ends up in logs, cookies and ticket claims.
  if (!PRINCIPAL_NAME.test(user)) {
    throw new ConfigError(`--user: got ${JSON.stringify(user)}; ${USER_NAME_EXPECTED}`);
  }
  const ttlSeconds = ttl === undefined ? undefined : Number(ttl);
  if (ttlSeconds !== undefined && !(Number.isInteger(ttlSeconds) && ttlSeconds > 0))
    throw new ConfigError(`--ttl: got "${ttl}"; expected a whole number of seconds`);
  const config = await loadConfig(configFlags, env);
  if (!config.desktops.some((d) => d.name === desktop) && !(config.demo && desktop === DEMO_DESKTOP)) {
    throw new ConfigError(`--desktop: there is no desktop named '${desktop}' in the configuration`);
  }
  const authority = TicketAuthority.from(config.tickets, new MemoryOneTimeStore());
  if (!authority?.canIssue)
    throw new ConfigError('issuing tickets needs tickets.secret (or DESKGATE_TICKET_SECRET), or tickets.publicKeyFile with tickets.privateKeyFile');
  if (ttlSeconds !== undefined && ttlSeconds > authority.maxTtlSeconds)
    throw new ConfigError(`--ttl: got ${ttlSeconds}; expected at most tickets.maxTtlSeconds (${authority.maxTtlSeconds})`);
  const { token } = await authority.issue({ desktop, user, viewOnly, ttlSeconds });
  process.stdout.write(`${baseUrl(config)}${ticketUrl(desktop, token)}\n`);
  return 0;
}

function baseUrl(config: Awaited<ReturnType<typeof loadConfig>>): string {
  if (config.publicUrl) return config.publicUrl;
  const { host, port } = config.listen;
  return `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Ask twice on the terminal, without echo. */
async function promptTwice(): Promise<string> {
  const first = await prompt('Password: ');
  const second = await prompt('Again: ');
  if (first !== second) throw new ConfigError('the two passwords differ');
  return first;
}

function prompt(question: string): Promise<string> {
  process.stderr.write(question);
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true });
  return new Promise((resolve) => {
    rl.once('line', (line) => {
      rl.close();
      process.stderr.write('\n');
      resolve(line);
    });
  });
}
