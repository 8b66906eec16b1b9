#!/usr/bin/env node
/**
 * The `deskgate` command: flags, DESKGATE_* environment variables and an optional YAML
 * config file, merged (flags win over environment, environment over file) and validated
 * once by the schema in config.ts; then the gateway starts and SIGTERM/SIGINT stop it.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig, type Config } from './config.js';
import { VERSION } from './version.js';

const HELP = `deskgate ${VERSION} — one port, many desktops: VNC in the browser

Usage: deskgate [options]

Options (each also a config-file key and an environment variable):
  --config FILE            YAML config file                       DESKGATE_CONFIG
  --listen HOST:PORT       address to listen on                   DESKGATE_LISTEN      listen
                           (default 127.0.0.1:6080)
  --desktop NAME=HOST:PORT a VNC server to offer; repeatable      DESKGATE_DESKTOP     desktops
                           (the variable takes a comma-separated list)
  --demo                   serve the built-in demo desktop 'demo' DESKGATE_DEMO        demo
                           (default: on when no desktop is configured)
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent
                                                                  DESKGATE_LOG_LEVEL   log.level
  -h, --help               show this help and exit
  -v, --version            print the version and exit

Examples:
  deskgate                                  # the demo desktop on http://127.0.0.1:6080
  deskgate --desktop lab1=10.0.0.5:5901 --desktop lab2=10.0.0.6:5900
  deskgate --config /etc/deskgate.yaml
`;

const FLAGS = {
  config: { type: 'string' },
  listen: { type: 'string' },
  desktop: { type: 'string', multiple: true },
  demo: { type: 'boolean' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

type Flags = ReturnType<typeof parseFlags>;

function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
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
    return data as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
}

/** Merge file, environment and flags into the raw object the schema validates. */
async function loadConfig(flags: Flags, env: NodeJS.ProcessEnv): Promise<Config> {
  const file = flags.config ?? env.DESKGATE_CONFIG;
  const raw: Record<string, unknown> = file ? await readConfigFile(file) : {};
  const listen = flags.listen ?? env.DESKGATE_LISTEN;
  if (listen !== undefined) raw.listen = listen;
  const extraDesktops = flags.desktop ?? env.DESKGATE_DESKTOP?.split(',').map((s) => s.trim()).filter(Boolean);
  if (extraDesktops) raw.desktops = [...(Array.isArray(raw.desktops) ? raw.desktops : []), ...extraDesktops];
  const demo = flags.demo ?? (env.DESKGATE_DEMO !== undefined ? envBoolean(env.DESKGATE_DEMO) : undefined);
  if (demo !== undefined) raw.demo = demo;
  const level = flags['log-level'] ?? env.DESKGATE_LOG_LEVEL;
  if (level !== undefined) raw.log = { ...(raw.log as object | undefined), level };
  return parseConfig(raw);
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let config: Config;
  try {
    const flags = parseFlags(argv);
    if (flags.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (flags.version) {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    config = await loadConfig(flags, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`deskgate: ${err.message}\n`);
    return 2;
  }

  // Loaded only now, so --help, --version and config errors answer without it.
  const { createGateway } = await import('./gateway.js');
  const gateway = await createGateway(config);
  try {
    await gateway.listen();
  } catch (err) {
    const { host, port } = config.listen;
    process.stderr.write(`deskgate: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    await gateway.destroy();
    return 1;
  }
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      void gateway.close().then(() => resolve(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

process.exitCode = await main(process.argv.slice(2), process.env);
