#!/usr/bin/env node
/**
 * The `deskgate` command: flags, DESKGATE_* environment variables and an optional YAML
 * config file (config/options.ts lists them), merged by config/sources.ts and validated once
 * by config/schema.ts; then the gateway starts, SIGHUP reloads its users file and
 * certificate, SIGTERM/SIGINT stop it. The subcommands (hash-password, api-key, ticket) live
 * in commands.ts; how an error ends the command, in exit.ts.
 */
import { parseArgs } from 'node:util';
import { flagsOf, OPTIONS, optionsHelp } from '../config/options.js';
import { parseConfig, type Config } from '../config/schema.js';
import { loadConfig, parseFlags, type FlagValues } from '../config/sources.js';
import { VERSION } from '../package.js';
import { EXIT, failure } from './exit.js';
import type { Serve } from './websockify.js';

/** The gateway's --help; the options' defaults come from the schema. */
function help(): string {
  return `deskgate ${VERSION} — one port, many desktops: VNC in the browser

Usage: deskgate [options]                 run the gateway
       deskgate hash-password             read a password on stdin, print its argon2id hash
       deskgate api-key                   print a new API key and the hash for tickets.apiKeys
       deskgate ticket --desktop NAME --user USER [--view-only] [--ttl SECONDS] [--config FILE]
                                          print a one-time viewer URL (needs tickets.secret or keys)
       deskgate websockify [options] [source_addr:]source_port [target_addr:target_port]
                                          websockify's command line, run by deskgate
       deskgate COMMAND --help            a subcommand's own options

${optionsHelp(parseConfig({}))}
Examples:
  deskgate                                  # the demo desktop on http://127.0.0.1:6080
  deskgate --desktop lab1=10.0.0.5:5901 --desktop lab2=10.0.0.6:5900
  deskgate --config /etc/deskgate.yaml      # SIGHUP re-reads the users file and certificate
  deskgate --listen 0.0.0.0:6080 --auth header --trust-proxy 10.0.0.2/32 --base-path /desktops
  deskgate ticket --config /etc/deskgate.yaml --desktop lab1 --user alice --ttl 60
`;
}

function parseCommandLine(argv: string[]): FlagValues {
  return parseFlags(() => parseArgs({ args: argv, options: flagsOf(OPTIONS), strict: true, allowPositionals: false }).values);
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  try {
    const command = COMMANDS[argv[0] ?? ''];
    if (command) return await (await command())(argv.slice(1), env, serve);
    const flags = parseCommandLine(argv);
    if (flags.help) {
      process.stdout.write(help());
      return EXIT.ok;
    }
    if (flags.version) {
      process.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    }
    // SIGHUP reads the same file, variables and flags again, for its desktops.
    return await serve(await loadConfig(flags, env), () => loadConfig(flags, env));
  } catch (err) {
    const { exitCode, message } = failure(err);
    process.stderr.write(message);
    return exitCode;
  }
}

/** A subcommand; one that runs the gateway (websockify) does it through `run`, the gateway's own serve path. */
type Command = (argv: string[], env: NodeJS.ProcessEnv, run: Serve) => Promise<number>;

// Loaded on demand: running the gateway needs none of them.
const COMMANDS: Record<string, () => Promise<Command>> = {
  'hash-password': async () => (await import('./commands.js')).hashPasswordCommand,
  'api-key': async () => (await import('./commands.js')).apiKeyCommand,
  ticket: async () => (await import('./commands.js')).ticketCommand,
  websockify: async () => (await import('./websockify.js')).websockifyCommand,
};

async function serve(config: Config, readAgain: () => Promise<Config>): Promise<number> {
  // Loaded only now, so --help, --version and config errors answer without it.
  const { createGateway } = await import('../gateway.js');
  const gateway = await createGateway(config);
  try {
    await gateway.listen();
  } catch (err) {
    const { host, port } = config.listen;
    process.stderr.write(`deskgate: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    await gateway.destroy();
    return EXIT.cannotListen;
  }
  const reload = (): void => {
    readAgain()
      .then((next) => gateway.reload(next))
      .catch((err: unknown) => process.stderr.write(`deskgate: reload failed, nothing changed: ${(err as Error).message}\n`));
  };
  const stopListening = (): void => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    process.off('SIGHUP', reload);
  };
  // A second signal then ends the process at once, as a person pressing Ctrl+C twice expects.
  const stop = (): void => {
    stopListening();
    void gateway.close();
  };
  process.on('SIGHUP', reload);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Stopped by a signal, or by its own lifetime (lifetime.exitAfterIdleMs, acceptForMs).
  await gateway.stopped;
  stopListening();
  return EXIT.ok;
}

process.exitCode = await main(process.argv.slice(2), process.env);
