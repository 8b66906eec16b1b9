/**
 * The command's options in one table: for each, its config key, flag and DESKGATE_*
 * variable, what it takes and its --help lines, in the sections --help and the README show
 * them in. The flag parser, the merge of flags and environment into the raw config
 * (sources.ts), --help, the names config errors cite (schema.ts) and the keys holding file
 * paths all come from here: an option is one row. A variable is its flag's name in capitals
 * after DESKGATE_ (a test holds every row to that).
 */
import type { ParseArgsConfig } from 'node:util';
import { formatDuration } from '../errors.js';

export interface Option {
  /** Where the value goes in the config; none for --config (it names the file) and --help, --version. */
  readonly key?: readonly string[];
  /** The long flag, without its dashes; none for secrets, which would show in the process list. */
  readonly flag?: string;
  readonly short?: string;
  readonly env?: string;
  /**
   * `list`: a repeatable flag and a comma-separated variable, either of which adds to the
   * file's list. `boolean`: a variable accepts true/false, 1/0, yes/no, on/off. `number`: a
   * flag's or variable's digits become a number (anything else goes to the schema, which
   * names the flag, the variable and what it expects).
   */
  readonly kind: 'string' | 'boolean' | 'list' | 'number';
  /** What the flag's value looks like in --help. */
  readonly placeholder?: string;
  /** The meaning, in lines that fit --help's column. */
  readonly help: readonly string[];
  /** A file path: in a config file, relative to the file. */
  readonly path?: true;
}

/** A heading of --help (and of the README's tables) and the options under it. */
export interface Section {
  readonly title: string;
  readonly options: readonly Option[];
}

export const CONFIG_FILE: Option = { flag: 'config', env: 'DESKGATE_CONFIG', kind: 'string', placeholder: 'FILE', help: ['YAML config file'] };

