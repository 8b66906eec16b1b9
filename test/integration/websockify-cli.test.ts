/**
 * `deskgate websockify …` as users run it (the built dist/cli.js): websockify's command line
 * translated into deskgate's configuration, its refusals with what to use instead, and
 * gateways started from it reached by raw WebSocket clients that send no query, as noVNC's
 * vnc.html does, over TCP, TLS and Unix-socket targets.
 */
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WEBSOCKIFY_FLAGS } from '../../src/cli/websockify.js';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { runDeskgate, spawnDeskgate, waitHealthy, type DeskgateProcess, type SpawnOptions } from '../helpers/cli-process.js';
import { send } from '../helpers/http-client.js';
import { freePort, waitFor, within } from '../helpers/processes.js';
import { makeCertificate } from '../helpers/tls.js';
import { closeOpenedSockets, connectWs, openDesktop, tryUpgrade, type UpgradeOptions } from '../helpers/ws-client.js';

/** Every option of websockify's parser (websockify/websocketproxy.py), long form. */
const WEBSOCKIFY_OPTIONS = [
  'verbose',
  'traffic',
  'record',
  'daemon',
  'run-once',
  'timeout',
  'idle-timeout',
  'cert',
  'key',
  'key-password',
  'ssl-only',
  'ssl-target',
  'verify-client',
  'cafile',
  'ssl-version',
  'ssl-ciphers',
  'unix-target',
  'inetd',
  'web',
  'web-auth',
  'wrap-mode',
  'prefer-ipv6',
  'libserver',
  'target-config',
  'token-plugin',
  'token-source',
  'host-token',
  'auth-plugin',
  'auth-source',
  'heartbeat',
  'log-file',
  'syslog',
  'legacy-syslog',
];

const RFB_VERSION = 'RFB 003.008\n';

let demo: DemoDesktop;
let dir: string;
const started: DeskgateProcess[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  demo = await startDemoDesktop({ clock: false });
  dir = mkdtempSync(join(tmpdir(), 'deskgate-websockify-'));
});

