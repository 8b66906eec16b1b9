import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ProxyTrust } from '../../src/auth/proxy.js';
import { flagsOf, OPTIONS, optionsHelp, type Option } from '../../src/config/options.js';
import { ConfigError, FileError, parseConfig } from '../../src/config/schema.js';
import { loadConfig, parseFlags, readOperatorFile } from '../../src/config/sources.js';
import { TargetPolicy } from '../../src/desktops/targets.js';
import { formatAddress } from '../../src/net/address.js';

/** `{ a: { b: value } }` for the key a.b. */
function withKey(key: readonly string[], value: unknown): Record<string, unknown> {
  return key.reduceRight<Record<string, unknown>>((inner, name) => ({ [name]: inner }), value as Record<string, unknown>);
}

function errorOf(raw: unknown): string {
  try {
    parseConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the configuration to be refused');
}

describe('configuration', () => {
  it('defaults to loopback port 6080 and the demo desktop when nothing is configured', () => {
    const config = parseConfig({});
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 6080 });
    expect(config.demo).toBe(true);
    expect(config.desktops).toEqual([]);
    expect(config.session.connectTimeoutMs).toBe(5000);
    expect(config.session.maxMessageBytes).toBe(1024 * 1024);
  });

  it('turns the demo off by default once desktops are configured, and on again when asked', () => {
    expect(parseConfig({ desktops: ['lab1=10.0.0.5:5901'] }).demo).toBe(false);
    expect(parseConfig({ desktops: ['lab1=10.0.0.5:5901'], demo: true }).demo).toBe(true);
  });

  it('accepts desktops as NAME=HOST:PORT or as objects, IPv6 in brackets', () => {
    const config = parseConfig({
      desktops: ['lab1=10.0.0.5:5901', 'v6=[::1]:5902', { name: 'lab3', host: 'vnc.example.org', port: 5900, description: 'Lab 3' }],
    });
    expect(config.desktops).toEqual([
      { name: 'lab1', host: '10.0.0.5', port: 5901, sharing: 'shared' },
      { name: 'v6', host: '::1', port: 5902, sharing: 'shared' },
      { name: 'lab3', host: 'vnc.example.org', port: 5900, description: 'Lab 3', sharing: 'shared' },
    ]);
  });

  it('freezes the result so nothing can change it after start-up', () => {
    const config = parseConfig({ desktops: ['lab1=10.0.0.5:5901'] });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.desktops[0])).toBe(true);
    expect(Object.isFrozen(config.session)).toBe(true);
  });

  it('names the key, its flag and variable, the value and what is expected', () => {
    const message = errorOf({ listen: 'localhost' });
    expect(message).toContain('listen (--listen, DESKGATE_LISTEN)');
    expect(message).toContain('got "localhost"');
    expect(message).toContain('expected HOST:PORT');
  });

  it('names the index of a bad desktop and the value it got', () => {
    const message = errorOf({ desktops: ['lab1=10.0.0.5:5901', 'lab2=10.0.0.6:99999'] });
    expect(message).toContain('desktops[1]');
    expect(message).toContain('lab2=10.0.0.6:99999');
    expect(message).toContain('expected NAME=HOST:PORT');
  });

  it('refuses a port out of range in an object desktop', () => {
    const message = errorOf({ desktops: [{ name: 'lab1', host: '10.0.0.5', port: 70000 }] });
    expect(message).toContain('desktops[0].port: got 70000; expected a port number from 1 to 65535');
  });

  it('refuses bad desktop names, duplicates, and a desktop named like the demo while the demo is on', () => {
    expect(errorOf({ desktops: ['../x=10.0.0.5:5901'] })).toContain('desktops[0].name');
    expect(errorOf({ desktops: ['a=10.0.0.5:1', 'a=10.0.0.6:2'] })).toContain("desktop name 'a' is used twice");
    expect(errorOf({ desktops: ['demo=10.0.0.5:1'], demo: true })).toContain("needs the name 'demo'");
  });

  it('refuses numeric host spellings that resolvers would turn into addresses', () => {
    for (const host of ['2130706433', '0x7f000001', '0177.0.0.1', '127.1']) {
      expect(errorOf({ desktops: [`x=${host}:5900`] })).toContain('desktops[0]');
    }
  });

  it('refuses unknown keys, naming them', () => {
    expect(errorOf({ lisen: '127.0.0.1:1' })).toMatch(/lisen/);
    expect(errorOf({ session: { idleTimeout: 5 } })).toMatch(/idleTimeout/);
  });

  it('validates allow rules: CIDR and port range', () => {
    const config = parseConfig({
      targets: {
        allow: [
          { cidr: '10.0.0.0/24', ports: '5900-5999' },
          { cidr: 'fd00::/64', ports: 5901 },
        ],
      },
    });
    expect(config.targets.allow[0]).toEqual({ cidr: '10.0.0.0/24', ports: { from: 5900, to: 5999 } });
    expect(config.targets.allow[1]?.ports).toEqual({ from: 5901, to: 5901 });
    expect(errorOf({ targets: { allow: [{ cidr: '10.0.0.0/33', ports: 1 }] } })).toContain('targets.allow[0].cidr');
    expect(errorOf({ targets: { allow: [{ cidr: '10.0.0.0/8', ports: '6000-5900' }] } })).toContain('targets.allow[0].ports');
  });

  it('accepts a desktop on a Unix socket, as socket: or NAME=unix:/PATH, its path normalised', () => {
    const config = parseConfig({ desktops: ['lab1=unix:/run/vnc/lab1.sock', { name: 'lab2', socket: '/run//vnc/x/../lab2.sock/', description: 'Lab 2' }] });
    expect(config.desktops).toEqual([
      { name: 'lab1', socket: '/run/vnc/lab1.sock', sharing: 'shared' },
      { name: 'lab2', socket: '/run/vnc/lab2.sock', description: 'Lab 2', sharing: 'shared' },
    ]);
  });

  it('takes host and port, or socket: exactly one form, naming the key that is wrong', () => {
    expect(errorOf({ desktops: [{ name: 'a', host: '10.0.0.5', port: 5901, socket: '/run/a.sock' }] })).toContain(
      'desktops[0].host: got "10.0.0.5"; set either socket or host and port, not both',
    );
    expect(errorOf({ desktops: [{ name: 'a', port: 5901, socket: '/run/a.sock' }] })).toContain(
      'desktops[0].port: got 5901; set either socket or host and port, not both',
    );
    expect(errorOf({ desktops: [{ name: 'a' }] })).toContain('desktops[0].host: got nothing; expected host and port, or socket (the path of a Unix socket)');
    expect(errorOf({ desktops: [{ name: 'a', host: '10.0.0.5' }] })).toContain('desktops[0].port: got nothing; expected a port number from 1 to 65535');
    expect(errorOf({ desktops: [{ name: 'a', port: 5901 }] })).toContain('desktops[0].host: got nothing; expected host and port, or socket');
  });

  it('refuses socket paths that are relative, hold a NUL byte or are longer than sun_path (107 bytes)', () => {
    expect(errorOf({ desktops: [{ name: 'a', socket: 'run/a.sock' }] })).toContain(
      'desktops[0].socket: got "run/a.sock"; expected the absolute path of a Unix socket, e.g. /run/vnc/lab.sock',
    );
    expect(errorOf({ desktops: ['a=unix:relative.sock'] })).toContain('desktops[0].socket: got "relative.sock"; expected the absolute path');
    expect(errorOf({ desktops: [{ name: 'a', socket: '/run/a\0.sock' }] })).toContain(
      'desktops[0].socket: got "/run/a\\u0000.sock"; a Unix socket path cannot hold a NUL byte',
    );
    expect(errorOf({ desktops: [{ name: 'a', socket: `/${'s'.repeat(107)}` }] })).toContain(
      'a Unix socket path holds at most 107 bytes (sun_path); this one has 108',
    );
    expect(parseConfig({ desktops: [{ name: 'a', socket: `/${'s'.repeat(106)}` }] }).desktops[0]).toMatchObject({ socket: `/${'s'.repeat(106)}` });
  });

  it('names both short forms and the object form when a desktop fits none', () => {
    expect(errorOf({ desktops: ['lab1'] })).toContain('desktops[0] (--desktop, DESKGATE_DESKTOP): got "lab1"; expected NAME=HOST:PORT or NAME=unix:/PATH');
    expect(errorOf({ desktops: [7] })).toContain('expected NAME=HOST:PORT, NAME=unix:/PATH, or an object with name, host and port (or socket)');
  });

  it('asks a socket desktop whose TLS certificate is checked by name for vnc.serverName', () => {
    for (const vnc of [{ tls: 'tls-first' }, { tls: 'vencrypt', ca: '/ca.pem' }]) {
      expect(errorOf({ desktops: [{ name: 'a', socket: '/run/a.sock', vnc }] }), vnc.tls).toContain(
        "desktops[0].vnc.serverName: got nothing; a Unix socket has no host name for the server's certificate to carry",
      );
    }
    for (const vnc of [
      { tls: 'tls-first', serverName: 'vnc.lab.example' },
      { tls: 'tls-first', fingerprint: `sha256:${'AB:'.repeat(31)}AB` },
      { tls: 'none' },
    ]) {
      expect(parseConfig({ desktops: [{ name: 'a', socket: '/run/a.sock', vnc }] }).desktops[0]?.vnc?.tls).toBe(vnc.tls);
    }
  });

  it('validates unix allow rules: an absolute directory, normalised, each rule one form', () => {
    const config = parseConfig({ targets: { allow: [{ unix: '/run/vnc/' }, { cidr: '10.0.0.0/24', ports: 5900 }] } });
    expect(config.targets.allow).toEqual([{ unix: '/run/vnc' }, { cidr: '10.0.0.0/24', ports: { from: 5900, to: 5900 } }]);
    const policy = new TargetPolicy(config.targets.allow);
    expect(policy.allowsSocket('/run/vnc/lab.sock')).toBe(true);
    expect(policy.allowsSocket('/run/lab.sock')).toBe(false);
    expect(errorOf({ targets: { allow: [{ unix: 'run/vnc' }] } })).toContain('targets.allow[0].unix: got "run/vnc"; expected the absolute path of a directory');
    expect(errorOf({ targets: { allow: [{ unix: '/run/vnc', ports: 5900 }] } })).toMatch(/targets\.allow\[0\]: .*Unrecognized key: "ports"/);
    expect(errorOf({ targets: { allow: ['/run/vnc'] } })).toContain('targets.allow[0]: got "/run/vnc"; expected a rule {cidr, ports} or {unix: DIRECTORY}');
  });

  it('refuses timeouts and sizes outside their bounds, naming the bound', () => {
    expect(errorOf({ session: { connectTimeoutMs: 5 } })).toContain(
      'session.connectTimeoutMs (--connect-timeout-ms, DESKGATE_CONNECT_TIMEOUT_MS): got 5; expected a number of milliseconds, at least 100',
    );
    expect(errorOf({ session: { maxMessageBytes: 'big' } })).toContain('session.maxMessageBytes (--max-message-bytes, DESKGATE_MAX_MESSAGE_BYTES): got "big"');
    expect(errorOf({ session: { keepaliveMs: 500 } })).toContain(
      'session.keepaliveMs (--keepalive-ms, DESKGATE_KEEPALIVE_MS): got 500; expected 0 (no pings) or a whole number of milliseconds, at least 1000',
    );
    expect(parseConfig({ session: { keepaliveMs: 0 } }).session.keepaliveMs).toBe(0);
    expect(errorOf({ log: { level: 'loud' } })).toContain('log.level (--log-level, DESKGATE_LOG_LEVEL): got "loud"');
  });
  it('normalises allowed origins and refuses anything that is not just an origin', () => {
    expect(parseConfig({ allowedOrigins: ['https://Console.Example.com:443/'] }).allowedOrigins).toEqual(['https://console.example.com']);
    expect(errorOf({ allowedOrigins: ['https://console.example.com/path'] })).toContain(
      'allowedOrigins[0] (--allowed-origin, DESKGATE_ALLOWED_ORIGIN): got "https://console.example.com/path"; expected an origin',
    );
    expect(errorOf({ allowedOrigins: ['console.example.com'] })).toContain('allowedOrigins[0]');
    expect(errorOf({ requireOrigin: 'yes' })).toContain('requireOrigin (--require-origin, DESKGATE_REQUIRE_ORIGIN): got "yes"; expected true or false');
  });
  it('bounds the session limits', () => {
    expect(parseConfig({}).limits).toEqual({ maxSessions: 10_000, maxSessionsPerAddress: 100, maxSessionsPerUser: 20 });
    expect(errorOf({ limits: { maxSessions: 0 } })).toContain(
      'limits.maxSessions (--max-sessions, DESKGATE_MAX_SESSIONS): got 0; expected a whole number from 1 to 1000000',
    );
    expect(errorOf({ session: { maxDurationMs: 10 } })).toContain('session.maxDurationMs');
  });
});

