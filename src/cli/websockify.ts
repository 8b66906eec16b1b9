/**
 * `deskgate websockify [options] [source_addr:]source_port [target_addr:target_port]`:
 * websockify's command line, so that a unit or script that runs websockify can run deskgate
 * with the same arguments. Each websockify flag becomes deskgate flags or raw config keys
 * (the table below says which), or is refused with what to use instead; deskgate's own flags
 * are accepted beside them. The result runs as `deskgate` does: SIGHUP reloads, SIGTERM stops.
 */
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { flagsOf, OPTIONS } from '../config/options.js';
import { ConfigError, MAX_TIMER_MS, type Config } from '../config/schema.js';
import { loadConfig, parseFlags, type FlagValues } from '../config/sources.js';
import { parseHostPort, parseWebsockifyHostPort } from '../net/host-port.js';
import { VERSION } from '../package.js';
import { EXIT } from './exit.js';

/** How main.ts runs a configuration: the same serve path as `deskgate` itself. */
export type Serve = (config: Config, readAgain: () => Promise<Config>) => Promise<number>;

export interface WebsockifyFlag {
  readonly flag: string;
  readonly short?: string;
  /** The value it takes, as --help shows it; none for a switch. */
  readonly value?: string;
  /** What deskgate makes of it; for a refused flag, why and what to use instead. */
  readonly becomes: string;
  readonly refused?: true;
}

const AUTH_INSTEAD = 'use --auth password --users FILE, or --auth header --trust-proxy CIDR behind an SSO proxy';
const CLIENT_CERT_INSTEAD = 'terminate TLS with client certificates at nginx or haproxy and pass the user on with --auth header';
const TLS_DEFAULTS = "deskgate uses Node's TLS defaults: TLS 1.2 and later, with Node's ciphers";
const WRAP_REFUSED = 'deskgate does not start programs: start the VNC server yourself (a systemd unit) and give its address';
const LOG_INSTEAD = 'deskgate logs to standard output: redirect it to a file, or run it under systemd for journald';

/** Every flag of websockify's parser, in its order, with what deskgate makes of it. */
export const WEBSOCKIFY_FLAGS: readonly WebsockifyFlag[] = [
  { flag: 'verbose', short: 'v', becomes: 'log.level debug (--log-level debug)' },
  { flag: 'traffic', becomes: 'use --log-level debug for session events and --metrics-listen HOST:PORT for byte counts', refused: true },
  {
    flag: 'record',
    value: 'FILE',
    becomes:
      "recordings.dir FILE's directory and the target's record: true: one file per session (ID.dgrec) to play at /recordings; not websockify's frame dumps",
  },
  { flag: 'daemon', short: 'D', becomes: 'deskgate stays in the foreground: run it under systemd (contrib/deskgate.service)', refused: true },
  { flag: 'run-once', becomes: 'use --idle-timeout N: exit once no session has been open for N seconds', refused: true },
  { flag: 'timeout', value: 'N', becomes: 'lifetime.acceptForMs N×1000: take new sessions for N seconds, then exit when the last one ends' },
  { flag: 'idle-timeout', value: 'N', becomes: 'lifetime.exitAfterIdleMs N×1000: exit once no session has been open for N seconds' },
  { flag: 'cert', value: 'FILE', becomes: 'tls.cert: serve HTTPS and WSS only (no ./self.pem is read without it)' },
  { flag: 'key', value: 'FILE', becomes: 'tls.key; default: the --cert file, holding certificate and key (a combined PEM)' },
  { flag: 'key-password', value: 'PASSWORD', becomes: 'decrypt the key file (openssl pkey) and protect it by its permissions', refused: true },
  { flag: 'ssl-only', becomes: 'accepted: with --cert, deskgate speaks only TLS; needs --cert' },
  {
    flag: 'ssl-target',
    becomes: "the target's vnc.tls tls-first: TLS to the VNC server, whose certificate is verified against the system's CAs (websockify verifies none)",
  },
  { flag: 'verify-client', becomes: CLIENT_CERT_INSTEAD, refused: true },
  { flag: 'cafile', value: 'FILE', becomes: CLIENT_CERT_INSTEAD, refused: true },
  { flag: 'ssl-version', value: 'VERSION', becomes: TLS_DEFAULTS, refused: true },
  { flag: 'ssl-ciphers', value: 'CIPHERS', becomes: TLS_DEFAULTS, refused: true },
  { flag: 'unix-target', value: 'FILE', becomes: "the desktop 'default' on this Unix socket, opened by any WebSocket that names none" },
  { flag: 'inetd', becomes: 'deskgate opens its own listening socket: give [source_addr:]source_port, run it under systemd', refused: true },
  { flag: 'web', value: 'DIR', becomes: "web: serve this directory too, e.g. Debian's noVNC /usr/share/novnc" },
  { flag: 'web-auth', becomes: AUTH_INSTEAD, refused: true },
  { flag: 'wrap-mode', value: 'MODE', becomes: WRAP_REFUSED, refused: true },
  { flag: 'prefer-ipv6', short: '6', becomes: 'write the IPv6 address as the source instead, e.g. [::]:6080 or [::1]:6080', refused: true },
  { flag: 'libserver', becomes: 'not needed: deskgate has one server; drop the flag', refused: true },
  { flag: 'target-config', value: 'FILE', becomes: 'tokens.source FILE, as --token-plugin TokenFile --token-source FILE' },
  { flag: 'token-plugin', value: 'CLASS', becomes: 'TokenFile, ReadOnlyTokenFile: tokens.format lines; TokenFileName: filenames; others are refused' },
  { flag: 'token-source', value: 'ARG', becomes: 'tokens.source: the token file or directory (re-read when it changes)' },
  { flag: 'host-token', becomes: 'put the token in the URL instead: ?token=TOKEN', refused: true },
  { flag: 'auth-plugin', value: 'CLASS', becomes: AUTH_INSTEAD, refused: true },
  { flag: 'auth-source', value: 'ARG', becomes: AUTH_INSTEAD, refused: true },
  { flag: 'heartbeat', value: 'N', becomes: "session.keepaliveMs N×1000: a WebSocket ping every N seconds (0: none; deskgate's default: 25 s)" },
  { flag: 'log-file', value: 'FILE', becomes: LOG_INSTEAD, refused: true },
  { flag: 'syslog', value: 'SERVER', becomes: LOG_INSTEAD, refused: true },
  { flag: 'legacy-syslog', becomes: LOG_INSTEAD, refused: true },
];