export const SECTIONS: readonly Section[] = [
  {
    title: 'General',
    options: [
      CONFIG_FILE,
      { flag: 'help', short: 'h', kind: 'boolean', help: ['show this help and exit'] },
      { flag: 'version', short: 'v', kind: 'boolean', help: ['print the version and exit'] },
    ],
  },
  {
    title: 'Listening and TLS',
    options: [
      {
        key: ['listen'],
        flag: 'listen',
        env: 'DESKGATE_LISTEN',
        kind: 'string',
        placeholder: 'HOST:PORT',
        help: ['address to listen on', '(default 127.0.0.1:6080)'],
      },
      {
        key: ['basePath'],
        flag: 'base-path',
        env: 'DESKGATE_BASE_PATH',
        kind: 'string',
        placeholder: 'PATH',
        help: ['serve everything under this path,', 'e.g. /desktops (default: the root)'],
      },
      {
        key: ['publicUrl'],
        flag: 'public-url',
        env: 'DESKGATE_PUBLIC_URL',
        kind: 'string',
        placeholder: 'URL',
        help: ['the URL users reach the gateway at,', 'for the links deskgate ticket prints', '(default: the listen address and', 'base path)'],
      },
      {
        key: ['websocketPath'],
        flag: 'websocket-path',
        env: 'DESKGATE_WEBSOCKET_PATH',
        kind: 'string',
        placeholder: 'PATH',
        help: ['where sessions open their WebSocket;', "'*': any path, as websockify", '(default /websockify)'],
      },
      {
        key: ['web'],
        flag: 'web',
        env: 'DESKGATE_WEB',
        kind: 'string',
        placeholder: 'DIR',
        help: ["serve this directory's files too, e.g.", "Debian's noVNC (/usr/share/novnc)"],
        path: true,
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
    ],
  },
  {
    title: 'Desktops',
    options: [
      {
        key: ['desktops'],
        flag: 'desktop',
        env: 'DESKGATE_DESKTOP',
        kind: 'list',
        placeholder: 'NAME=HOST:PORT',
        help: ['a VNC server to offer; repeatable'],
      },
      {
        key: ['demo'],
        flag: 'demo',
        env: 'DESKGATE_DEMO',
        kind: 'boolean',
        help: ["serve the built-in demo desktop 'demo'", '(default: on when no desktop is configured)'],
      },
      {
        key: ['probe', 'timeoutMs'],
        flag: 'probe-timeout-ms',
        env: 'DESKGATE_PROBE_TIMEOUT_MS',
        kind: 'number',
        help: ["the dashboard's probe of a VNC server"],
      },
      { key: ['probe', 'cacheMs'], flag: 'probe-cache-ms', env: 'DESKGATE_PROBE_CACHE_MS', kind: 'number', help: ["how long a probe's answer is reused"] },
      {
        key: ['tokens', 'source'],
        flag: 'tokens',
        env: 'DESKGATE_TOKENS',
        kind: 'string',
        placeholder: 'PATH',
        help: ['websockify token file, or a directory', 'of them: each token is a desktop;', 're-read when it changes'],
        path: true,
      },
      {
        key: ['tokens', 'format'],
        flag: 'tokens-format',
        env: 'DESKGATE_TOKENS_FORMAT',
        kind: 'string',
        placeholder: 'FORMAT',
        help: ["lines ('token: host:port', TokenFile)", 'or filenames (TokenFileName)'],
      },
      {
        key: ['tokens', 'listed'],
        flag: 'list-tokens',
        env: 'DESKGATE_LIST_TOKENS',
        kind: 'boolean',
        help: ["show the tokens' desktops on the", 'dashboard (default: only who knows', 'a token can open it)'],
      },
      {
        key: ['defaultDesktop'],
        flag: 'default-desktop',
        env: 'DESKGATE_DEFAULT_DESKTOP',
        kind: 'string',
        placeholder: 'NAME',
        help: ['the desktop a WebSocket without', '?desktop= or ?token= opens'],
      },
    ],
  },
  {
    title: 'Authentication',
    options: [
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
        key: ['auth', 'secret'],
        env: 'DESKGATE_AUTH_SECRET',
        kind: 'string',
        help: ['signs login cookies (32+ characters);', 'random per process when unset'],
      },
      { key: ['auth', 'sessionTtlMs'], flag: 'login-ttl-ms', env: 'DESKGATE_LOGIN_TTL_MS', kind: 'number', help: ['how long a login lasts'] },
      {
        key: ['auth', 'userHeader'],
        flag: 'user-header',
        env: 'DESKGATE_USER_HEADER',
        kind: 'string',
        placeholder: 'NAME',
        help: ['--auth header: the header in which', 'the trusted proxy names the user'],
      },
      {
        key: ['auth', 'groupsHeader'],
        flag: 'groups-header',
        env: 'DESKGATE_GROUPS_HEADER',
        kind: 'string',
        placeholder: 'NAME',
        help: ['and the one listing their groups,', 'comma-separated'],
      },
      {
        key: ['auth', 'maxFailedLogins'],
        flag: 'max-failed-logins',
        env: 'DESKGATE_MAX_FAILED_LOGINS',
        kind: 'number',
        help: ['failed logins (and API keys) from one', 'address within the window that block it', 'with HTTP 429'],
      },
      { key: ['auth', 'failedLoginWindowMs'], flag: 'failed-login-window-ms', env: 'DESKGATE_FAILED_LOGIN_WINDOW_MS', kind: 'number', help: ['that window'] },
      {
        key: ['auth', 'failedLoginBlockMs'],
        flag: 'failed-login-block-ms',
        env: 'DESKGATE_FAILED_LOGIN_BLOCK_MS',
        kind: 'number',
        help: ['how long the block lasts'],
      },
    ],
  },
  {
    title: 'Tickets',
    options: [
      { key: ['tickets', 'secret'], env: 'DESKGATE_TICKET_SECRET', kind: 'string', help: ['HS256 key of one-time tickets', '(32+ characters)'] },
      {
        key: ['tickets', 'publicKeyFile'],
        flag: 'ticket-public-key',
        env: 'DESKGATE_TICKET_PUBLIC_KEY',
        kind: 'string',
        placeholder: 'FILE',
        path: true,
        help: ['or: the Ed25519 or P-256 public key', '(PEM) that verifies tickets (EdDSA,', 'ES256)'],
      },
      {
        key: ['tickets', 'privateKeyFile'],
        flag: 'ticket-private-key',
        env: 'DESKGATE_TICKET_PRIVATE_KEY',
        kind: 'string',
        placeholder: 'FILE',
        path: true,
        help: ['its private key: lets deskgate sign', 'tickets itself'],
      },
      {
        key: ['tickets', 'apiKeys'],
        flag: 'api-key-hash',
        env: 'DESKGATE_API_KEY_HASH',
        kind: 'list',
        placeholder: 'HASH',
        help: ['the sha256:… hash of an API key for', 'POST /api/tickets (deskgate api-key', 'makes one); repeatable'],
      },
      {
        key: ['tickets', 'defaultTtlSeconds'],
        flag: 'ticket-ttl-seconds',
        env: 'DESKGATE_TICKET_TTL_SECONDS',
        kind: 'number',
        help: ['how long a ticket is valid'],
      },
      {
        key: ['tickets', 'maxTtlSeconds'],
        flag: 'ticket-max-ttl-seconds',
        env: 'DESKGATE_TICKET_MAX_TTL_SECONDS',
        kind: 'number',
        help: ['the longest a ticket may be asked for'],
      },
    ],
  },
  {
    title: 'Origins and proxies',
    options: [
      {
        key: ['trustProxy'],
        flag: 'trust-proxy',
        env: 'DESKGATE_TRUST_PROXY',
        kind: 'list',
        placeholder: 'CIDR',
        help: ['a reverse proxy whose X-Forwarded-*', '(and identity headers) are believed;', 'repeatable'],
      },
      {
        key: ['allowedOrigins'],
        flag: 'allowed-origin',
        env: 'DESKGATE_ALLOWED_ORIGIN',
        kind: 'list',
        placeholder: 'ORIGIN',
        help: ['an origin whose pages may open', "sessions, besides the gateway's own;", 'repeatable'],
      },
      {
        key: ['requireOrigin'],
        flag: 'require-origin',
        env: 'DESKGATE_REQUIRE_ORIGIN',
        kind: 'boolean',
        help: ['refuse upgrades without an Origin', '(non-browser clients)'],
      },
      {
        key: ['frameAncestors'],
        flag: 'frame-ancestor',
        env: 'DESKGATE_FRAME_ANCESTOR',
        kind: 'list',
        placeholder: 'ORIGIN',
        help: ['an origin whose pages may frame the', 'viewer; repeatable'],
      },
    ],
  },
  {
    title: 'Sessions and limits',
    options: [
      {
        key: ['session', 'connectTimeoutMs'],
        flag: 'connect-timeout-ms',
        env: 'DESKGATE_CONNECT_TIMEOUT_MS',
        kind: 'number',
        help: ['connecting to a VNC server'],
      },
      {
        key: ['session', 'handshakeTimeoutMs'],
        flag: 'handshake-timeout-ms',
        env: 'DESKGATE_HANDSHAKE_TIMEOUT_MS',
        kind: 'number',
        help: ['each answer in the RFB handshake'],
      },
      {
        key: ['session', 'idleTimeoutMs'],
        flag: 'idle-timeout-ms',
        env: 'DESKGATE_IDLE_TIMEOUT_MS',
        kind: 'number',
        help: ['a session with no bytes either way'],
      },
      { key: ['session', 'maxDurationMs'], flag: 'max-duration-ms', env: 'DESKGATE_MAX_DURATION_MS', kind: 'number', help: ['the longest a session lasts'] },
      { key: ['session', 'keepaliveMs'], flag: 'keepalive-ms', env: 'DESKGATE_KEEPALIVE_MS', kind: 'number', help: ['a WebSocket ping this often (0: none)'] },
      {
        key: ['session', 'maxMessageBytes'],
        flag: 'max-message-bytes',
        env: 'DESKGATE_MAX_MESSAGE_BYTES',
        kind: 'number',
        help: ["a browser's largest message"],
      },
      {
        key: ['session', 'highWaterMarkBytes'],
        flag: 'high-water-mark-bytes',
        env: 'DESKGATE_HIGH_WATER_MARK_BYTES',
        kind: 'number',
        help: ['buffered per session and direction', 'before the sender is paused'],
      },
      { key: ['limits', 'maxSessions'], flag: 'max-sessions', env: 'DESKGATE_MAX_SESSIONS', kind: 'number', help: ['open sessions, all together'] },
      {
        key: ['limits', 'maxSessionsPerAddress'],
        flag: 'max-sessions-per-address',
        env: 'DESKGATE_MAX_SESSIONS_PER_ADDRESS',
        kind: 'number',
        help: ['open sessions from one client address'],
      },
      {
        key: ['limits', 'maxSessionsPerUser'],
        flag: 'max-sessions-per-user',
        env: 'DESKGATE_MAX_SESSIONS_PER_USER',
        kind: 'number',
        help: ['open sessions of one user'],
      },
      {
        key: ['lifetime', 'exitAfterIdleMs'],
        flag: 'exit-after-idle-ms',
        env: 'DESKGATE_EXIT_AFTER_IDLE_MS',
        kind: 'number',
        help: ['exit once no session has been open', 'this long (0: never)'],
      },
      {
        key: ['lifetime', 'acceptForMs'],
        flag: 'accept-for-ms',
        env: 'DESKGATE_ACCEPT_FOR_MS',
        kind: 'number',
        help: ['take new sessions this long after', 'start, then exit when the last ends', '(0: always)'],
      },
    ],
  },
  {
    title: 'Sharing and cluster',
    options: [
      {
        key: ['admins', 'users'],
        flag: 'admin-user',
        env: 'DESKGATE_ADMIN_USER',
        kind: 'list',
        placeholder: 'NAME',
        help: ['may list, end and change every session', '(repeatable)'],
      },
      {
        key: ['admins', 'groups'],
        flag: 'admin-group',
        env: 'DESKGATE_ADMIN_GROUP',
        kind: 'list',
        placeholder: 'NAME',
        help: ['the same, for a group (repeatable)'],
      },
      {
        key: ['session', 'controlRequestTimeoutMs'],
        flag: 'control-request-timeout-ms',
        env: 'DESKGATE_CONTROL_REQUEST_TIMEOUT_MS',
        kind: 'number',
        help: ['how long a controller has to answer', 'a request for control (silence: no)'],
      },
      {
        key: ['cluster', 'redis'],
        flag: 'redis',
        env: 'DESKGATE_REDIS',
        kind: 'string',
        placeholder: 'URL',
        help: ['share sessions with other nodes through', 'this Redis (redis:// or rediss://)'],
      },
      {
        key: ['cluster', 'redisPasswordFile'],
        flag: 'redis-password-file',
        env: 'DESKGATE_REDIS_PASSWORD_FILE',
        kind: 'string',
        placeholder: 'FILE',
        path: true,
        help: ["a file holding Redis's password"],
      },
      { key: ['cluster', 'redisPassword'], env: 'DESKGATE_REDIS_PASSWORD', kind: 'string', help: ["Redis's password"] },
      {
        key: ['cluster', 'redisCa'],
        flag: 'redis-ca',
        env: 'DESKGATE_REDIS_CA',
        kind: 'string',
        placeholder: 'FILE',
        path: true,
        help: ['CA certificates for rediss://'],
      },
      {
        key: ['cluster', 'keyPrefix'],
        flag: 'redis-key-prefix',
        env: 'DESKGATE_REDIS_KEY_PREFIX',
        kind: 'string',
        placeholder: 'TEXT',
        help: ['before every Redis key (default deskgate:)'],
      },
      {
        key: ['cluster', 'node'],
        flag: 'node-name',
        env: 'DESKGATE_NODE_NAME',
        kind: 'string',
        placeholder: 'NAME',
        help: ["this node's name (default: host, pid", 'and a random tag)'],
      },
      {
        key: ['cluster', 'leaseTtlMs'],
        flag: 'lease-ttl-ms',
        env: 'DESKGATE_LEASE_TTL_MS',
        kind: 'number',
        help: ["how long a dead node's desktops stay", 'held and its sessions listed'],
      },
    ],
  },
  {
    title: 'HTTP',
    options: [
      {
        key: ['http', 'headersTimeoutMs'],
        flag: 'http-headers-timeout-ms',
        env: 'DESKGATE_HTTP_HEADERS_TIMEOUT_MS',
        kind: 'number',
        help: ['TLS handshake and request headers'],
      },
      {
        key: ['http', 'requestTimeoutMs'],
        flag: 'http-request-timeout-ms',
        env: 'DESKGATE_HTTP_REQUEST_TIMEOUT_MS',
        kind: 'number',
        help: ['a whole request'],
      },
      {
        key: ['http', 'idleTimeoutMs'],
        flag: 'http-idle-timeout-ms',
        env: 'DESKGATE_HTTP_IDLE_TIMEOUT_MS',
        kind: 'number',
        help: ['a connection on which nothing moves'],
      },
      {
        key: ['http', 'maxHeaderBytes'],
        flag: 'http-max-header-bytes',
        env: 'DESKGATE_HTTP_MAX_HEADER_BYTES',
        kind: 'number',
        help: ['larger request headers get HTTP 431'],
      },
    ],
  },
  {
    title: 'Recording',
    options: [
      {
        key: ['recordings', 'dir'],
        flag: 'recordings-dir',
        env: 'DESKGATE_RECORDINGS_DIR',
        kind: 'string',
        placeholder: 'DIR',
        help: ['where desktops with record: true', 'write their sessions'],
        path: true,
      },
      {
        key: ['recordings', 'retentionDays'],
        flag: 'recordings-retention-days',
        env: 'DESKGATE_RECORDINGS_RETENTION_DAYS',
        kind: 'number',
        help: ['remove recordings older than this', '(0: keep them)'],
      },
      {
        key: ['recordings', 'access'],
        flag: 'recordings-access',
        env: 'DESKGATE_RECORDINGS_ACCESS',
        kind: 'string',
        placeholder: 'WHO',
        help: ['who plays a recording besides admins:', 'own (its user) or admins'],
      },
      {
        key: ['recordings', 'maxQueuedBytes'],
        flag: 'recordings-max-queued-bytes',
        env: 'DESKGATE_RECORDINGS_MAX_QUEUED_BYTES',
        kind: 'number',
        help: ["a session's recording waiting for", 'the disk; beyond: it cannot keep up'],
      },
    ],
  },
  {
    title: 'Logging and shutdown',
    options: [
      {
        key: ['log', 'level'],
        flag: 'log-level',
        env: 'DESKGATE_LOG_LEVEL',
        kind: 'string',
        placeholder: 'LEVEL',
        help: ['fatal|error|warn|info|debug|trace|silent'],
      },
      {
        key: ['log', 'format'],
        flag: 'log-format',
        env: 'DESKGATE_LOG_FORMAT',
        kind: 'string',
        placeholder: 'FORMAT',
        help: ['auto (pretty at a terminal, else JSON),', 'json or pretty'],
      },
      {
        key: ['metrics', 'listen'],
        flag: 'metrics-listen',
        env: 'DESKGATE_METRICS_LISTEN',
        kind: 'string',
        placeholder: 'HOST:PORT',
        help: ['serve Prometheus metrics (GET /metrics)', 'on this address only (default: off)'],
      },
      {
        key: ['shutdownTimeoutMs'],
        flag: 'shutdown-timeout-ms',
        env: 'DESKGATE_SHUTDOWN_TIMEOUT_MS',
        kind: 'number',
        help: ['SIGTERM: how long sessions get to', 'close before they are cut'],
      },
    ],
  },
];

