/**
 * The subcommands for operators and scripts: `hash-password` (for the users file),
 * `api-key` (for tickets.apiKeys) and `ticket` (a one-time viewer URL).
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { hashApiKey } from '../auth/auth.js';
import { PRINCIPAL_NAME, USER_NAME_EXPECTED } from '../config/names.js';
import { MemoryOneTimeStore } from '../auth/one-time.js';
import { TicketAuthority } from '../auth/tickets.js';
import { hashPassword } from '../auth/users.js';
import { CONFIG_FILE, flagsOf, OPTIONS } from '../config/options.js';
import { DEMO_DESKTOP, ConfigError } from '../config/schema.js';
import { loadConfig, parseFlags, type FlagValues } from '../config/sources.js';
import { ticketUrl } from '../http/tickets-api.js';

const HASH_PASSWORD_HELP = `Usage: deskgate hash-password

Reads a password, twice without echo on a terminal or else stdin to its end, and prints its
argon2id hash for a user's entry in the users file (auth.usersFile, --users).

  echo -n 'correct horse' | deskgate hash-password

Options:
  -h, --help    show this help and exit
`;

const API_KEY_HELP = `Usage: deskgate api-key

Prints a new random API key and its sha256: hash. The console that asks for tickets
(POST /api/tickets) sends the key; the gateway keeps only the hash, in tickets.apiKeys
(--api-key-hash, DESKGATE_API_KEY_HASH).

Options:
  -h, --help    show this help and exit
`;

const TICKET_HELP = `Usage: deskgate ticket --desktop NAME --user USER [--view-only] [--ttl SECONDS] [options]

Prints a one-time viewer URL: publicUrl (or the listen address and base path) + /view/NAME?ticket=…
It reads the gateway's configuration, from the same config file, DESKGATE_* variables and
flags as the gateway: the desktop must be one of its desktops, and issuing needs
tickets.secret (DESKGATE_TICKET_SECRET), or tickets.publicKeyFile with tickets.privateKeyFile.

Options:
  --desktop NAME      the desktop the ticket opens
  --user USER         who the ticket is for: the user of the session it opens
  --view-only         the session may watch the desktop, not type
  --ttl SECONDS       how long the ticket is valid; default tickets.defaultTtlSeconds,
                      at most tickets.maxTtlSeconds
  --config FILE       the gateway's YAML config file (or DESKGATE_CONFIG)
  -h, --help          show this help and exit
The gateway's other options (deskgate --help) apply too, except --desktop, which names
the desktop here: desktops come from the config file or DESKGATE_DESKTOP.
`;

const HELP_FLAG = { help: { type: 'boolean', short: 'h' } } as const;

/** A subcommand's flags; with --help, its usage printed instead, and undefined. */
function commandFlags(command: string, argv: string[], options: NonNullable<ParseArgsConfig['options']>, usage: string): FlagValues | undefined {
  const { values } = parseFlags(
    () => parseArgs({ args: argv, options: { ...options, ...HELP_FLAG }, strict: true, allowPositionals: false }),
    `deskgate ${command}`,
  );
  const { help, ...flags } = values;
  if (help) process.stdout.write(usage);
  return help ? undefined : flags;
}

export async function hashPasswordCommand(argv: string[]): Promise<number> {
  if (!commandFlags('hash-password', argv, {}, HASH_PASSWORD_HELP)) return 0;
  const password = process.stdin.isTTY ? await promptTwice() : await readStdin();
  if (!password) throw new ConfigError('the password is empty');
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

export async function apiKeyCommand(argv: string[]): Promise<number> {
  if (!commandFlags('api-key', argv, {}, API_KEY_HELP)) return 0;
  const key = `dgk_${randomBytes(32).toString('base64url')}`;
  process.stdout.write(`key:  ${key}\nhash: ${hashApiKey(key)}\n\nGive the key to the console; put the hash in tickets.apiKeys.\n`);
  return 0;
}

/** The gateway's configuration flags, but for --desktop, which here names the desktop to open. */
const TICKET_FLAGS = {
  ...flagsOf(OPTIONS.filter((o) => o.key && o.flag !== 'desktop')),
  ...flagsOf([CONFIG_FILE]),
  desktop: { type: 'string' },
  user: { type: 'string' },
  'view-only': { type: 'boolean' },
  ttl: { type: 'string' },
} as const;

export async function ticketCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const flags = commandFlags('ticket', argv, TICKET_FLAGS, TICKET_HELP);
  if (!flags) return 0;
  const { desktop, user, 'view-only': viewOnly, ttl, ...configFlags } = flags;
  if (typeof desktop !== 'string' || typeof user !== 'string')
    throw new ConfigError('deskgate ticket needs --desktop NAME and --user USER (see deskgate ticket --help)');
  // The same rule as the ticket API: the name ends up in logs, cookies and ticket claims.
  if (!PRINCIPAL_NAME.test(user)) {
    throw new ConfigError(`--user: got ${JSON.stringify(user)}; ${USER_NAME_EXPECTED}`);
  }
  const ttlSeconds = typeof ttl === 'string' ? Number(ttl) : undefined;
  if (ttlSeconds !== undefined && !(Number.isInteger(ttlSeconds) && ttlSeconds > 0))
    throw new ConfigError(`--ttl: got "${String(ttl)}"; expected a whole number of seconds`);
  const config = await loadConfig(configFlags, env);
  if (!config.desktops.some((d) => d.name === desktop) && !(config.demo && desktop === DEMO_DESKTOP)) {
    throw new ConfigError(`--desktop: there is no desktop named '${desktop}' in the configuration`);
  }
  const authority = TicketAuthority.from(config.tickets, new MemoryOneTimeStore());
  if (!authority?.canIssue)
    throw new ConfigError('issuing tickets needs tickets.secret (or DESKGATE_TICKET_SECRET), or tickets.publicKeyFile with tickets.privateKeyFile');
  if (ttlSeconds !== undefined && ttlSeconds > authority.maxTtlSeconds)
    throw new ConfigError(`--ttl: got ${ttlSeconds}; expected at most tickets.maxTtlSeconds (${authority.maxTtlSeconds})`);
  const { token } = await authority.issue({ desktop, user, viewOnly: viewOnly === true, ttlSeconds });
  process.stdout.write(`${baseUrl(config)}/${ticketUrl(desktop, token)}\n`); // baseUrl ends without a slash, ticketUrl is relative
  return 0;
}

function baseUrl(config: Awaited<ReturnType<typeof loadConfig>>): string {
  if (config.publicUrl) return config.publicUrl;
  const { host, port } = config.listen;
  return `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}${config.basePath}`;
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