describe('authentication settings', () => {
  it('refuses auth.mode none beyond loopback, naming auth.mode and how to set it', () => {
    for (const listen of ['0.0.0.0:0', '[::]:6080', '10.0.0.5:6080']) {
      const message = errorOf({ listen });
      expect(message, listen).toContain('auth.mode (--auth, DESKGATE_AUTH): got "none"');
      expect(message, listen).toContain('auth.insecureNoAuth (--insecure-no-auth)');
    }
  });

  it('refuses to trust every address as a proxy', () => {
    for (const cidr of ['0.0.0.0/0', '::/0'])
      expect(errorOf({ trustProxy: ['10.0.0.0/8', cidr] })).toContain(
        `trustProxy[1] (--trust-proxy, DESKGATE_TRUST_PROXY): got "${cidr}"; trusting every address`,
      );
    expect(parseConfig({ trustProxy: ['10.0.0.0/8', '::1/128'] }).trustProxy).toEqual(['10.0.0.0/8', '::1/128']);
  });

  // trustProxy ['::ffff:127.0.0.2/128'] used to pass validation, then stop start-up with 'Invalid socket address'.
  it('accepts IPv4-mapped IPv6 blocks as the IPv4 blocks they are, which the gateway can then start with', () => {
    const config = parseConfig({ trustProxy: ['::ffff:127.0.0.2/128'], targets: { allow: [{ cidr: '::ffff:7f00:0/104', ports: 5900 }] } });
    expect(config.trustProxy).toEqual(['127.0.0.2/32']);
    expect(config.targets.allow[0]?.cidr).toBe('127.0.0.0/8');
    const trust = new ProxyTrust(config.trustProxy);
    expect(trust.trusts('127.0.0.2')).toBe(true);
    expect(trust.trusts('::ffff:127.0.0.2')).toBe(true);
    expect(trust.trusts('127.0.0.3')).toBe(false);
    const policy = new TargetPolicy(config.targets.allow);
    expect(policy.allows('::ffff:127.0.0.9', 5900, 6080)).toBe(true);
    expect(policy.allows('128.0.0.1', 5900, 6080)).toBe(false);
  });

  it('refuses an IPv4-mapped block shorter than /96, saying what to write instead, and one that trusts all of IPv4', () => {
    expect(errorOf({ trustProxy: ['::ffff:10.0.0.0/80'] })).toContain(
      'trustProxy[0] (--trust-proxy, DESKGATE_TRUST_PROXY): got "::ffff:10.0.0.0/80"; an IPv4-mapped block',
    );
    expect(errorOf({ targets: { allow: [{ cidr: '::ffff:0:0/64', ports: 1 }] } })).toMatch(/targets\.allow\[0\]\.cidr: got .*write .*0\.0\.0\.0\/0/);
    expect(errorOf({ trustProxy: ['::ffff:0.0.0.0/96'] })).toContain('trusting every address');
  });

  it('accepts auth.mode none beyond loopback with insecureNoAuth, and on loopback without it', () => {
    expect(parseConfig({ listen: '0.0.0.0:0', auth: { insecureNoAuth: true } }).auth.mode).toBe('none');
    for (const listen of ['127.0.0.1:0', 'localhost:6080', '[::1]:6080']) expect(parseConfig({ listen }).auth.mode, listen).toBe('none');
  });

  it('accepts password and header mode beyond loopback, each with what it needs', () => {
    expect(parseConfig({ listen: '0.0.0.0:0', auth: { mode: 'password', usersFile: 'users.yaml' } }).auth.mode).toBe('password');
    expect(parseConfig({ listen: '0.0.0.0:0', auth: { mode: 'header' }, trustProxy: ['10.0.0.0/8'] }).auth.userHeader).toBe('x-forwarded-user');
    expect(errorOf({ auth: { mode: 'password' } })).toContain('auth.usersFile (--users, DESKGATE_USERS)');
    expect(errorOf({ auth: { mode: 'header' } })).toContain(
      'trustProxy (--trust-proxy, DESKGATE_TRUST_PROXY): got []; auth.mode header needs the addresses of the proxies',
    );
  });

  it('refuses short secrets without showing them, and ticket settings that cannot work together', () => {
    const short = errorOf({ auth: { secret: 'hunter2' } });
    expect(short).toContain('auth.secret (DESKGATE_AUTH_SECRET): got (not shown); expected a secret of at least 32 characters');
    expect(short).not.toContain('hunter2');
    const secret = 'x'.repeat(32);
    expect(errorOf({ tickets: { secret, publicKeyFile: 'pub.pem' } })).toContain('set either tickets.secret or tickets.publicKeyFile');
    expect(errorOf({ tickets: { apiKeys: [`sha256:${'0'.repeat(64)}`] } })).toContain('tickets.apiKeys');
    expect(errorOf({ tickets: { secret, apiKeys: ['dgk_plain_key'] } })).toContain(
      'tickets.apiKeys[0] (--api-key-hash, DESKGATE_API_KEY_HASH): got "dgk_plain_key"; expected sha256:',
    );
    expect(errorOf({ tickets: { secret, defaultTtlSeconds: 600 } })).toContain('tickets.defaultTtlSeconds');
  });
});

