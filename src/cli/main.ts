#!/usr/bin/env node
/**
 * The `deskgate` command: flags, DESKGATE_* environment variables and an optional YAML
 * config file, merged by config/sources.ts and validated once by config/schema.ts; then the
 * gateway starts, SIGHUP reloads its users file and certificate, SIGTERM/SIGINT stop it.
 * The subcommands (hash-password, api-key, ticket) live in commands.ts.
 */
import { parseArgs } from 'node:util';
import { ConfigError, type Config } from '../config/schema.js';
import { loadConfig, parseFlags } from '../config/sources.js';
import { VERSION } from '../package.js';

const HELP = `deskgate ${VERSION} — one port, many desktops: VNC in the browser

Usage: deskgate [options]                 run the gateway
       deskgate hash-password             read a password on stdin, print its argon2id hash
       deskgate api-key                   print a new API key and the hash for tickets.apiKeys
       deskgate ticket --desktop NAME --user USER [--view-only] [--ttl SECONDS] [--config FILE]
                                          print a one-time viewer URL (needs tickets.secret or keys)

Options (each also a config-file key and an environment variable):
  --config FILE            YAML config file                       DESKGATE_CONFIG
  --listen HOST:PORT       address to listen on                   DESKGATE_LISTEN      listen
                           (default 127.0.0.1:6080)
  --desktop NAME=HOST:PORT a VNC server to offer; repeatable      DESKGATE_DESKTOP     desktops
                           (the variable takes a comma-separated list)
  --demo                   serve the built-in demo desktop 'demo' DESKGATE_DEMO        demo
                           (default: on when no desktop is configured)
  --auth MODE              none|password|header (default none,    DESKGATE_AUTH        auth.mode
                           which is refused beyond loopback)
  --users FILE             users file for --auth password         DESKGATE_USERS       auth.usersFile
  --insecure-no-auth       allow --auth none on a non-loopback    DESKGATE_INSECURE_NO_AUTH
                           address: anyone who reaches the port                        auth.insecureNoAuth
                           can open every desktop (isolated labs only)
  --tls-cert FILE          PEM certificate chain: serve HTTPS     DESKGATE_TLS_CERT    tls.cert
  --tls-key FILE           PEM private key (SIGHUP reloads both)  DESKGATE_TLS_KEY     tls.key
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent
                                                                  DESKGATE_LOG_LEVEL   log.level
  -h, --help               show this help and exit
  -v, --version            print the version and exit

Secrets come from the config file or the environment only, never from flags (they would
show in the process list): DESKGATE_AUTH_SECRET (auth.secret), DESKGATE_TICKET_SECRET
(tickets.secret).

Examples:
  deskgate                                  # the demo desktop on http://127.0.0.1:6080
  deskgate --desktop lab1=10.0.0.5:5901 --desktop lab2=10.0.0.6:5900
  deskgate --config /etc/deskgate.yaml      # SIGHUP re-reads the users file and certificate
  deskgate ticket --config /etc/deskgate.yaml --desktop lab1 --user alice --ttl 60
`;

const FLAGS = {
  config: { type: 'string' },
  listen: { type: 'string' },
  desktop: { type: 'string', multiple: true },
  demo: { type: 'boolean' },
  auth: { type: 'string' },
  users: { type: 'string' },
  'insecure-no-auth': { type: 'boolean' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

function parseCommandLine(argv: string[]) {
  return parseFlags(() => parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values);
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  try {
    const command = COMMANDS[argv[0] ?? ''];
    if (command) return await (await command())(argv.slice(1), env);
    const flags = parseCommandLine(argv);
    if (flags.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (flags.version) {
      process.stdout.write(`${VERSION}\n`);
      return 0;
    }
    return await serve(await loadConfig(flags, env));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`deskgate: ${err.message}\n`);
    return 2;
  }
}

type Command = (argv: string[], env: NodeJS.ProcessEnv) => Promise<number>;

// Loaded on demand: running the gateway needs none of them.
const COMMANDS: Record<string, () => Promise<Command>> = {
  'hash-password': async () => (await import('./commands.js')).hashPasswordCommand,
  'api-key': async () => (await import('./commands.js')).apiKeyCommand,
  ticket: async () => (await import('./commands.js')).ticketCommand,
};

async function serve(config: Config): Promise<number> {
  // Loaded only now, so --help, --version and config errors answer without it.
  const { createGateway } = await import('../gateway.js');
  let gateway;
  try {
    gateway = await createGateway(config);
  } catch (err) {
    throw new ConfigError((err as Error).message); // a users file, key or certificate that cannot be used
  }
  try {
    await gateway.listen();
  } catch (err) {
    const { host, port } = config.listen;
    process.stderr.write(`deskgate: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    await gateway.destroy();
    return 1;
  }
  const reload = (): void => {
    gateway.reload().catch((err: unknown) => process.stderr.write(`deskgate: reload failed, nothing changed: ${(err as Error).message}\n`));
  };
  process.on('SIGHUP', reload);
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', reload);
      void gateway.close().then(() => resolve(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

process.exitCode = await main(process.argv.slice(2), process.env);