export const OPTIONS: readonly Option[] = SECTIONS.flatMap((section) => section.options);

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

/** The column where an option's meaning starts in --help, and the width a default may extend a meaning line to. */
const MEANING = 32;
const MEANING_WIDTH = 48;

/**
 * --help's options section, one part per section: each option's flag, its meaning (and its
 * default, when `defaults`, the configuration parsed from nothing, holds one), then its
 * variable and config key.
 */
export function optionsHelp(defaults?: unknown): string {
  return [
    'Options, by section: each flag, its meaning, then its environment variable and config key.',
    ...SECTIONS.flatMap(({ title, options }) => ['', `${title}:`, ...options.flatMap((option) => helpLines(option, defaults))]),
    '',
    'Flags win over variables, variables over the config file. A repeatable flag, or its',
    "variable's comma-separated list, adds to the file's list. A number is a whole number in",
    'the unit its name ends with. Secrets have no flag (it would show in the process list).',
    'Paths in a config file are relative to the file.',
    '',
  ].join('\n');
}

/** One option's lines: usage on the left (the variable when there is no flag), meaning and names on the right. */
function helpLines(option: Option, defaults: unknown): string[] {
  const { flag, short, env, key } = option;
  const placeholder = option.placeholder ?? (option.kind === 'number' ? 'N' : undefined);
  const usage = flag ? [short && `-${short}, `, `--${flag}`, placeholder && ` ${placeholder}`].filter(Boolean).join('') : (env ?? '');
  const names = [flag && env, key?.join('.')].filter(Boolean).join(', ');
  const right = [...withDefault(option.help, key && defaultOf(key, defaults)), ...(names ? [`  ${names}`] : [])];
  const left = `  ${usage}`;
  const lines = left.length < MEANING - 1 ? [] : [left];
  right.forEach((text, i) => lines.push((i === 0 && lines.length === 0 ? left : '').padEnd(MEANING) + text));
  return lines;
}