/** The name of the desktop a target (host:port or --unix-target) becomes. */
const TARGET_DESKTOP = 'default';

const TOKEN_FILE_INSTEAD =
  'have your tool write a token file instead (--token-plugin TokenFile --token-source FILE|DIR; deskgate re-reads it when it changes), ' +
  'or add desktops with the library API, gateway.addDesktop (README: Using it as a library)';

/** websockify's token plugins deskgate reads itself, by their class name, and the tokens.format each is. */
const TOKEN_FORMATS: Readonly<Record<string, 'lines' | 'filenames'>> = { TokenFile: 'lines', ReadOnlyTokenFile: 'lines', TokenFileName: 'filenames' };

/** What to use instead of the plugins deskgate does not run. */
const PLUGINS_INSTEAD: Readonly<Record<string, string>> = {
  UnixDomainSocketDirectory: 'write a token file of lines TOKEN: unix_socket:/path/to/socket (--token-plugin TokenFile --token-source FILE)',
  JWTTokenApi: `for signed links, use deskgate's one-time tickets (?ticket=, README: One-time tickets for embedding); else ${TOKEN_FILE_INSTEAD}`,
};

/** The largest number of seconds a timer takes (the schema's bound, in seconds). */
const MAX_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

const HELP = `Usage: deskgate websockify [options] [source_addr:]source_port [target_addr:target_port]

websockify's command line, run by deskgate: replace \`websockify\` with \`deskgate websockify\`
and keep the arguments. The gateway accepts the WebSocket on any path (websocketPath '*'),
serves no demo desktop, and runs as deskgate does: SIGHUP reloads, SIGTERM stops.

  [source_addr:]source_port    listen; a port alone listens on every interface (0.0.0.0:PORT),
                               which deskgate allows only with --auth password|header, or
                               --insecure-no-auth for an isolated lab; 127.0.0.1:PORT or
                               [::1]:PORT for this machine only
  target_addr:target_port      the desktop '${TARGET_DESKTOP}' (defaultDesktop): every WebSocket that
                               names no ?token= opens it, as noVNC's vnc.html asks

${flagLines(WEBSOCKIFY_FLAGS.filter((f) => !f.refused))}
  -h, --help                   show this help and exit

Refused, each with what to use instead:
${flagLines(WEBSOCKIFY_FLAGS.filter((f) => f.refused))}
${helpRow('-- COMMAND', WRAP_REFUSED)}
${helpRow('--token-plugin OTHER', `JSONTokenApi, TokenRedis, JWTTokenApi, UnixDomainSocketDirectory, a class of your own: ${TOKEN_FILE_INSTEAD}`)}

deskgate's own flags (deskgate --help) are accepted too, e.g. --auth, --users, --config,
--insecure-no-auth, --metrics-listen, --desktop; here -v is --verbose (--version has no short
form), and --listen, --tls-cert and the like cannot be given beside the websockify flag or
argument that sets the same key.
`;

