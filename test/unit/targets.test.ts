import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DesktopDirectory } from '../../src/desktops/directory.js';
import { TargetPolicy } from '../../src/desktops/targets.js';
import { GatewayError } from '../../src/errors.js';
import { parseAddress, type VncAddress } from '../../src/net/address.js';
import { isValidHost, parseHostPort, parseWebsockifyHostPort } from '../../src/net/host-port.js';
import { normalizeAddress } from '../../src/net/cidr.js';

const GATEWAY_PORT = 6080;

describe('target parsing', () => {
  it('parses host:port, IPv4, IPv6 in brackets and names', () => {
    expect(parseHostPort('10.0.0.5:5901')).toEqual({ host: '10.0.0.5', port: 5901 });
    expect(parseHostPort('[fd00::1]:5900')).toEqual({ host: 'fd00::1', port: 5900 });
    expect(parseHostPort('vnc-1.lab.example:5900')).toEqual({ host: 'vnc-1.lab.example', port: 5900 });
  });

  it('refuses malformed input', () => {
    for (const text of [
      '',
      '10.0.0.5',
      '10.0.0.5:',
      ':5900',
      '10.0.0.5:0',
      '10.0.0.5:65536',
      '10.0.0.5:59a',
      'fd00::1:5900',
      '[10.0.0.5]:5900',
      'a b:5900',
      'host:5900/x',
      'user@host:5900',
      '[::1]:5900:1',
      'hôst:5900',
      '-x.example:5900',
    ]) {
      expect(parseHostPort(text), text).toBeUndefined();
    }
  });

  it('refuses decimal, octal, hex and shortened IPv4 spellings', () => {
    for (const host of ['2130706433', '0x7f000001', '0x7f.0.0.1', '0177.0.0.1', '127.1', '017700000001']) {
      expect(isValidHost(host), host).toBe(false);
    }
    expect(isValidHost('127.0.0.1')).toBe(true);
    expect(isValidHost('a1.example')).toBe(true);
  });

  it('maps IPv4-mapped IPv6 addresses to IPv4', () => {
    expect(normalizeAddress('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeAddress('::ffff:a9fe:a9fe')).toBe('169.254.169.254');
    expect(normalizeAddress('0:0:0:0:0:FFFF:A01:203')).toBe('10.1.2.3');
    expect(normalizeAddress('fd00::1')).toBe('fd00::1');
    expect(normalizeAddress('FD00:0::1%eth0')).toBe('fd00::1%eth0');
  });
});

describe('allow rules', () => {
  const policy = new TargetPolicy([
    { cidr: '10.0.0.0/24', ports: { from: 5900, to: 5999 } },
    { cidr: '127.0.0.0/8', ports: { from: 1, to: 65535 } },
    { cidr: 'fd00::/64', ports: { from: 5901, to: 5901 } },
  ]);

  it('allows only addresses inside a rule and ports inside its range', () => {
    expect(policy.allows('10.0.0.7', 5901, GATEWAY_PORT)).toBe(true);
    expect(policy.allows('10.0.1.7', 5901, GATEWAY_PORT)).toBe(false);
    expect(policy.allows('10.0.0.7', 22, GATEWAY_PORT)).toBe(false);
    expect(policy.allows('fd00::5', 5901, GATEWAY_PORT)).toBe(true);
    expect(policy.allows('fd00::5', 5902, GATEWAY_PORT)).toBe(false);
    expect(policy.allows('::ffff:10.0.0.7', 5901, GATEWAY_PORT)).toBe(true);
  });

  it("never allows the gateway's own port on loopback, even inside a rule", () => {
    expect(policy.allows('127.0.0.1', GATEWAY_PORT, GATEWAY_PORT)).toBe(false);
    expect(policy.allows('127.0.0.1', 5900, GATEWAY_PORT)).toBe(true);
  });

  it('keeps link-local, metadata and unspecified addresses closed unless a rule names them', () => {
    const wide = new TargetPolicy([
      { cidr: '0.0.0.0/0', ports: { from: 1, to: 65535 } },
      { cidr: '::/0', ports: { from: 1, to: 65535 } },
    ]);
    expect(wide.allows('169.254.169.254', 80, GATEWAY_PORT)).toBe(false);
    expect(wide.allows('::ffff:169.254.169.254', 80, GATEWAY_PORT)).toBe(false);
    expect(wide.allows('0.0.0.0', 5900, GATEWAY_PORT)).toBe(false);
    expect(wide.allows('fe80::1', 5900, GATEWAY_PORT)).toBe(false);
    expect(wide.allows('0:0:0:0:0:FFFF:A9FE:A9FE', 80, GATEWAY_PORT)).toBe(false);
    expect(wide.allows('192.0.2.10', 5900, GATEWAY_PORT)).toBe(true);
    const named = new TargetPolicy([{ cidr: '169.254.10.0/24', ports: { from: 5900, to: 5900 } }]);
    expect(named.allows('169.254.10.3', 5900, GATEWAY_PORT)).toBe(true);
    expect(named.allows('169.254.169.254', 5900, GATEWAY_PORT)).toBe(false);
  });

  // Node's BlockList matched IPv4 addresses against ::/0: 127.0.0.9 was connected.
  it('matches a rule only against addresses of its own family, IPv4-mapped IPv6 being IPv4', () => {
    const v6 = new TargetPolicy([{ cidr: '::/0', ports: { from: 5900, to: 5900 } }]);
    expect(v6.allows('2001:db8::9', 5900, GATEWAY_PORT)).toBe(true);
    for (const address of ['127.0.0.9', '::ffff:127.0.0.9', '0:0:0:0:0:ffff:7f00:9']) {
      expect(v6.allows(address, 5900, GATEWAY_PORT), address).toBe(false);
    }
    const v4 = new TargetPolicy([{ cidr: '127.0.0.0/8', ports: { from: 1, to: 65535 } }]);
    expect(v4.allows('0:0:0:0:0:FFFF:7F00:9', 5900, GATEWAY_PORT)).toBe(true);
    expect(v4.allows('0:0:0:0:0:ffff:7f00:1', GATEWAY_PORT, GATEWAY_PORT)).toBe(false);
    expect(v4.allows('2001:db8::7f00:9', 5900, GATEWAY_PORT)).toBe(false);
  });

  it('allows nothing without rules', () => {
    const none = new TargetPolicy([]);
    expect(none.enabled).toBe(false);
    expect(none.allows('10.0.0.7', 5901, GATEWAY_PORT)).toBe(false);
  });
});

describe('Unix socket targets', () => {
  it('parses unix:/PATH, normalised, besides host:port', () => {
    expect(parseAddress('unix:/run/vnc/lab.sock')).toEqual({ socket: '/run/vnc/lab.sock' });
    expect(parseAddress('unix:/run//vnc/./x/../lab.sock/')).toEqual({ socket: '/run/vnc/lab.sock' });
    expect(parseAddress('unix:/run/vnc/../../etc/x.sock')).toEqual({ socket: '/etc/x.sock' });
    expect(parseAddress('10.0.0.5:5901')).toEqual({ host: '10.0.0.5', port: 5901 });
    expect(parseAddress(`unix:/${'a'.repeat(106)}`)).toEqual({ socket: `/${'a'.repeat(106)}` });
  });

  it('refuses relative, empty, NUL-holding and over-long (sun_path) socket paths', () => {
    for (const text of [
      'unix:',
      'unix:/',
      'unix:run/vnc.sock',
      'unix:./vnc.sock',
      'unix:/run/\0.sock',
      `unix:/${'a'.repeat(107)}`,
      `unix:/${'é'.repeat(54)}`,
      'unix_socket:/x.sock',
    ]) {
      expect(parseAddress(text), text).toBeUndefined();
    }
  });

  it('allows a socket path only below a unix rule directory, judged on the path alone', () => {
    const policy = new TargetPolicy([{ unix: '/run/vnc' }]);
    expect(policy.enabled).toBe(true);
    expect(policy.allowsSocket('/run/vnc/lab.sock')).toBe(true);
    expect(policy.allowsSocket('/run/vnc/sub/lab.sock')).toBe(true);
    expect(policy.allowsSocket('/run/vnc')).toBe(false);
    expect(policy.allowsSocket('/run/vnc2/lab.sock')).toBe(false);
    expect(policy.allowsSocket('/run/lab.sock')).toBe(false);
    expect(policy.allows('127.0.0.1', 5900, GATEWAY_PORT)).toBe(false);
    expect(new TargetPolicy([{ cidr: '127.0.0.0/8', ports: { from: 1, to: 65535 } }]).allowsSocket('/run/vnc/lab.sock')).toBe(false);
  });
});

describe('resolving unix: targets on disk', () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'deskgate-targets-')));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const allowed = join(root, 'allowed');
  const outside = join(root, 'outside');
  mkdirSync(join(allowed, 'sub'), { recursive: true });
  mkdirSync(outside);
  for (const file of [join(allowed, 'lab.sock'), join(allowed, 'sub', 'deep.sock'), join(outside, 'trap.sock')]) writeFileSync(file, '');
  symlinkSync(join(outside, 'trap.sock'), join(allowed, 'escape.sock'));
  symlinkSync(outside, join(allowed, 'door'));
  symlinkSync(join(allowed, 'lab.sock'), join(allowed, 'alias.sock'));
  symlinkSync(allowed, join(root, 'linked'));

  const directory = (rules: ConstructorParameters<typeof TargetPolicy>[0]): DesktopDirectory => new DesktopDirectory([], new TargetPolicy(rules));
  const resolve = (dir: DesktopDirectory, text: string): Promise<unknown> => dir.resolveTarget(parseAddress(text) as VncAddress, GATEWAY_PORT);
  const refusal = async (promise: Promise<unknown>): Promise<{ code: string; message: string }> => {
    const err: unknown = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    return { code: (err as GatewayError).code, message: (err as GatewayError).message };
  };
  const withRule = directory([{ unix: allowed }]);

  it('resolves a socket inside the directory to its real path', async () => {
    expect(await resolve(withRule, `unix:${allowed}/lab.sock`)).toEqual({
      kind: 'target',
      name: `unix:${allowed}/lab.sock`,
      socket: join(allowed, 'lab.sock'),
    });
    expect(await resolve(withRule, `unix:${allowed}/sub/deep.sock`)).toMatchObject({ socket: join(allowed, 'sub', 'deep.sock') });
    expect(await resolve(withRule, `unix:${allowed}/alias.sock`)).toMatchObject({ socket: join(allowed, 'lab.sock') });
  });

  it('refuses a socket outside the directory, by .., by a symlinked socket or a symlinked directory', async () => {
    for (const path of [
      `${outside}/trap.sock`,
      `${allowed}/../outside/trap.sock`,
      `${allowed}/escape.sock`,
      `${allowed}/door/trap.sock`,
      `${root}/linked/lab.sock`,
    ]) {
      expect(await refusal(resolve(withRule, `unix:${path}`)), path).toMatchObject({
        code: 'DG_ERR_FORBIDDEN',
        message: expect.stringMatching(/^Target unix:\/.* is not allowed/),
      });
    }
  });

  it('resolves the rule directory too: a rule naming a symlink allows what lies in its real directory', async () => {
    const viaLink = directory([{ unix: join(root, 'linked') }]);
    expect(await resolve(viaLink, `unix:${root}/linked/lab.sock`)).toMatchObject({ socket: join(allowed, 'lab.sock') });
    expect(await refusal(resolve(viaLink, `unix:${allowed}/lab.sock`))).toMatchObject({ code: 'DG_ERR_FORBIDDEN' });
  });

  it('refuses every unix target without a unix rule: not enabled without rules, not allowed with CIDR rules only', async () => {
    expect(await refusal(resolve(directory([]), `unix:${allowed}/lab.sock`))).toEqual({
      code: 'DG_ERR_FORBIDDEN',
      message: 'Ad-hoc targets are not enabled on this gateway',
    });
    const cidrOnly = directory([{ cidr: '0.0.0.0/0', ports: { from: 1, to: 65535 } }]);
    expect(await refusal(resolve(cidrOnly, `unix:${allowed}/lab.sock`))).toEqual({
      code: 'DG_ERR_FORBIDDEN',
      message: `Target unix:${allowed}/lab.sock is not allowed by this gateway's rules`,
    });
  });

  it('says a missing socket inside the directory is unreachable', async () => {
    expect(await refusal(resolve(withRule, `unix:${allowed}/gone.sock`))).toEqual({
      code: 'DG_ERR_CONNECT_FAILED',
      message: `Target unix:${allowed}/gone.sock is not reachable (no such socket)`,
    });
  });
});

describe('parseWebsockifyHostPort', () => {
  it("splits at the last colon, as websockify's token files and command line do", () => {
    expect(parseWebsockifyHostPort('localhost:5901')).toEqual({ host: 'localhost', port: 5901 });
    expect(parseWebsockifyHostPort('[fd00::7]:5900')).toEqual({ host: 'fd00::7', port: 5900 });
    expect(parseWebsockifyHostPort('fd00::7:5900')).toEqual({ host: 'fd00::7', port: 5900 });
    for (const bad of ['5900', ':5900', 'host:', 'host:0', 'host:65536', '2130706433:5900', 'a b:1']) expect(parseWebsockifyHostPort(bad), bad).toBeUndefined();
  });
});
