/**
 * The `deskgate` command as users run it: the built dist/cli.js (npm test builds first),
 * its help, its refusals of bad input, start-up to a healthy /healthz, and a graceful stop
 * on SIGTERM that closes sessions with 1001.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { OPTIONS } from '../../src/config/options.js';
import { runDeskgate, spawnDeskgate, startCli, waitHealthy, type DeskgateProcess } from '../helpers/cli-process.js';
import { freePort, requireCommand, waitFor } from '../helpers/processes.js';
import { startGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { closeOpenedSockets, openDesktop, tryUpgrade } from '../helpers/ws-client.js';

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

  it('answers --help of each subcommand with its own usage, and names a flag a subcommand does not know', async () => {
    for (const command of ['hash-password', 'api-key', 'ticket']) {
      for (const help of ['--help', '-h']) {
        const cli = await runDeskgate([command, help]);
        expect(cli.code, `${command} ${help}`).toBe(0);
        expect(cli.stdout).toMatch(new RegExp(`^Usage: deskgate ${command}`));
        expect(cli.stderr).toBe('');
      }
      const cli = await runDeskgate([command, '--bogus']);
      expect(cli.code, command).toBe(2);
      expect(cli.stderr).toBe(`deskgate: unknown flag --bogus (see deskgate ${command} --help)\n`);
    }
    expect((await runDeskgate(['ticket', '--help'])).stdout).toContain('--view-only');
  });

  // trustProxy was config-file only, so --auth header could not start from flags or environment alone.
  it('runs header authentication from flags and environment alone, without a config file', async () => {
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const cli = spawnDeskgate(['--listen', `127.0.0.1:${port}`, '--auth', 'header', '--trust-proxy', '127.0.0.1/32'], {
      env: { DESKGATE_MAX_SESSIONS_PER_USER: '1' },
    });
    started.push(cli);
    await waitHealthy(cli, `${origin}/healthz`);
    const alice = { headers: { 'x-forwarded-user': 'alice' } };

    const dashboard = await send(`${origin}/`, alice);
    expect(dashboard.status).toBe(200);
    expect(dashboard.body).toContain('data-desktop="demo"');
    expect((await send(`${origin}/`)).status).toBe(401);
    expect((await tryUpgrade(`ws://127.0.0.1:${port}/websockify?desktop=demo`)).status).toBe(401);
    // Alice's session counts as hers: DESKGATE_MAX_SESSIONS_PER_USER, a number from the environment, refuses her second.
    await openDesktop(`ws://127.0.0.1:${port}/websockify?desktop=demo`, alice);
    expect(await tryUpgrade(`ws://127.0.0.1:${port}/websockify?desktop=demo`, alice)).toMatchObject({
      status: 429,
      body: 'Too many sessions for alice (limit 1)\n',
    });
  });

  it('names a number flag and its variable when the value is not a number', async () => {
    const cli = await runDeskgate(['--max-sessions', 'fifty']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('limits.maxSessions (--max-sessions, DESKGATE_MAX_SESSIONS): got "fifty"; expected a whole number from 1 to 1000000');
    const env = await runDeskgate([], { env: { DESKGATE_IDLE_TIMEOUT_MS: '30m' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('session.idleTimeoutMs (--idle-timeout-ms, DESKGATE_IDLE_TIMEOUT_MS): got "30m"; expected a number of milliseconds');
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

/** The escape that starts a terminal's colour codes. */
const ESC = String.fromCharCode(0x1b);

