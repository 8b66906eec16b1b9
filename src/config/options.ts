/**
 * The command's options in one table: for each, its config key, flag and DESKGATE_*
 * variable, what it takes and its --help lines. The flag parser, the merge of flags and
 * environment into the raw config (sources.ts), --help, the names config errors cite
 * (schema.ts) and the keys holding file paths all come from here: an option is one row.
 */
import type { ParseArgsConfig } from 'node:util';

export interface Option {
  /** Where the value goes in the config; none for --config (it names the file) and --help, --version. */
  readonly key?: readonly string[];
  /** The long flag, without its dashes; none for secrets, which would show in the process list. */
  readonly flag?: string;
  readonly short?: string;
  readonly env?: string;
  /**
   * `list`: a repeatable flag and a comma-separated variable, either of which adds to the
   * file's list. `boolean`: a variable accepts true/false, 1/0, yes/no, on/off.
   */
  readonly kind: 'string' | 'boolean' | 'list';
  /** What the flag's value looks like in --help. */
  readonly placeholder?: string;
  /** The meaning, in lines that fit --help's column. */
  readonly help: readonly string[];
  /** A file path: in a config file, relative to the file. */
  readonly path?: true;
}

export const CONFIG_FILE: Option = { flag: 'config', env: 'DESKGATE_CONFIG', kind: 'string', placeholder: 'FILE', help: ['YAML config file'] };

export const OPTIONS: readonly Option[] = [
  CONFIG_FILE,
  {
    key: ['listen'],
    flag: 'listen',
    env: 'DESKGATE_LISTEN',
    kind: 'string',
    placeholder: 'HOST:PORT',
    help: ['address to listen on', '(default 127.0.0.1:6080)'],
  },
  {
    key: ['desktops'],
    flag: 'desktop',
    env: 'DESKGATE_DESKTOP',
    kind: 'list',
    placeholder: 'NAME=HOST:PORT',
    help: ['a VNC server to offer; repeatable', '(the variable takes a comma-separated list)'],
  },
  {
    key: ['demo'],
    flag: 'demo',
    env: 'DESKGATE_DEMO',
    kind: 'boolean',
    help: ["serve the built-in demo desktop 'demo'", '(default: on when no desktop is configured)'],
  },
  {
    key: ['auth', 'mode'],
    flag: 'auth',
    env: 'DESKGATE_AUTH',
    kind: 'string',
    placeholder: 'MODE',
    help: ['none|password|header (default none,', 'which is refused beyond loopback)'],
  },
  {
    key: ['auth', 'usersFile'],
    flag: 'users',
    env: 'DESKGATE_USERS',
    kind: 'string',
    placeholder: 'FILE',
    path: true,
    help: ['users file for --auth password'],
  },
  {
    key: ['auth', 'insecureNoAuth'],
    flag: 'insecure-no-auth',
    env: 'DESKGATE_INSECURE_NO_AUTH',
    kind: 'boolean',
    help: ['allow --auth none on a non-loopback', 'address: anyone who reaches the port', 'can open every desktop (isolated labs only)'],
  },
  {
    key: ['tls', 'cert'],
    flag: 'tls-cert',
    env: 'DESKGATE_TLS_CERT',
    kind: 'string',
    placeholder: 'FILE',
    path: true,
    help: ['PEM certificate chain: serve HTTPS'],
  },
  {
    key: ['tls', 'key'],
    flag: 'tls-key',
    env: 'DESKGATE_TLS_KEY',
    kind: 'string',
    placeholder: 'FILE',
    path: true,
    help: ['PEM private key (SIGHUP reloads both)'],
  },
  {
    key: ['log', 'level'],
    flag: 'log-level',
    env: 'DESKGATE_LOG_LEVEL',
    kind: 'string',
    placeholder: 'LEVEL',
    help: ['fatal|error|warn|info|debug|trace|silent'],
  },
  { flag: 'help', short: 'h', kind: 'boolean', help: ['show this help and exit'] },
  { flag: 'version', short: 'v', kind: 'boolean', help: ['print the version and exit'] },
  {
    key: ['auth', 'secret'],
    env: 'DESKGATE_AUTH_SECRET',
    kind: 'string',
    help: ['signs login cookies (32+ characters);', 'random per process when unset'],
  },
  {
    key: ['tickets', 'secret'],
    env: 'DESKGATE_TICKET_SECRET',
    kind: 'string',
    help: ['HS256 key of one-time tickets', '(32+ characters)'],
  },
  {
    key: ['tickets', 'publicKeyFile'],
    kind: 'string',
    path: true,
    help: ['Ed25519 or P-256 public key (PEM)', 'that verifies tickets: EdDSA / ES256'],
  },
  {
    key: ['tickets', 'privateKeyFile'],
    kind: 'string',
    path: true,
    help: ['its private key: lets deskgate sign', 'tickets itself'],
  },
];

/** What parseArgs needs to know of these options' flags. */
export function flagsOf(options: readonly Option[]): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(
    options.flatMap(({ flag, short, kind }) =>
      flag ? [[flag, { type: kind === 'boolean' ? 'boolean' : 'string', multiple: kind === 'list', ...(short && { short }) }]] : [],
    ),
  );
}

/** Where a config key can also be set, e.g. `--listen, DESKGATE_LISTEN`, so an error names what the user typed. */
export function sourcesOf(key: string): string | undefined {
  const option = OPTIONS.find((o) => o.key?.join('.') === key);
  const sources = [option?.flag && `--${option.flag}`, option?.env].filter(Boolean);
  return sources.length > 0 ? sources.join(', ') : undefined;
}

/** The keys whose values are file paths. */
export const PATH_KEYS: readonly (readonly string[])[] = OPTIONS.flatMap((o) => (o.path && o.key ? [o.key] : []));

/** --help's columns: flag, meaning, variable, config key. */
const COLUMNS = [2, 27, 66, 87];

/** --help's options section: those with a flag, then those without. */
export function optionsHelp(): string {
  const withFlag = OPTIONS.filter((o) => o.flag);
  const withoutFlag = OPTIONS.filter((o) => !o.flag);
  return [
    'Options (each also a config-file key and an environment variable):',
    ...withFlag.flatMap(helpLines),
    '',
    'Without a flag (a secret as a flag would show in the process list):',
    ...withoutFlag.flatMap(helpLines),
    '',
    'Paths in a config file are relative to the file.',
    '',
  ].join('\n');
}

/** One option's lines: its cells left to right, each pushed down below what reaches into its column. */
function helpLines(option: Option): string[] {
  const { flag, short, placeholder, help, env, key } = option;
  const usage = flag && [short && `-${short}, `, `--${flag}`, placeholder && ` ${placeholder}`].filter(Boolean).join('');
  const cells = [[usage], help, [env], [key?.join('.')]];
  const rows: string[] = [];
  let row = 0;
  cells.forEach((lines, i) => {
    const column = COLUMNS[i] as number;
    while (lines.some((_, j) => (rows[row + j]?.length ?? 0) >= column)) row++;
    lines.forEach((text, j) => {
      if (text) rows[row + j] = (rows[row + j] ?? '').padEnd(column) + text;
    });
  });
  return Array.from(rows, (line) => line ?? '');
}
