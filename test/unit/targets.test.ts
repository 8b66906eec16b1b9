import { describe, expect, it } from 'vitest';
import { TargetPolicy } from '../../src/desktops/targets.js';
import { isValidHost, parseHostPort } from '../../src/net/host-port.js';
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