/** Help lines: the flag on the left, what it becomes wrapped on the right. */
function flagLines(flags: readonly WebsockifyFlag[]): string {
  return flags.map(({ flag, short, value, becomes }) => helpRow(`${short ? `-${short}, ` : ''}--${flag}${value ? ` ${value}` : ''}`, becomes)).join('\n');
}

function helpRow(usage: string, text: string): string {
  return wrap(text, 66)
    .map((line, i) => (i === 0 ? `  ${usage}` : '').padEnd(31) + line)
    .join('\n');
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return [...lines, line];
}

/** The parser's options: deskgate's flags (but -v, which is --verbose here) and websockify's. */
const PARSE_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  ...flagsOf(OPTIONS.filter((o) => o.flag !== 'version')),
  version: { type: 'boolean' },
  ...Object.fromEntries(WEBSOCKIFY_FLAGS.map(({ flag, short, value }) => [flag, { type: value ? 'string' : 'boolean', ...(short && { short }) }])),
};

/** What the command line comes to: deskgate flags, raw keys beside them, and a bare source port, if one was given. */
interface Translation {
  readonly flags: FlagValues;
  readonly given: Record<string, unknown>;
  readonly barePort?: number;
}

export async function websockifyCommand(argv: string[], env: NodeJS.ProcessEnv, serve: Serve): Promise<number> {
  const parsed = parseFlags(() => parseArgs({ args: argv, options: PARSE_OPTIONS, strict: true, allowPositionals: true, tokens: true }), 'deskgate websockify');
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  if (parsed.values.version) {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  refuseUnsupported(parsed.tokens);
  const translation = translate(parsed.values, parsed.positionals);
  const readAgain = (): Promise<Config> => loadConfig(translation.flags, env, translation.given);
  return serve(await loadExplained(translation, env), readAgain);
}

/** The first refused flag in the order given, or `--` (websockify's wrapped command), as a ConfigError. */
function refuseUnsupported(tokens: ReturnType<typeof parseArgs>['tokens']): void {
  for (const token of tokens ?? []) {
    if (token.kind === 'option-terminator') throw new ConfigError(`websockify's -- COMMAND is not supported: ${WRAP_REFUSED}`);
    const refused = token.kind === 'option' && WEBSOCKIFY_FLAGS.find((f) => f.refused && f.flag === token.name);
    if (refused) {
      const named = token.rawName === `--${refused.flag}` ? token.rawName : `${token.rawName} (--${refused.flag})`;
      throw new ConfigError(`websockify's ${named} is not supported: ${refused.becomes}`);
    }
  }
}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** websockify's options and arguments as deskgate flags and raw config keys. */
function translate(values: Values, positionals: string[]): Translation {
  const flags: Values = { ...values };
  /** Set deskgate's `--name` from a websockify flag or argument, unless the user gave `--name` too. */
  const set = (name: string, value: string | boolean, from: string): void => {
    if (values[name] !== undefined) throw new ConfigError(`${from} and --${name} set the same thing: give one of them`);
    flags[name] = value;
  };
  const tokens = tokenSource(text(values, 'token-plugin'), text(values, 'token-source'), text(values, 'target-config'));
  const unixTarget = text(values, 'unix-target');
  if (tokens && unixTarget !== undefined) throw new ConfigError('--unix-target and --token-plugin both name the targets: give one of them');
  const givesTargets = tokens ? '--token-plugin' : unixTarget !== undefined ? '--unix-target' : undefined;
  const { source, target } = sourceAndTarget(
    positionals,
    givesTargets,
    ['desktop', 'tokens', 'config'].some((name) => values[name] !== undefined),
  );
  const listen = parseSource(source);
  set('listen', listen.address, `the source ${source}`);
  const record = text(values, 'record');
  if (record !== undefined) set('recordings-dir', dirname(resolve(record)), '--record');
  const desktop = targetDesktop(target, unixTarget, { sslTarget: values['ssl-target'] === true, record: record !== undefined }, tokens !== undefined);
  if (desktop) set('default-desktop', TARGET_DESKTOP, target === undefined ? '--unix-target' : `the target ${target}`);
  if (tokens) {
    set('tokens', tokens.source, tokens.from);
    set('tokens-format', tokens.format, tokens.from);
  }
  translateTls(values, set);
  for (const [flag, name] of SECONDS_FLAGS) {
    const seconds = text(values, flag);
    if (seconds !== undefined) set(name, String(wholeSeconds(flag, seconds) * 1000), `--${flag}`);
  }
  if (values.verbose === true) set('log-level', 'debug', '--verbose');
  // websockify answers the upgrade on any path, and has no demo desktop: deskgate's own flags may say otherwise.
  flags['websocket-path'] ??= '*';
  flags.demo ??= false;
  return { flags, given: desktop ? { desktops: [desktop] } : {}, ...(listen.bare && { barePort: listen.port }) };
}

/** websockify's flags in seconds, and deskgate's in milliseconds they set. */
const SECONDS_FLAGS = [
  ['heartbeat', 'keepalive-ms'],
  ['idle-timeout', 'exit-after-idle-ms'],
  ['timeout', 'accept-for-ms'],
] as const;

function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** The arguments: a source, and a target unless `givesTargets` names the flag that gives them (or deskgate's flags bring desktops). */
function sourceAndTarget(positionals: string[], givesTargets: string | undefined, bringsDesktops: boolean): { source: string; target?: string } {
  const [source, target, ...extra] = positionals;
  if (source === undefined) throw new ConfigError('too few arguments: expected [source_addr:]source_port (see deskgate websockify --help)');
  if (target === undefined && !givesTargets && !bringsDesktops) {
    throw new ConfigError('too few arguments: expected target_addr:target_port after the source, or --token-plugin, or --unix-target');
  }
  if (extra.length > 0)
    throw new ConfigError(`too many arguments: ${JSON.stringify(extra.join(' '))}; expected [source_addr:]source_port [target_addr:target_port]`);
  if (target !== undefined && givesTargets) throw new ConfigError(`too many arguments: ${JSON.stringify(target)}; ${givesTargets} gives the targets`);
  return { source, ...(target !== undefined && { target }) };
}

/** The desktop a target argument or --unix-target names, as the config file writes it; none with a token plugin. */
function targetDesktop(
  target: string | undefined,
  unixTarget: string | undefined,
  { sslTarget, record }: { sslTarget: boolean; record: boolean },
  tokens: boolean,
): object | undefined {
  if (sslTarget && tokens) {
    throw new ConfigError("--ssl-target cannot apply to each token's target: put the desktops in a config file, each with vnc: { tls: tls-first }");
  }
  if (record && tokens) throw new ConfigError("--record cannot apply to each token's desktop: put the desktops in a config file, each with record: true");
  const recorded = record && { record: true };
  if (unixTarget !== undefined) {
    if (sslTarget) throw new ConfigError('--ssl-target: deskgate speaks TLS to VNC servers over TCP only; drop it for --unix-target');
    const socket = resolve(unixTarget);
    return { name: TARGET_DESKTOP, socket, description: `websockify target unix:${socket}`, ...recorded };
  }
  if (target === undefined) {
    if (sslTarget) throw new ConfigError('--ssl-target applies to the target: give target_addr:target_port');
    if (record) throw new ConfigError('--record applies to the target: give target_addr:target_port, or desktops with record: true in a config file');
    return undefined;
  }
  const { host, port } = parseTarget(target);
  return { name: TARGET_DESKTOP, host, port, description: `websockify target ${target}`, ...(sslTarget && { vnc: { tls: 'tls-first' } }), ...recorded };
}

/** --cert and --key (the key defaults to the certificate's file, websockify's combined PEM), and --ssl-only, which needs one. */
function translateTls(values: Values, set: (name: string, value: string, from: string) => void): void {
  const [cert, key] = [text(values, 'cert'), text(values, 'key')];
  if (cert !== undefined) {
    set('tls-cert', cert, '--cert');
    set('tls-key', key ?? cert, key === undefined ? '--cert' : '--key');
  } else if (key !== undefined) {
    throw new ConfigError('--key needs --cert FILE (deskgate does not read ./self.pem)');
  }
  if (values['ssl-only'] === true && cert === undefined && values['tls-cert'] === undefined) {
    throw new ConfigError('--ssl-only needs --cert FILE: deskgate does not read ./self.pem');
  }
}

/** The token source and format a token plugin (or --target-config) gives; undefined without one. */
function tokenSource(
  plugin: string | undefined,
  source: string | undefined,
  targetConfig: string | undefined,
): { source: string; format: 'lines' | 'filenames'; from: string } | undefined {
  if (targetConfig !== undefined && (plugin !== undefined || source !== undefined)) {
    throw new ConfigError('--target-config is --token-plugin TokenFile --token-source FILE: give one or the other');
  }
  if (targetConfig !== undefined) return { source: targetConfig, format: 'lines', from: '--target-config' };
  if (plugin === undefined) {
    if (source !== undefined) throw new ConfigError('--token-source needs --token-plugin, e.g. --token-plugin TokenFile --token-source FILE');
    return undefined;
  }
  const name = plugin.replace(/^websockify\.token_plugins\./, '');
  const format = TOKEN_FORMATS[name];
  if (!format)
    throw new ConfigError(`--token-plugin ${plugin} is not supported: deskgate runs no Python plugins; ${PLUGINS_INSTEAD[name] ?? TOKEN_FILE_INSTEAD}`);
  if (source === undefined) throw new ConfigError(`--token-plugin ${plugin} needs --token-source FILE|DIR`);
  return { source, format, from: '--token-plugin' };
}

/** websockify's `[source_addr:]source_port`: a port alone (or `:PORT`) listens on every interface. */
function parseSource(text: string): { address: string; port: number; bare: boolean } {
  const { host, port } = splitHostPort(text);
  const address = `${isIP(host) === 6 ? `[${host}]` : host || '0.0.0.0'}:${port}`;
  if (!/^\d{1,5}$/.test(port) || !parseHostPort(address, { allowPortZero: true })) {
    throw new ConfigError(
      `the source ${JSON.stringify(text)}: expected [source_addr:]source_port, a port up to 65535, e.g. 6080, 127.0.0.1:6080 or [::1]:6080`,
    );
  }
  return { address, port: Number(port), bare: host === '' };
}

/** websockify's `target_addr:target_port`. */
function parseTarget(text: string): { host: string; port: number } {
  const target = parseWebsockifyHostPort(text);
  if (!target) throw new ConfigError(`the target ${JSON.stringify(text)}: expected target_addr:target_port, a port from 1 to 65535, e.g. localhost:5900`);
  return target;
}

/** Split at the last colon, as websockify does, and take the brackets off an IPv6 address. */
function splitHostPort(text: string): { host: string; port: string } {
  const colon = text.lastIndexOf(':');
  const host = colon < 0 ? '' : text.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: text.slice(colon + 1) };
}

function wholeSeconds(flag: string, text: string): number {
  const seconds = Number(text);
  if (!/^\d+$/.test(text) || seconds > MAX_SECONDS) {
    throw new ConfigError(`--${flag}: got ${JSON.stringify(text)}; expected a whole number of seconds, at most ${MAX_SECONDS}`);
  }
  return seconds;
}

/**
 * The configuration; when a bare source port is what makes it refuse (every interface, no
 * authentication), an error that says so and gives the remedies instead of the schema's.
 */
async function loadExplained({ flags, given, barePort }: Translation, env: NodeJS.ProcessEnv): Promise<Config> {
  try {
    return await loadConfig(flags, env, given);
  } catch (err) {
    if (!(err instanceof ConfigError) || barePort === undefined) throw err;
    const onLoopback = await loadConfig({ ...flags, listen: `127.0.0.1:${barePort}` }, env, given).catch(() => undefined);
    if (onLoopback?.auth.mode !== 'none' || onLoopback.auth.insecureNoAuth) throw err;
    throw new ConfigError(
      `the source ${barePort} alone listens on every interface (0.0.0.0:${barePort}), as websockify does, and deskgate opens ` +
        'no desktop to the network without authentication. Either:\n' +
        `  write 127.0.0.1:${barePort} to listen on this machine only (e.g. behind a reverse proxy),\n` +
        '  or add --auth password --users FILE (or --auth header --trust-proxy CIDR behind an SSO proxy),\n' +
        '  or add --insecure-no-auth, for an isolated lab only: anyone who reaches the port opens the desktop.',
    );
  }
}