describe('configuration sources', () => {
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A config file in the temporary directory holding this YAML. */
  function configFile(yaml: string): string {
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, yaml);
    return file;
  }

  it('takes a flag over its variable, and the variable over the config file', async () => {
    const config = configFile('listen: 127.0.0.1:1001\nlog: { level: warn }\nauth: { maxFailedLogins: 7 }\n');
    const env = { DESKGATE_CONFIG: config, DESKGATE_LISTEN: '127.0.0.1:1002', DESKGATE_LOG_LEVEL: 'debug', DESKGATE_AUTH: 'none' };
    expect((await loadConfig({}, env)).listen.port).toBe(1002);
    const flagged = await loadConfig({ listen: '127.0.0.1:1003', 'log-level': 'trace' }, env);
    expect(flagged.listen.port).toBe(1003);
    expect(flagged.log.level).toBe('trace');
    expect(flagged.auth.maxFailedLogins).toBe(7); // what the file put beside a key set by variable stays
    expect((await loadConfig({}, { DESKGATE_CONFIG: config })).log.level).toBe('warn');
  });

  it("adds desktops from --desktop, or else from the comma-separated DESKGATE_DESKTOP, to the file's", async () => {
    const config = configFile('desktops: [lab1=10.0.0.5:5901]\n');
    const names = async (flags: Record<string, string[]>, env: Record<string, string>) =>
      (await loadConfig({ config, ...flags }, env)).desktops.map((d) => d.name);
    expect(await names({}, { DESKGATE_DESKTOP: ' lab2=10.0.0.6:5900, lab3=10.0.0.7:5900,' })).toEqual(['lab1', 'lab2', 'lab3']);
    expect(await names({ desktop: ['lab4=10.0.0.8:5900', 'lab5=10.0.0.9:5900'] }, { DESKGATE_DESKTOP: 'lab2=10.0.0.6:5900' })).toEqual([
      'lab1',
      'lab4',
      'lab5',
    ]);
  });

  it('takes NAME=unix:/PATH desktops from --desktop and DESKGATE_DESKTOP', async () => {
    const addresses = async (flags: Record<string, string[]>, env: Record<string, string>) => (await loadConfig(flags, env)).desktops.map(formatAddress);
    expect(await addresses({}, { DESKGATE_DESKTOP: 'a=unix:/run/vnc/a.sock,b=10.0.0.6:5900' })).toEqual(['unix:/run/vnc/a.sock', '10.0.0.6:5900']);
    expect(await addresses({ desktop: ['c=unix:/run/vnc/c.sock'] }, {})).toEqual(['unix:/run/vnc/c.sock']);
  });

  it('reads booleans from the environment as true/false, 1/0, yes/no, on/off, and names any other word', async () => {
    for (const [word, value] of [
      ['true', true],
      ['1', true],
      ['YES', true],
      ['on', true],
      ['false', false],
      ['0', false],
      ['no', false],
      ['Off', false],
    ] as const) {
      expect((await loadConfig({}, { DESKGATE_DEMO: word })).demo, word).toBe(value);
      expect((await loadConfig({}, { DESKGATE_INSECURE_NO_AUTH: word })).auth.insecureNoAuth, word).toBe(value);
    }
    expect((await loadConfig({ demo: false }, { DESKGATE_DEMO: 'yes' })).demo).toBe(false);
    await expect(loadConfig({}, { DESKGATE_INSECURE_NO_AUTH: 'maybe' })).rejects.toThrow(
      'auth.insecureNoAuth (--insecure-no-auth, DESKGATE_INSECURE_NO_AUTH): got "maybe"; expected true or false',
    );
  });

  it('reads numbers from flags and variables, the flag first, over the file', async () => {
    const config = configFile('limits: { maxSessions: 7, maxSessionsPerUser: 3 }\n');
    const loaded = await loadConfig(
      { config, 'max-sessions': '50', 'idle-timeout-ms': '60000', 'keepalive-ms': '0' },
      {
        DESKGATE_MAX_SESSIONS: '40',
        DESKGATE_MAX_SESSIONS_PER_ADDRESS: ' 12 ',
        DESKGATE_TICKET_MAX_TTL_SECONDS: '600',
        DESKGATE_HTTP_MAX_HEADER_BYTES: '32768',
      },
    );
    expect(loaded.limits).toEqual({ maxSessions: 50, maxSessionsPerAddress: 12, maxSessionsPerUser: 3 });
    expect(loaded.session).toMatchObject({ idleTimeoutMs: 60_000, keepaliveMs: 0 });
    expect(loaded.tickets.maxTtlSeconds).toBe(600);
    expect(loaded.http.maxHeaderBytes).toBe(32_768);
  });

  it('refuses a number that is not one, or out of bounds, naming the flag, the variable, the value and what is expected', async () => {
    const named = 'limits.maxSessions (--max-sessions, DESKGATE_MAX_SESSIONS)';
    for (const [flags, env, got] of [
      [{ 'max-sessions': 'fifty' }, {}, '"fifty"'],
      [{ 'max-sessions': '' }, {}, '""'],
      [{}, { DESKGATE_MAX_SESSIONS: '0x10' }, '"0x10"'],
      [{}, { DESKGATE_MAX_SESSIONS: '1e3' }, '"1e3"'],
      [{}, { DESKGATE_MAX_SESSIONS: '10_000' }, '"10_000"'],
      [{}, { DESKGATE_MAX_SESSIONS: '2.5' }, '2.5'],
      [{}, { DESKGATE_MAX_SESSIONS: '-1' }, '-1'],
      [{ 'max-sessions': '0' }, {}, '0'],
    ] as const) {
      await expect(loadConfig(flags, env), got).rejects.toThrow(`${named}: got ${got}; expected a whole number from 1 to 1000000`);
    }
    await expect(loadConfig({}, { DESKGATE_IDLE_TIMEOUT_MS: '30m' })).rejects.toThrow(
      'session.idleTimeoutMs (--idle-timeout-ms, DESKGATE_IDLE_TIMEOUT_MS): got "30m"; expected a number of milliseconds, at least 1000',
    );
    await expect(loadConfig({ 'keepalive-ms': '500' }, {})).rejects.toThrow(
      'session.keepaliveMs (--keepalive-ms, DESKGATE_KEEPALIVE_MS): got 500; ', // the schema's union words what it expects
    );
    await expect(loadConfig({ 'max-message-bytes': '1' }, {})).rejects.toThrow(
      'session.maxMessageBytes (--max-message-bytes, DESKGATE_MAX_MESSAGE_BYTES): got 1; expected a number of bytes from 1024',
    );
  });

  it('configures header authentication from flags or variables alone, without a config file', async () => {
    const flagged = await loadConfig({ auth: 'header', 'trust-proxy': ['10.0.0.2/32', '::1/128'], 'user-header': 'X-Remote-User' }, {});
    expect(flagged.auth).toMatchObject({ mode: 'header', userHeader: 'x-remote-user', groupsHeader: 'x-forwarded-groups' });
    expect(flagged.trustProxy).toEqual(['10.0.0.2/32', '::1/128']);
    const fromEnv = await loadConfig(
      {},
      {
        DESKGATE_LISTEN: '0.0.0.0:6080',
        DESKGATE_AUTH: 'header',
        DESKGATE_TRUST_PROXY: '10.0.0.2/32, 10.0.0.3/32',
        DESKGATE_ALLOWED_ORIGIN: 'https://Console.example.com',
        DESKGATE_FRAME_ANCESTOR: 'https://portal.example.com',
        DESKGATE_REQUIRE_ORIGIN: 'yes',
        DESKGATE_PUBLIC_URL: 'https://desktops.example.com',
      },
    );
    expect(fromEnv).toMatchObject({
      trustProxy: ['10.0.0.2/32', '10.0.0.3/32'],
      allowedOrigins: ['https://console.example.com'],
      frameAncestors: ['https://portal.example.com'],
      requireOrigin: true,
      publicUrl: 'https://desktops.example.com',
    });
    await expect(loadConfig({ auth: 'header' }, {})).rejects.toThrow('trustProxy (--trust-proxy, DESKGATE_TRUST_PROXY): got []; auth.mode header needs');
    await expect(loadConfig({}, { DESKGATE_TRUST_PROXY: '10.0.0.0/8,0.0.0.0/0' })).rejects.toThrow(
      'trustProxy[1] (--trust-proxy, DESKGATE_TRUST_PROXY): got "0.0.0.0/0"; trusting every address',
    );
  });

  it('names a flag the parser refuses, and the command whose --help lists the flags', () => {
    const parse = (args: string[]) => () => parseArgs({ args, options: flagsOf(OPTIONS), strict: true, allowPositionals: false });
    expect(parseFlags(parse(['--max-sessions', '50', '--trust-proxy', '10.0.0.2/32', '--trust-proxy', '10.0.0.3/32'])).values).toEqual({
      'max-sessions': '50',
      'trust-proxy': ['10.0.0.2/32', '10.0.0.3/32'],
    });
    expect(() => parseFlags(parse(['--lisen', 'x']))).toThrow('unknown flag --lisen (see deskgate --help)');
    expect(() => parseFlags(parse(['--max-sessions', '-5']), 'deskgate ticket')).toThrow(
      '--max-sessions needs a value; write one that starts with a dash as --max-sessions=-… (see deskgate ticket --help)',
    );
  });

  it('takes secrets from the environment and hides them in errors', async () => {
    const secret = 's'.repeat(32);
    const config = await loadConfig({}, { DESKGATE_AUTH_SECRET: secret, DESKGATE_TICKET_SECRET: secret });
    expect([config.auth.secret, config.tickets.secret]).toEqual([secret, secret]);
    await expect(loadConfig({}, { DESKGATE_TICKET_SECRET: 'hunter2' })).rejects.toThrow('tickets.secret (DESKGATE_TICKET_SECRET): got (not shown)');
  });

  it('resolves file paths in a config file against its directory, and leaves those of flags and variables as given', async () => {
    const config = configFile(
      'auth: { usersFile: users.yaml }\ntls: { cert: tls/cert.pem, key: /etc/key.pem }\ntickets: { publicKeyFile: pub.pem, privateKeyFile: ../priv.pem }\n',
    );
    const fromFile = await loadConfig({ config }, {});
    expect(fromFile.auth.usersFile).toBe(join(dir, 'users.yaml'));
    expect(fromFile.tls).toEqual({ cert: join(dir, 'tls/cert.pem'), key: '/etc/key.pem' });
    expect(fromFile.tickets).toMatchObject({ publicKeyFile: join(dir, 'pub.pem'), privateKeyFile: join(dir, '../priv.pem') });
    const given = await loadConfig({ config, users: 'here.yaml' }, { DESKGATE_TLS_CERT: 'cert.pem' });
    expect(given.auth.usersFile).toBe('here.yaml');
    expect(given.tls?.cert).toBe('cert.pem');
  });

  it('says which config file cannot be read, or is not YAML, with a FileError', async () => {
    const missing = join(dir, 'missing.yaml');
    const unreadable = loadConfig({ config: missing }, {});
    await expect(unreadable).rejects.toThrow(`cannot read config file ${missing}: ENOENT`);
    await expect(unreadable).rejects.toMatchObject({ key: 'config file', path: missing, code: 'DG_ERR_FILE' });
    const broken = configFile('listen: [oops\n');
    const invalid = loadConfig({}, { DESKGATE_CONFIG: broken });
    await expect(invalid).rejects.toBeInstanceOf(FileError);
    await expect(invalid).rejects.toThrow(`config file ${broken} is not valid YAML`);
    // The parser quotes the broken line; the gateway does not pass that on, since it may hold a password.
    const leaky = configFile('desktops:\n  - name: lab\n    host: 10.0.0.5\n    port: 5901\n    vnc: {password: hunter22-top-secret, tls: none\n');
    const error = await loadConfig({ config: leaky }, {}).catch((err: Error) => err);
    expect((error as Error).message).toMatch(/is not valid YAML: .* at line \d+, column \d+$/);
    expect(String((error as Error).message) + String((error as Error).cause ?? '')).not.toContain('hunter22');
  });

  it("reads an operator's file for a key, or throws a FileError naming the key and the file", () => {
    const file = configFile('hello');
    expect(readOperatorFile('tls.cert', file).toString()).toBe('hello');
    const missing = join(dir, 'nope.pem');
    expect(() => readOperatorFile('tls.cert', missing)).toThrow(`cannot read tls.cert ${missing}: ENOENT`);
    expect(() => readOperatorFile('tickets.publicKeyFile', missing)).toThrow(
      expect.objectContaining({ name: 'FileError', key: 'tickets.publicKeyFile', path: missing }),
    );
  });
});