describe('logs', () => {
  it('are coloured lines at a terminal, JSON lines when piped or asked for', async () => {
    requireCommand('script', 'bsdutils');
    const port = await freePort();
    const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    // `script` gives the command a pseudo-terminal for its standard output, as a person's shell would.
    // `exec` makes the gateway script's own child, so the test can stop it by its pid: a gateway
    // takes the SIGHUP of a closing terminal as "reload", so ending `script` alone would leave it running.
    const atTerminal = spawn('script', ['-qfec', `exec ${process.execPath} ${cli} --demo --listen 127.0.0.1:${port}`, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let seen = '';
    atTerminal.stdout.on('data', (chunk: Buffer) => (seen += chunk.toString()));
    try {
      await waitFor(() => seen.includes('gateway listening'), 'the listening line at the terminal');
      expect(seen).toMatch(new RegExp(`${ESC}\\[\\d+m`)); // coloured
      expect(seen).toMatch(/\d\d:\d\d:\d\d\.\d{3}/); // the local time, not epoch milliseconds
      expect(seen).not.toContain('{"level"');
    } finally {
      const gatewayPid = Number(execFileSync('ps', ['-o', 'pid=', '--ppid', String(atTerminal.pid)], { encoding: 'utf8' }).trim());
      if (gatewayPid > 0) process.kill(gatewayPid, 'SIGTERM');
      if (atTerminal.exitCode === null) await once(atTerminal, 'exit');
    }
    const piped = spawnDeskgate(['--demo', '--listen', `127.0.0.1:${await freePort()}`]);
    const pretty = spawnDeskgate(['--demo', '--listen', `127.0.0.1:${await freePort()}`, '--log-format', 'pretty']);
    try {
      await waitFor(() => {
        for (const run of [piped, pretty]) if (!run.running()) throw new Error(`deskgate exited before listening:\n${run.output()}`);
        return piped.stdout().includes('gateway listening') && pretty.stdout().includes('gateway listening');
      }, 'both to listen');
      expect(JSON.parse(piped.stdout().split('\n')[0] as string)).toMatchObject({ level: 30, msg: 'gateway listening' });
      expect(pretty.stdout()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: gateway listening/);
      expect(pretty.stdout()).not.toContain(`${ESC}[`); // not a terminal: no colour codes in a file
    } finally {
      await Promise.all([piped.stop(), pretty.stop()]);
    }
  });
});

describe('desktops at run time', () => {
  let demo: DemoDesktop;
  beforeAll(async () => {
    demo = await startDemoDesktop({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await demo?.close();
  });

  it('takes the config file’s desktops again on SIGHUP, without dropping a session', async () => {
    const desktop = (name: string) => ({ name, host: demo.host, port: demo.port });
    const cli = await startCli({ desktops: [desktop('one')] });
    const file = join(cli.dir, 'deskgate.yaml');
    const rewrite = (names: string[]): void => writeFileSync(file, stringify({ listen: `127.0.0.1:${cli.port}`, desktops: names.map(desktop) }));
    try {
      const session = await openDesktop(cli.wsUrl('?desktop=one'));
      expect((await tryUpgrade(cli.wsUrl('?desktop=two'))).status).toBe(404);
      rewrite(['one', 'two']);
      cli.child.kill('SIGHUP');
      await waitFor(async () => (await tryUpgrade(cli.wsUrl('?desktop=two'))).status === 101, 'desktop two to be offered');
      rewrite(['two']);
      cli.child.kill('SIGHUP');
      await waitFor(async () => (await tryUpgrade(cli.wsUrl('?desktop=one'))).status === 404, 'desktop one to be gone');
      // The session opened on 'one' before both reloads still relays.
      session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
      expect((await session.nextMessage()).length).toBeGreaterThan(0);
      // A bad file changes nothing and says why.
      writeFileSync(file, stringify({ listen: `127.0.0.1:${cli.port}`, desktops: ['broken'] }));
      cli.child.kill('SIGHUP');
      await waitFor(() => cli.stderr().includes('reload failed, nothing changed'), 'the failed reload to be reported');
      expect(cli.stderr()).toContain('desktops[0]');
      expect((await tryUpgrade(cli.wsUrl('?desktop=two'))).status).toBe(101);
    } finally {
      closeOpenedSockets();
      await cli.stop();
    }
  });

  it('lets a library user add and remove desktops', async () => {
    const gw = await startGateway({ desktops: [], demo: false });
    try {
      expect((await tryUpgrade(gw.wsUrl('lab'))).status).toBe(404);
      gw.gateway.addDesktop(`lab=${demo.host}:${demo.port}`);
      const session = await openDesktop(gw.wsUrl('lab'));
      expect(gw.gateway.removeDesktop('lab')).toBe(true);
      expect((await tryUpgrade(gw.wsUrl('lab'))).status).toBe(404);
      expect(session.ws.readyState).toBe(session.ws.OPEN);
      expect(() => gw.gateway.addDesktop({ name: 'bad name!', host: 'x', port: 1 })).toThrow(/desktop\.name/);
    } finally {
      closeOpenedSockets();
      await gw.gateway.close();
    }
  });
});
