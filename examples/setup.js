/**
 * What the three examples share: a deskgate config below /remote in password mode, with the
 * built-in demo desktop (no VNC server needed), a users file and a key for the ticket API.
 *
 * In an application of your own these come from your configuration: `npx deskgate
 * hash-password` prints the hash a users file holds, and `npx deskgate api-key` a key and
 * the hash `tickets.apiKeys` holds. Here, for a quick try, a users file with the user `demo`
 * is written to a temporary directory, and the password and key are printed; set
 * EXAMPLE_PASSWORD and EXAMPLE_API_KEY to choose them, or EXAMPLE_USERS_FILE to use a
 * users file of your own. PORT (default 3000) and HOST (default 127.0.0.1) choose where
 * the host application listens, LOG_LEVEL how much deskgate logs.
 */
import { hash } from '@node-rs/argon2';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from 'deskgate';

/** Where the host application mounts deskgate. */
export const BASE_PATH = '/remote';

export const HOST = process.env.HOST ?? '127.0.0.1';
export const PORT = Number(process.env.PORT ?? 3000);

/** The config, and what a person needs to try it: the password (unless the users file is theirs) and the API key. */
export async function exampleSetup() {
  const password = process.env.EXAMPLE_PASSWORD ?? randomBytes(12).toString('base64url');
  const apiKey = process.env.EXAMPLE_API_KEY ?? `dgk_${randomBytes(32).toString('base64url')}`;
  const config = parseConfig({
    basePath: BASE_PATH,
    demo: true,
    auth: { mode: 'password', usersFile: process.env.EXAMPLE_USERS_FILE ?? (await writeUsersFile(password)) },
    tickets: { secret: randomBytes(32).toString('base64url'), apiKeys: [`sha256:${createHash('sha256').update(apiKey).digest('hex')}`] },
    log: { level: process.env.LOG_LEVEL ?? 'info' },
  });
  return { config, password: process.env.EXAMPLE_USERS_FILE ? undefined : password, apiKey };
}

/**
 * A users file with the user `demo`, removed when the process exits.
 * @param {string} password
 */
async function writeUsersFile(password) {
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-example-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'users.yaml');
  // argon2id as `deskgate hash-password` makes it (OWASP's baseline: 19 MiB, 2 passes).
  const passwordHash = await hash(password, { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  writeFileSync(file, `users:\n  demo:\n    password: '${passwordHash}'\n`, { mode: 0o600 });
  return file;
}

/**
 * Tell the person who started the example where to go. The first line is what the tests
 * wait for.
 * @param {string} origin
 * @param {{ password: string | undefined, apiKey: string }} secrets
 */
export function announce(origin, { password, apiKey }) {
  console.log(`Listening on ${origin}/ with deskgate at ${origin}${BASE_PATH}/`);
  if (password) console.log(`Log in as demo with the password ${password}`);
  console.log(`Ask for a ticket: curl -X POST ${origin}${BASE_PATH}/api/tickets -H 'Authorization: Bearer ${apiKey}' \\`);
  console.log(`  -H 'Content-Type: application/json' -d '{"desktop": "demo", "user": "alice"}'`);
}

/**
 * On SIGINT or SIGTERM: `stop` (close deskgate, then the host's server), then exit.
 * @param {() => Promise<void>} stop
 */
export function stopOnSignal(stop) {
  const onSignal = () => {
    stop().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