describe('the option table', () => {
  /** The names an option goes by: flag, variable, config key. */
  const namesOf = (option: Option): string[] =>
    [option.flag && `--${option.flag}`, option.env, option.key?.join('.')].filter((name): name is string => Boolean(name));

  it('names each variable after its flag, and no flag, variable or key twice', () => {
    for (const { flag, env } of OPTIONS) if (flag && env) expect(env).toBe(`DESKGATE_${flag.toUpperCase().replaceAll('-', '_')}`);
    for (const names of [OPTIONS.map((o) => o.flag), OPTIONS.map((o) => o.env), OPTIONS.map((o) => o.key?.join('.'))]) {
      const given = names.filter(Boolean);
      expect(given).toEqual([...new Set(given)]);
    }
  });

  // A row whose key the schema does not know would make its flag an "Unrecognized key" error.
  it('sets only keys the schema knows, each of the kind its default has', () => {
    const defaults = parseConfig({}) as unknown as Record<string, unknown>;
    for (const option of OPTIONS) {
      if (!option.key) continue;
      const name = option.key.join('.');
      expect(errorOf(withKey(option.key, null)), name).not.toMatch(/Unrecognized key/);
      const fallback = option.key.reduce<unknown>((holder, part) => (holder as Record<string, unknown> | undefined)?.[part], defaults);
      const kind = Array.isArray(fallback) ? 'list' : typeof fallback;
      if (fallback !== undefined && (typeof fallback !== 'object' || Array.isArray(fallback))) expect(kind, name).toBe(option.kind); // not listen's {host, port}
    }
  });

  it('gives every option a flag or a variable or a config key, and secrets no flag', () => {
    for (const option of OPTIONS) {
      expect(namesOf(option).length, option.help[0]).toBeGreaterThan(0);
      if (option.key?.at(-1) === 'secret') expect(option.flag, option.key.join('.')).toBeUndefined();
    }
  });

  it('documents every option in --help: its flag, variable and config key', () => {
    const help = optionsHelp(parseConfig({}));
    for (const option of OPTIONS) {
      for (const name of namesOf(option)) expect(help, name).toMatch(new RegExp(`(?<![\\w.-])${name.replace(/\./g, '\\.')}(?![\\w.-])`));
      if (option.short) expect(help).toContain(`-${option.short}, --${option.flag}`);
    }
  });

  it("groups --help by section and shows the schema's defaults, with units spelled out", () => {
    const help = optionsHelp(parseConfig({}));
    const titles = ['General', 'Listening and TLS', 'Desktops', 'Authentication', 'Tickets', 'Origins and proxies', 'Sessions and limits', 'HTTP'];
    const at = titles.map((title) => help.indexOf(`\n${title}:\n`));
    expect(at).not.toContain(-1);
    expect(at).toEqual([...at].sort((a, b) => a - b));
    expect(help).toMatch(/--max-sessions N +open sessions, all together \(default 10000\)\n +DESKGATE_MAX_SESSIONS, limits\.maxSessions\n/);
    expect(help).toContain('(default 1800000, 30 minutes)');
    expect(help).toContain('(default 1048576, 1 MiB)');
    expect(help).toContain('(default x-forwarded-user)');
    expect(help).not.toContain('(default )');
  });

  it('matches the README flag tables: every option has its row, and every row names options of the table', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Flags, environment, config file'), readme.indexOf('Subcommands, for operators'));
    const lines = section.split('\n');
    // The tables' rows, without each table's header and its separator.
    const table = lines.filter((line, i) => line.startsWith('|') && !line.startsWith('| ---') && !lines[i + 1]?.startsWith('| ---'));
    expect(table.length).toBeGreaterThan(40);
    // The names in a row's first three cells: `--flag PLACEHOLDER`, `DESKGATE_X` (a note), `config.key`.
    const patterns = [/`(--[\w-]+)/g, /`(DESKGATE_\w+)`/g, /`([\w.]+)`/g];
    const named = table.map((row) =>
      row
        .split('|')
        .slice(1, 4)
        .flatMap((cell, i) => [...cell.matchAll(patterns[i] as RegExp)].map((m) => m[1] as string)),
    );
    const known = new Set(OPTIONS.flatMap(namesOf));
    for (const [i, names] of named.entries()) {
      expect(names.length, table[i]).toBeGreaterThan(0);
      for (const name of names) expect(known, `${name} in README row ${table[i]}`).toContain(name);
    }
    for (const option of OPTIONS) {
      const row = named.find((names) => names.some((name) => namesOf(option).includes(name)));
      expect(row, namesOf(option).join(' ')).toBeDefined();
      expect(row, table[named.indexOf(row as string[])]).toEqual(expect.arrayContaining(namesOf(option)));
    }
  });
});

describe('durations', () => {
  it('are bounded by what a timer can wait, so none fires at once', () => {
    expect(() => parseConfig({ lifetime: { exitAfterIdleMs: 2 ** 31 } })).toThrow(
      'lifetime.exitAfterIdleMs (--exit-after-idle-ms, DESKGATE_EXIT_AFTER_IDLE_MS): got 2147483648; expected at most 2147483647 milliseconds (24.8 days)',
    );
    expect(parseConfig({ session: { idleTimeoutMs: 2 ** 31 - 1 } }).session.idleTimeoutMs).toBe(2 ** 31 - 1);
  });
});