/** The help lines with "(default …)" after the last, unless they already say it. */
function withDefault(help: readonly string[], fallback: string | undefined): readonly string[] {
  if (fallback === undefined || help.some((line) => line.includes('default'))) return help;
  const note = `(default ${fallback})`;
  const last = help.at(-1) ?? '';
  return last.length + 1 + note.length <= MEANING_WIDTH ? [...help.slice(0, -1), `${last} ${note}`] : [...help, note];
}

/** A key's default as --help shows it: a number with its unit spelled out, a word; nothing for lists, objects and off. */
function defaultOf(key: readonly string[], defaults: unknown): string | undefined {
  const value = key.reduce<unknown>(
    (holder, name) => (typeof holder === 'object' && holder !== null ? (holder as Record<string, unknown>)[name] : undefined),
    defaults,
  );
  const name = key.at(-1) as string;
  if (typeof value === 'string') return value || undefined;
  if (typeof value !== 'number') return undefined;
  if (name.endsWith('Ms') && value >= 1000) return `${value}, ${formatDuration(value)}`;
  if (name.endsWith('Bytes') && value % 1024 === 0) return `${value}, ${value % 1024 ** 2 === 0 ? `${value / 1024 ** 2} MiB` : `${value / 1024} KiB`}`;
  return String(value);
}