afterEach(async () => {
  closeOpenedSockets();
  await Promise.all(started.splice(0).map((cli) => cli.stop()));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

afterAll(async () => {
  await demo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Websockify extends DeskgateProcess {
  readonly port: number;
  /** ws://127.0.0.1:PORT (wss:// with --cert) followed by `path`. */
  ws(path: string): string;
}

/** `deskgate websockify ARGS 127.0.0.1:PORT [TARGET…]` on a free port, once /healthz answers. */
async function websockify(args: string[], positionals: string[], options: SpawnOptions & { ca?: Buffer } = {}): Promise<Websockify> {
  const port = await freePort();
  const cli = spawnDeskgate(['websockify', ...args, `127.0.0.1:${port}`, ...positionals], options);
  started.push(cli);
  const scheme = options.ca ? 'https' : 'http';
  await waitHealthy(cli, `${scheme}://127.0.0.1:${port}/healthz`, options.ca && { ca: options.ca });
  return Object.assign(cli, { port, ws: (path: string) => `${options.ca ? 'wss' : 'ws'}://127.0.0.1:${port}${path}` });
}

/** The first bytes a WebSocket gets once open: a VNC server's greeting, through the gateway. */
async function greeting(url: string, options: UpgradeOptions = {}): Promise<string> {
  const answer = await tryUpgrade(url, options);
  if (!('client' in answer)) throw new Error(`upgrade refused with HTTP ${answer.status}: ${answer.body.trim()}`);
  return (await answer.client.nextMessage()).toString('latin1');
}

function write(name: string, text: string | Buffer): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A server on `listen` that passes each connection through to the demo desktop. */
async function passThrough(server: Server, listen: (server: Server) => void): Promise<Server> {
  servers.push(server);
  listen(server);
  await once(server, 'listening');
  return server;
}

function toDemo(client: Socket): void {
  const upstream = tcpConnect(demo.port, demo.host);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream).pipe(client);
}

describe('deskgate websockify: its command line', () => {
  it('--help lists every websockify flag with what it becomes', async () => {
    expect(WEBSOCKIFY_FLAGS.map((f) => f.flag).sort()).toEqual([...WEBSOCKIFY_OPTIONS].sort());
    const cli = await runDeskgate(['websockify', '--help']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^Usage: deskgate websockify \[options\] \[source_addr:\]source_port \[target_addr:target_port\]/);
    for (const flag of WEBSOCKIFY_OPTIONS) expect(cli.stdout).toMatch(new RegExp(`^  (-\\w, )?--${flag}\\b.* {2,}\\S`, 'm'));
    for (const short of ['-v, --verbose', '-D, --daemon', '-6, --prefer-ipv6', '-h, --help', '-- COMMAND']) expect(cli.stdout).toContain(short);
    expect(cli.stdout).toContain('session.keepaliveMs');
    expect(cli.stdout).toContain('lifetime.exitAfterIdleMs');
    expect(cli.stdout).toContain('lifetime.acceptForMs');
    expect(cli.stdout).toContain("verified against the system's CAs");
    expect((await runDeskgate(['--help'])).stdout).toContain('deskgate websockify [options] [source_addr:]source_port [target_addr:target_port]');
  });

  it('lists every websockify flag in the README section', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf('## From websockify in one command');
    expect(start).toBeGreaterThan(0);
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    for (const flag of WEBSOCKIFY_OPTIONS) expect(section, flag).toContain(`\`--${flag}`);
  });

  // Each refused flag names itself and what to use instead, and exits 2 before anything listens.
  it.each([
    [['--daemon'], '--daemon', 'contrib/deskgate.service'],
    [['-D'], '-D (--daemon)', 'contrib/deskgate.service'],
    [['--run-once'], '--run-once', '--idle-timeout'],
    [['--inetd'], '--inetd', 'systemd'],
    [['--web-auth'], '--web-auth', '--auth password --users FILE'],
    [['--auth-plugin', 'BasicHTTPAuth'], '--auth-plugin', '--auth password --users FILE'],
    [['--auth-source=alice:secret'], '--auth-source', '--auth header'],
    [['--host-token'], '--host-token', '?token='],
    [['--verify-client'], '--verify-client', 'nginx or haproxy'],
    [['--cafile', 'ca.pem'], '--cafile', '--auth header'],
    [['--ssl-version', 'tlsv1_2'], '--ssl-version', 'TLS 1.2 and later'],
    [['--ssl-ciphers=HIGH'], '--ssl-ciphers', 'TLS 1.2 and later'],
    [['--key-password', 'pw'], '--key-password', 'permissions'],
    [['--traffic'], '--traffic', '--metrics-listen'],
    [['--log-file', 'ws.log'], '--log-file', 'standard output'],
    [['--syslog', '/dev/log'], '--syslog', 'journald'],
    [['--legacy-syslog'], '--legacy-syslog', 'standard output'],
    [['--wrap-mode', 'respawn'], '--wrap-mode', 'does not start programs'],
    [['--libserver'], '--libserver', 'not needed'],
    [['--prefer-ipv6'], '--prefer-ipv6', '[::]:6080'],
    [['-6'], '-6 (--prefer-ipv6)', '[::]:6080'],
  ])('refuses %j, naming %s and its replacement', async (args, named, instead) => {
    const cli = await runDeskgate(['websockify', ...args, '127.0.0.1:6080', 'localhost:5900']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(`websockify's ${named} is not supported`);
    expect(cli.stderr).toContain(instead);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
  });

  it.each([
    [['127.0.0.1:6080', '--', 'Xvnc', ':1'], "websockify's -- COMMAND is not supported: deskgate does not start programs"],
    [['--token-plugin', 'JSONTokenApi', '--token-source', 'http://console/api/', '127.0.0.1:6080'], 'gateway.addDesktop'],
    [['--token-plugin', 'websockify.token_plugins.TokenRedis', '--token-source', 'redis:6379', '127.0.0.1:6080'], 'write a token file'],
    [['--token-plugin', 'JWTTokenApi', '--token-source', 'key.pem', '127.0.0.1:6080'], '?ticket='],
    [['--token-plugin', 'UnixDomainSocketDirectory', '--token-source', '/run/vnc', '127.0.0.1:6080'], 'unix_socket:/path/to/socket'],
    [['--token-plugin', 'mycompany.plugins.Lookup', '--token-source', 'x', '127.0.0.1:6080'], 'runs no Python plugins'],
    [['--token-plugin', 'TokenFile', '127.0.0.1:6080'], '--token-plugin TokenFile needs --token-source'],
    [['--token-source', 'tokens', '127.0.0.1:6080'], '--token-source needs --token-plugin'],
    [['--ssl-target', '--token-plugin', 'TokenFile', '--token-source', 'tokens', '127.0.0.1:6080'], 'vnc: { tls: tls-first }'],
    [['--record', 'rec', '--token-plugin', 'TokenFile', '--token-source', 'tokens', '127.0.0.1:6080'], 'each with record: true'],
    [['--ssl-only', '127.0.0.1:6080', 'localhost:5900'], '--ssl-only needs --cert FILE'],
    [['--key', 'key.pem', '127.0.0.1:6080', 'localhost:5900'], '--key needs --cert FILE'],
    [['--listen', '127.0.0.1:7000', '127.0.0.1:6080', 'localhost:5900'], 'the source 127.0.0.1:6080 and --listen set the same thing'],
    [['-v', '--log-level', 'warn', '127.0.0.1:6080', 'localhost:5900'], '--verbose and --log-level set the same thing'],
    [['--heartbeat', 'often', '127.0.0.1:6080', 'localhost:5900'], '--heartbeat: got "often"; expected a whole number of seconds'],
    [['--idle-timeout=-1', '127.0.0.1:6080', 'localhost:5900'], '--idle-timeout: got "-1"'],
    [['--bogus', '127.0.0.1:6080', 'localhost:5900'], 'unknown flag --bogus (see deskgate websockify --help)'],
  ])('refuses %j: %s', async (args, message) => {
    const cli = await runDeskgate(['websockify', ...args]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(message);
  });

  it.each([
    [[], 'too few arguments: expected [source_addr:]source_port'],
    [['127.0.0.1:6080'], 'too few arguments: expected target_addr:target_port'],
    [['127.0.0.1:6080', 'localhost:5900', 'extra'], 'too many arguments: "extra"'],
    [['--token-plugin', 'TokenFile', '--token-source', 't', '127.0.0.1:6080', 'localhost:5900'], 'too many arguments: "localhost:5900"; --token-plugin'],
    [['sixty', 'localhost:5900'], 'the source "sixty": expected [source_addr:]source_port'],
    [['127.0.0.1:70000', 'localhost:5900'], 'the source "127.0.0.1:70000"'],
    [['[::1]:x', 'localhost:5900'], 'the source "[::1]:x"'],
    [['127.0.0.1:6080', 'localhost'], 'the target "localhost": expected target_addr:target_port'],
    [['127.0.0.1:6080', 'localhost:0'], 'the target "localhost:0"'],
    [['127.0.0.1:6080', 'bad host:5900'], 'the target "bad host:5900"'],
  ])('refuses the arguments %j: %s', async (args, message) => {
    const cli = await runDeskgate(['websockify', ...args]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(message);
  });

  it('refuses a bare source port without authentication, saying so and giving the remedies', async () => {
    for (const source of ['6080', ':6080']) {
      const cli = await runDeskgate(['websockify', source, 'localhost:5900']);
      expect(cli.code).toBe(2);
      expect(cli.stderr).toContain('listens on every interface (0.0.0.0:6080)');
      for (const remedy of ['127.0.0.1:6080', '--auth password --users FILE', '--auth header', '--insecure-no-auth']) expect(cli.stderr).toContain(remedy);
    }
    // Written out, the address gets deskgate's own refusal.
    const written = await runDeskgate(['websockify', '0.0.0.0:6080', 'localhost:5900']);
    expect(written.code).toBe(2);
    expect(written.stderr).toContain('listening on 0.0.0.0 without authentication');
  });
});

describe('deskgate websockify: a gateway', () => {
  it('opens the single target for a WebSocket with no query, on /websockify and on any other path', async () => {
    const gateway = await websockify([], [`127.0.0.1:${demo.port}`]);
    expect(await greeting(gateway.ws('/websockify'))).toBe(RFB_VERSION);
    expect(await greeting(gateway.ws('/'))).toBe(RFB_VERSION);
    expect(await greeting(gateway.ws('/some/other/path'))).toBe(RFB_VERSION);
    const session = await openDesktop(gateway.ws('/websockify'));
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
    expect((await session.nextMessage()).length).toBeGreaterThan(0);
    // SIGHUP reads the same command line again: the target is still there.
    gateway.child.kill('SIGHUP');
    await waitFor(() => gateway.stdout().includes('reloaded'), 'the reload to be logged');
    expect(gateway.stderr()).not.toContain('reload failed');
    expect(await greeting(gateway.ws('/websockify'))).toBe(RFB_VERSION);
    // SIGTERM closes the open session with 1001 and exits 0.
    gateway.child.kill('SIGTERM');
    expect((await session.closed).code).toBe(1001);
    expect(await gateway.exited).toBe(0);
  });

  it('runs with every interface when the bare port comes with --insecure-no-auth, and listens on [::1]', async () => {
    const port = await freePort();
    const all = spawnDeskgate(['websockify', '--insecure-no-auth', String(port), `127.0.0.1:${demo.port}`]);
    started.push(all);
    await waitHealthy(all, `http://127.0.0.1:${port}/healthz`);
    expect(await greeting(`ws://127.0.0.1:${port}/websockify`)).toBe(RFB_VERSION);
    await all.stop();
    const v6 = spawnDeskgate(['websockify', `[::1]:${port}`, `127.0.0.1:${demo.port}`]);
    started.push(v6);
    const opens = async (): Promise<boolean> => v6.running() && (await greeting(`ws://[::1]:${port}/websockify`).catch(() => '')) === RFB_VERSION;
    await waitFor(opens, 'a session through [::1]');
    expect(v6.stdout()).toContain('::1');
  });

  it('serves HTTPS and WSS from --cert alone, a combined PEM holding certificate and key; -v logs at debug level', async () => {
    const { cert, key } = makeCertificate('ec');
    const pem = write('self.pem', Buffer.concat([cert, key]));
    const gateway = await websockify(['--cert', pem, '--ssl-only', '-v'], [`127.0.0.1:${demo.port}`], { ca: cert });
    expect((await send(`https://127.0.0.1:${gateway.port}/healthz`, { ca: cert })).status).toBe(200);
    expect(await greeting(gateway.ws('/websockify'), { ca: cert })).toBe(RFB_VERSION);
    // TLS only: a plain HTTP request on the port gets no answer, and the failed handshake is a debug line.
    await expect(send(`http://127.0.0.1:${gateway.port}/healthz`)).rejects.toThrow();
    await waitFor(() => gateway.stdout().includes('TLS handshake failed'), 'the debug line of the failed handshake');
  });

  it('--ssl-target speaks TLS to the target and verifies its certificate', async () => {
    const { cert, key } = makeCertificate('ec');
    const tlsVnc = await passThrough(createTlsServer({ cert, key }, toDemo), (s) => s.listen(0, '127.0.0.1'));
    const target = `127.0.0.1:${(tlsVnc.address() as { port: number }).port}`;
    const trusted = await websockify(['--ssl-target'], [target], { env: { NODE_EXTRA_CA_CERTS: write('vnc-ca.pem', cert) } });
    const session = await openDesktop(trusted.ws('/websockify'));
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
    expect((await session.nextMessage()).length).toBeGreaterThan(0);
    // Without the CA, the self-signed certificate is refused.
    const untrusting = await websockify(['--ssl-target'], [target]);
    const refused = connectWs(untrusting.ws('/websockify'));
    expect((await within(10_000, 'the session to close', refused.closed)).code).toBe(4502);
  });

  it('--heartbeat N pings the browser every N seconds', async () => {
    const gateway = await websockify(['--heartbeat', '1'], [`127.0.0.1:${demo.port}`]);
    const client = await openDesktop(gateway.ws('/websockify')); // pings start once the session relays
    const pings: number[] = [];
    client.ws.on('ping', () => pings.push(Date.now()));
    await waitFor(() => pings.length >= 2, 'two pings', 4_000);
    expect((pings[1] as number) - (pings[0] as number)).toBeGreaterThan(800);
  });

  it('--idle-timeout N exits once no session has been open for N seconds', async () => {
    const gateway = await websockify(['--idle-timeout', '2'], [`127.0.0.1:${demo.port}`]);
    const session = await openDesktop(gateway.ws('/websockify'));
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(gateway.running()).toBe(true); // a session is open
    session.ws.close();
    const closedAt = Date.now();
    expect(await within(6_000, 'the gateway to exit', gateway.exited)).toBe(0);
    expect(Date.now() - closedAt).toBeGreaterThan(1_500);
  });

  it('--timeout N takes new sessions for N seconds, lets the open one finish, then exits', async () => {
    const gateway = await websockify(['--timeout', '2'], [`127.0.0.1:${demo.port}`]);
    const session = await openDesktop(gateway.ws('/websockify'));
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await expect(tryUpgrade(gateway.ws('/websockify'))).rejects.toThrow(/ECONNREFUSED/);
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
    expect((await session.nextMessage()).length).toBeGreaterThan(0);
    expect(gateway.running()).toBe(true);
    session.ws.close();
    expect(await within(6_000, 'the gateway to exit', gateway.exited)).toBe(0);
  });

  it('--token-plugin TokenFile --token-source DIR opens ?token= desktops, and no other', async () => {
    const tokens = join(dir, 'tokens');
    mkdirSync(tokens, { recursive: true });
    writeFileSync(join(tokens, 'lab.cfg'), `lab1: 127.0.0.1:${demo.port}\n`);
    const gateway = await websockify(['--token-plugin', 'TokenFile', '--token-source', tokens], []);
    expect(await greeting(gateway.ws('/websockify?token=lab1'))).toBe(RFB_VERSION);
    expect(await greeting(gateway.ws('/?token=lab1'))).toBe(RFB_VERSION);
    expect((await tryUpgrade(gateway.ws('/websockify?token=nope'))).status).toBe(404);
    // A token written while it runs.
    writeFileSync(join(tokens, 'more.cfg'), `lab2: 127.0.0.1:${demo.port}\n`);
    expect(await greeting(gateway.ws('/websockify?token=lab2'))).toBe(RFB_VERSION);
  });

  it('--target-config FILE and the dotted websockify.token_plugins.ReadOnlyTokenFile read the same token file', async () => {
    const file = write('targets.cfg', `# console\nlab3: 127.0.0.1:${demo.port}\n`);
    const deprecated = await websockify(['--target-config', file], []);
    expect(await greeting(deprecated.ws('/websockify?token=lab3'))).toBe(RFB_VERSION);
    const dotted = await websockify(['--token-plugin=websockify.token_plugins.ReadOnlyTokenFile', `--token-source=${file}`], []);
    expect(await greeting(dotted.ws('/websockify?token=lab3'))).toBe(RFB_VERSION);
  });

  it('--token-plugin TokenFileName reads a directory whose file names are the tokens', async () => {
    const tokens = join(dir, 'by-name');
    mkdirSync(tokens, { recursive: true });
    writeFileSync(join(tokens, 'lab4'), `127.0.0.1:${demo.port}\n`);
    const gateway = await websockify(['--token-plugin', 'TokenFileName', '--token-source', tokens], []);
    expect(await greeting(gateway.ws('/websockify?token=lab4'))).toBe(RFB_VERSION);
  });

  it('--unix-target FILE reaches a VNC server on a Unix socket', async () => {
    const socket = join(dir, 'vnc.sock');
    await passThrough(createTcpServer(toDemo), (s) => s.listen(socket));
    const gateway = await websockify(['--unix-target', socket], []);
    expect(await greeting(gateway.ws('/websockify'))).toBe(RFB_VERSION);
  });

  it("--record FILE records each session of the target in FILE's directory, one file per session", async () => {
    const recordings = join(dir, 'recordings');
    mkdirSync(recordings, { recursive: true });
    const gateway = await websockify(['--record', join(recordings, 'session')], [`127.0.0.1:${demo.port}`]);
    const session = await openDesktop(gateway.ws('/websockify'));
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 8, height: 8 }, false));
    await session.nextMessage();
    session.ws.close();
    await waitFor(() => readdirSync(recordings).some((f) => f.endsWith('.dgrec')), 'the recording');
    expect(
      readFileSync(join(recordings, readdirSync(recordings)[0] as string))
        .subarray(0, 5)
        .toString(),
    ).toBe('DGREC');
  });

  it('--web DIR serves the directory beside the gateway, as noVNC vnc.html is served', async () => {
    const web = join(dir, 'web');
    mkdirSync(web, { recursive: true });
    writeFileSync(join(web, 'vnc.html'), '<title>noVNC</title>\n');
    const gateway = await websockify(['--web', web], [`127.0.0.1:${demo.port}`]);
    const page = await send(`http://127.0.0.1:${gateway.port}/vnc.html`);
    expect(page.status).toBe(200);
    expect(page.body).toBe('<title>noVNC</title>\n');
  });
});
