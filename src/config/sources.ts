/**
 * Where configuration comes from: a YAML file, DESKGATE_* environment variables and flags,
 * merged (flags win over the environment, the environment over the file) into the raw
 * object that schema.ts validates. Shared by the gateway and the subcommands.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, parseConfig, type Config } from './schema.js';

/** The flags that map onto config keys; every one is optional. */
export interface ConfigFlags {
  config?: string | undefined;
  listen?: string | undefined;
  desktop?: string[] | undefined;
  demo?: boolean | undefined;
  auth?: string | undefined;
  users?: string | undefined;
  'insecure-no-auth'?: boolean | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'log-level'?: string | undefined;
}

/** Run parseArgs, turning its errors into ones that name the flag. */
export function parseFlags<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'([^']+)'/.exec(message)?.[1];
    const detail =
      (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? `unknown flag ${flag}`
      : (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' ? `unexpected argument ${flag}`
      : message.split('.')[0];
    throw new ConfigError(`${detail} (see deskgate --help)`);
  }
}

/** Environment booleans: true/false, 1/0, yes/no; anything else goes to the schema to be named. */
function envBoolean(value: string): boolean | string {
  if (/^(true|1|yes|on)$/i.test(value)) return true;
  if (/^(false|0|no|off)$/i.test(value)) return false;
  return value;
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const { parse: parseYaml } = await import('yaml'); // loaded only when a file is given: start-up time
  try {
    const data: unknown = parseYaml(text) ?? {};
    if (typeof data !== 'object' || Array.isArray(data)) throw new Error('expected a mapping of keys to values at the top level');
    return resolvePaths(data as Record<string, unknown>, dirname(resolve(file)));
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
}

/** File paths in a config file are relative to the file, as its author reads them. */
const PATH_KEYS = [
  ['auth', 'usersFile'],
  ['tls', 'cert'],
  ['tls', 'key'],
  ['tickets', 'publicKeyFile'],
  ['tickets', 'privateKeyFile'],
] as const;

function resolvePaths(raw: Record<string, unknown>, base: string): Record<string, unknown> {
  for (const [section, key] of PATH_KEYS) {
    const holder = raw[section] as Record<string, unknown> | undefined;
    if (holder && typeof holder === 'object' && typeof holder[key] === 'string') holder[key] = resolve(base, holder[key]);
  }
  return raw;
}

/** Set `raw[a][b]` from a flag or variable, keeping what the file put beside it. */
function setNested(raw: Record<string, unknown>, section: string, key: string, value: unknown): void {
  if (value === undefined) return;
  const current = raw[section];
  raw[section] = { ...(typeof current === 'object' && current !== null ? current : {}), [key]: value };
}

/** Merge file, environment and flags into the raw object the schema validates. */
export async function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv): Promise<Config> {
  const file = flags.config ?? env.DESKGATE_CONFIG;
  const raw: Record<string, unknown> = file ? await readConfigFile(file) : {};
  const listen = flags.listen ?? env.DESKGATE_LISTEN;
  if (listen !== undefined) raw.listen = listen;
  const extraDesktops = flags.desktop ?? env.DESKGATE_DESKTOP?.split(',').map((s) => s.trim()).filter(Boolean);
  if (extraDesktops) raw.desktops = [...(Array.isArray(raw.desktops) ? raw.desktops : []), ...extraDesktops];
  const demo = flags.demo ?? (env.DESKGATE_DEMO !== undefined ? envBoolean(env.DESKGATE_DEMO) : undefined);
  if (demo !== undefined) raw.demo = demo;
  setNested(raw, 'log', 'level', flags['log-level'] ?? env.DESKGATE_LOG_LEVEL);
  setNested(raw, 'auth', 'mode', flags.auth ?? env.DESKGATE_AUTH);
  setNested(raw, 'auth', 'usersFile', flags.users ?? env.DESKGATE_USERS);
  const insecure = flags['insecure-no-auth'] ?? (env.DESKGATE_INSECURE_NO_AUTH !== undefined ? envBoolean(env.DESKGATE_INSECURE_NO_AUTH) : undefined);
  setNested(raw, 'auth', 'insecureNoAuth', insecure);
  setNested(raw, 'auth', 'secret', env.DESKGATE_AUTH_SECRET);
  setNested(raw, 'tickets', 'secret', env.DESKGATE_TICKET_SECRET);
  setNested(raw, 'tls', 'cert', flags['tls-cert'] ?? env.DESKGATE_TLS_CERT);
  setNested(raw, 'tls', 'key', flags['tls-key'] ?? env.DESKGATE_TLS_KEY);
  return parseConfig(raw);
}

