/**
 * The `deskgate` command as users run it: the built dist/cli.js (npm test builds first),
 * its help, its refusals of bad input, start-up to a healthy /healthz, and a graceful stop
 * on SIGTERM that closes sessions with 1001.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { OPTIONS } from '../../src/config/options.js';
import { runDeskgate, spawnDeskgate, startCli, waitHealthy, type DeskgateProcess } from '../helpers/cli-process.js';
import { freePort } from '../helpers/processes.js';
import { openDesktop } from '../helpers/ws-client.js';

const started: DeskgateProcess[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((cli) => cli.stop()));
});

/** `deskgate --listen 127.0.0.1:PORT`, logging at info, once it answers /healthz. */
async function listenOn(port: number): Promise<DeskgateProcess> {
  const cli = spawnDeskgate(['--listen', `127.0.0.1:${port}`], { env: { DESKGATE_LOG_LEVEL: 'info' } });
  started.push(cli);
  await waitHealthy(cli, `http://127.0.0.1:${port}/healthz`);
  return cli;
}

describe('deskgate command', () => {
  it('documents every flag in --help, with its variable and config key', async () => {
    const cli = await runDeskgate(['--help']);
    expect(cli.code).toBe(0);
    for (const flag of ['--config', '--listen', '--desktop', '--demo', '--log-level', '--help', '--version']) {
      expect(cli.stdout).toContain(flag);
    }
    for (const { flag, env, key } of OPTIONS) {
      for (const name of [flag && `--${flag}`, env, key?.join('.')]) if (name) expect(cli.stdout).toContain(name);
    }
  });

  it('prints its version', async () => {
    const cli = await runDeskgate(['--version']);
    expect(cli.code).toBe(0);
    expect(cli.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('names an unknown flag', async () => {
    const cli = await runDeskgate(['--lisen', '127.0.0.1:1']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('unknown flag --lisen');
  });

  it('names the key, value and expectation of a bad flag value', async () => {
    const cli = await runDeskgate(['--desktop', 'lab1=10.0.0.5']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/desktops\[0\] \(--desktop, DESKGATE_DESKTOP\): got "lab1=10\.0\.0\.5"; expected NAME=HOST:PORT/);
  });

  it('names a bad environment variable value', async () => {
    const cli = await runDeskgate([], { env: { DESKGATE_DEMO: 'maybe' } });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('demo (--demo, DESKGATE_DEMO): got "maybe"; expected true or false');
  });

  // It issued tickets for "a b,c\x01" and a 3,000-character name, which the ticket API refuses.
  it('ticket refuses a --user the ticket API would refuse, naming the flag, the value and what is expected', async () => {
    const env = { DESKGATE_TICKET_SECRET: 'a-ticket-secret-of-at-least-32-chars' };
    for (const user of ['a b,c\x01', 'u'.repeat(3000)]) {
      const cli = await runDeskgate(['ticket', '--desktop', 'demo', '--user', user], { env });
      expect(cli.code).toBe(2);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toContain(`--user: got ${JSON.stringify(user)}; expected a user name: 1-128 characters`);
    }
  });

  it('says which config file could not be read', async () => {
    const cli = await runDeskgate(['--config', '/nonexistent/deskgate.yaml']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('cannot read config file /nonexistent/deskgate.yaml');
  });

  it('exits 2 naming the key and the file when the users file cannot be read', async () => {
    const cli = await runDeskgate(['--auth', 'password', '--users', '/nonexistent/users.yaml']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/^deskgate: cannot read auth\.usersFile \/nonexistent\/users\.yaml: ENOENT/);
  });

  // A certificate that is not PEM used to stop start-up with OpenSSL's reason alone, naming no file.
  it('exits 2 naming the key and the file when the TLS certificate cannot be used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deskgate-'));
    try {
      const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
      writeFileSync(cert, 'not a certificate\n');
      writeFileSync(key, 'not a key\n');
      const cli = await runDeskgate(['--tls-cert', cert, '--tls-key', key]);
      expect(cli.code).toBe(2);
      expect(cli.stderr).toContain(`tls.cert ${cert}`);
      expect(cli.stderr).not.toContain('unexpected error');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // serve() reported any start-up exception, even a TypeError, as a configuration error with
  // exit code 2, and the demo desktop createGateway had started kept the process from exiting.
  it('exits 70 with the stack on an unexpected error, a bug, instead of hanging', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deskgate-'));
    try {
      const bug = join(dir, 'bug.mjs');
      writeFileSync(
        bug,
        "import { createRequire, syncBuiltinESMExports } from 'node:module';\n" +
          "createRequire(import.meta.url)('node:http').createServer = () => { throw new TypeError('a simulated bug'); };\n" +
          'syncBuiltinESMExports();\n',
      );
      const cli = await runDeskgate(['--listen', '127.0.0.1:0'], { env: { NODE_OPTIONS: `--import ${pathToFileURL(bug).href}` }, timeoutMs: 10_000 });
      expect(cli.code).toBe(70);
      expect(cli.stderr).toMatch(/^deskgate: unexpected error \(a bug; please report it\):\nTypeError: a simulated bug\n {4}at /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads desktops from a YAML config file, and adds those given by flag', async () => {
    const gw = await startCli(
      { desktops: [{ name: 'lab1', host: '127.0.0.1', port: 5901, description: 'Lab one' }] },
      { args: ['--desktop', 'lab2=127.0.0.1:5902'] },
    );
    started.push(gw);
    const dashboard = (await gw.request('/')).body;
    expect(dashboard).toContain('data-desktop="lab1"');
    expect(dashboard).toContain('Lab one');
    expect(dashboard).toContain('data-desktop="lab2"');
    expect(dashboard).not.toContain('data-desktop="demo"');
  });

  it('names the line of a config file that is not valid YAML', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deskgate-'));
    try {
      const file = join(dir, 'broken.yaml');
      writeFileSync(file, 'desktops:\n  - name: lab1\n   host: [oops\n');
      const cli = await runDeskgate(['--config', file]);
      expect(cli.code).toBe(2);
      expect(cli.stderr).toMatch(new RegExp(`config file ${file} is not valid YAML: .*line \\d+`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts healthy, then on SIGTERM closes sessions with 1001 and exits 0', async () => {
    const port = await freePort();
    const cli = await listenOn(port);
    const client = await openDesktop(`ws://127.0.0.1:${port}/websockify?desktop=demo`); // the RFB handshake done: the session has started

    cli.child.kill('SIGTERM');
    expect(await client.closed).toEqual({ code: 1001, reason: 'The gateway is shutting down' });
    expect(await cli.exited).toBe(0);
    const log = cli.stdout();
    expect(log).toContain('"msg":"session start"');
    expect(log).toMatch(/"desktop":"demo".*"code":1001.*"msg":"session end"/);
  });

  it('exits non-zero with the address when it cannot listen', async () => {
    const port = await freePort();
    const holder = await listenOn(port);
    const second = await runDeskgate(['--listen', `127.0.0.1:${port}`]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`cannot listen on 127.0.0.1:${port}`);
    holder.child.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  });
});
