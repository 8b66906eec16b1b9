/**
 * Where configuration comes from: a YAML file, DESKGATE_* environment variables and flags,
 * merged (flags win over the environment, the environment over the file) into the raw
 * object that schema.ts validates. Which flag and variable set which key is options.ts's
 * table. Shared by the gateway and the subcommands.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CONFIG_FILE, OPTIONS, PATH_KEYS, type Option } from './options.js';
import { ConfigError, FileError, parseConfig, type Config } from './schema.js';

/** Flag values as parseArgs returns them, by long flag name. */
export type FlagValues = Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;

/** Run parseArgs, turning its errors into ones that name the flag and the command whose --help lists the flags. */
export function parseFlags<T>(parse: () => T, command = 'deskgate'): T {
  try {
    return parse();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'([^']+)'/.exec(message)?.[1];
    const detail =
      (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `unknown flag ${flag}`
        : (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
          ? `unexpected argument ${flag}`
          : message.includes('ambiguous')
            ? `${flag} needs a value; write one that starts with a dash as ${flag}=-…`
            : message.split('.')[0];
    throw new ConfigError(`${detail} (see ${command} --help)`);
  }
}

/**
 * Read a file the operator named under `key` (`tls.cert`, ...): one that cannot be read is
 * theirs to fix, not a bug. Synchronous: these are small files, read at start-up and on
 * SIGHUP, and the ticket authority reads its keys in a constructor.
 */
export function readOperatorFile(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new FileError(key, path, `cannot read ${key} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Merge file, environment and flags into the raw object the schema validates. `given`: raw
 * top-level keys a command sets beside its flags (deskgate websockify's target desktop), applied
 * as a flag is: over the file, a list added to the file's.
 */
export async function loadConfig(flags: FlagValues, env: NodeJS.ProcessEnv, given: Record<string, unknown> = {}): Promise<Config> {
  const file = valueOf(CONFIG_FILE, flags, env) as string | undefined;
  let raw: Record<string, unknown> = file ? await readConfigFile(file) : {};
  for (const option of OPTIONS) {
    const value = valueOf(option, flags, env);
    if (option.key && value !== undefined) raw = withValue(raw, option, value);
  }
  for (const [name, value] of Object.entries(given)) raw = withValue(raw, { key: [name], kind: Array.isArray(value) ? 'list' : 'string', help: [] }, value);
  return parseConfig(raw);
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const text = readOperatorFile('config file', file).toString('utf8');
  const { parse: parseYaml } = await import('yaml'); // loaded only when a file is given: start-up time
  try {
    const data: unknown = parseYaml(text) ?? {};
    if (typeof data !== 'object' || Array.isArray(data)) throw new Error('expected a mapping of keys to values at the top level');
    return resolvePaths(data as Record<string, unknown>, dirname(resolve(file)));
  } catch (err) {
    // Only the first line of the parser's message: the rest quotes the file, and a line of it may hold a password.
    const why = (err as Error).message.split('\n', 1)[0]?.replace(/:$/, '');
    throw new FileError('config file', file, `config file ${file} is not valid YAML: ${why}`);
  }
}

/** An option's value from its flag, else from its variable; undefined when neither is set. */
function valueOf(option: Option, flags: FlagValues, env: NodeJS.ProcessEnv): unknown {
  const flagged = option.flag === undefined ? undefined : flags[option.flag];
  if (flagged !== undefined) return option.kind === 'number' ? textNumber(flagged) : flagged;
  const text = option.env === undefined ? undefined : env[option.env];
  if (text === undefined) return undefined;
  if (option.kind === 'number') return textNumber(text);
  if (option.kind === 'boolean') return envBoolean(text);
  if (option.kind === 'list')
    return text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return text;
}

/**
 * A number written as digits (a sign and a fraction allowed, for the schema to refuse with its
 * bounds); anything else, `0x10`, `1e3`, `10_000` or nothing, stays text for the schema to name.
 */
function textNumber(value: unknown): unknown {
  return typeof value === 'string' && /^\s*[+-]?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
}

/** Environment booleans: true/false, 1/0, yes/no, on/off; anything else goes to the schema to be named. */
function envBoolean(value: string): boolean | string {
  if (/^(true|1|yes|on)$/i.test(value)) return true;
  if (/^(false|0|no|off)$/i.test(value)) return false;
  return value;
}

/** The raw config with an option's value set, keeping what the file put beside it; a list adds to the file's. */
function withValue(raw: Record<string, unknown>, option: Option, value: unknown): Record<string, unknown> {
  const key = option.key as readonly string[];
  if (option.kind !== 'list') return setIn(raw, key, value);
  const current = getIn(raw, key);
  return setIn(raw, key, [...(Array.isArray(current) ? current : []), ...(value as unknown[])]);
}

function getIn(holder: unknown, key: readonly string[]): unknown {
  return key.reduce((value, name) => (isObject(value) ? value[name] : undefined), holder);
}

/** A copy of `holder` with `value` at `key`; a section the file gave as something else becomes an object. */
function setIn(holder: unknown, [name, ...rest]: readonly string[], value: unknown): Record<string, unknown> {
  const copy = isObject(holder) ? { ...holder } : {};
  copy[name as string] = rest.length > 0 ? setIn(copy[name as string], rest, value) : value;
  return copy;
}

/** The file paths of a desktop's `vnc` section. */
const DESKTOP_VNC_PATHS = ['passwordFile', 'vncpasswdFile', 'ca'];

/** File paths in a config file are relative to the file, as its author reads them. */
function resolvePaths(raw: Record<string, unknown>, base: string): Record<string, unknown> {
  const resolveIn = (section: unknown, name: string): void => {
    if (isObject(section) && typeof section[name] === 'string') section[name] = resolve(base, section[name]);
  };
  for (const key of PATH_KEYS) resolveIn(getIn(raw, key.slice(0, -1)), key.at(-1) as string);
  const desktops = Array.isArray(raw.desktops) ? (raw.desktops as unknown[]) : [];
  for (const desktop of desktops) {
    for (const name of DESKTOP_VNC_PATHS) resolveIn(getIn(desktop, ['vnc']), name);
    resolveIn(getIn(desktop, ['record']), 'dir');
  }
  return raw;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
