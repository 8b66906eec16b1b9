/**
 * The pure parts of authentication: desktop rules, failed-login throttling on a fake
 * clock, which X-Forwarded-* headers are believed, and where a login may send the browser.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { accessTo, ANONYMOUS, type Identity } from '../../src/auth/identity.js';
import { isForeignPost } from '../../src/auth/origin.js';
import { ProxyTrust } from '../../src/auth/proxy.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { safeNext } from '../../src/http/pages.js';

const alice: Identity = { user: 'alice', groups: ['teachers'], via: 'password' };
const bob: Identity = { user: 'bob', groups: ['students'], via: 'password' };

describe('desktop rules', () => {
  it('let every authenticated user open a desktop without rules', () => {
    expect(accessTo({}, alice)).toBe('full');
    expect(accessTo({}, ANONYMOUS)).toBe('full');
  });

  it('allow by user or by group, and nobody else', () => {
    const rules = { allow: { users: ['alice'], groups: ['students'] } };
    expect(accessTo(rules, alice)).toBe('full');
    expect(accessTo(rules, bob)).toBe('full');
    expect(accessTo(rules, { user: 'carol', groups: [], via: 'header' })).toBe('none');
    expect(accessTo(rules, ANONYMOUS)).toBe('none');
  });

  it('make a group view-only, without letting in users the allow list leaves out', () => {
    const rules = { allow: { users: ['alice', 'bob'], groups: [] }, viewOnly: { users: [], groups: ['students'] } };
    expect(accessTo(rules, alice)).toBe('full');
    expect(accessTo(rules, bob)).toBe('view');
    expect(accessTo({ ...rules, allow: { users: ['alice'], groups: [] } }, bob)).toBe('none');
  });
});

describe('failed-login throttle', () => {
  const options = { maxFailures: 5, windowMs: 300_000, blockMs: 300_000 };

  it('blocks an address after 5 failures within the window, for the block time', () => {
    let now = 1_000_000;
    const throttle = new LoginThrottle(options, () => now);
    for (let i = 0; i < 4; i += 1) throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(0);
    throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(300);
    expect(throttle.retryAfter('10.0.0.2')).toBe(0);
    now += 299_000;
    expect(throttle.retryAfter('10.0.0.1')).toBe(1);
    now += 1_000;
    expect(throttle.retryAfter('10.0.0.1')).toBe(0);
  });

  it('forgets failures older than the window', () => {
    let now = 0;
    const throttle = new LoginThrottle(options, () => now);
    for (let i = 0; i < 4; i += 1) throttle.failed('10.0.0.1');
    now += 300_000;
    throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(0);
    for (let i = 0; i < 3; i += 1) throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(0);
    throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(300);
  });

  const blockOf = (throttle: LoginThrottle, address: string): void => {
    for (let i = 0; i < options.maxFailures; i += 1) throttle.failed(address);
  };

  // 100,100 failures from other addresses used to evict the block of the first within 11 s.
  it('keeps a block however many other addresses fail', () => {
    let now = 0;
    const throttle = new LoginThrottle(options, () => now);
    blockOf(throttle, '192.0.2.1');
    for (let i = 0; i < 100_100; i += 1) throttle.failed(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    now += 11_000;
    expect(throttle.retryAfter('192.0.2.1')).toBe(289);
  });

  it('forgets the failure counts of the least recently seen addresses first, never a block', () => {
    const throttle = new LoginThrottle({ ...options, maxAddresses: 2 }, () => 0);
    blockOf(throttle, '192.0.2.1');
    for (let i = 0; i < 4; i += 1) throttle.failed('10.0.0.1');
    throttle.failed('10.0.0.2');
    throttle.failed('10.0.0.3');
    throttle.failed('10.0.0.1');
    expect(throttle.retryAfter('10.0.0.1')).toBe(0);
    expect(throttle.retryAfter('192.0.2.1')).toBe(300);
  });

  it('refuses every address not yet blocked while the table of blocks is full, until the oldest block ends', () => {
    let now = 0;
    const throttle = new LoginThrottle({ ...options, maxBlocked: 2 }, () => now);
    blockOf(throttle, '10.0.0.1');
    now = 60_000;
    blockOf(throttle, '10.0.0.2');
    now = 120_000;
    blockOf(throttle, '10.0.0.3');
    expect(throttle.retryAfter('10.0.0.3')).toBe(180);
    expect(throttle.retryAfter('192.0.2.9')).toBe(180);
    expect(throttle.retryAfter('10.0.0.2')).toBe(240);
    now = 300_000;
    expect(throttle.retryAfter('192.0.2.9')).toBe(0);
    // The failures whose block found no room still count: the next one blocks.
    expect(throttle.begin('10.0.0.3')).toBe(false);
    throttle.failed('10.0.0.3');
    expect(throttle.retryAfter('10.0.0.3')).toBe(300);
  });
});

function request(peer: string, headers: Record<string, string> = {}): IncomingMessage {
  return { socket: { remoteAddress: peer }, headers: { host: 'gw.example:6080', ...headers } } as unknown as IncomingMessage;
}

describe('trusted proxies', () => {
  const trust = new ProxyTrust(['10.0.0.0/24', '::1/128']);
  const forwarded = {
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'desktops.example.com',
    'x-forwarded-prefix': '/desktops/',
  };

  it('believe X-Forwarded-* from a trusted peer', () => {
    expect(trust.describe(request('10.0.0.5', forwarded))).toEqual({
      address: '203.0.113.9',
      viaTrustedProxy: true,
      secure: true,
      host: 'desktops.example.com',
      prefix: '/desktops',
    });
    expect(trust.describe(request('::1', forwarded)).address).toBe('203.0.113.9');
  });

  it('read the standard Forwarded header from trusted peers only, and then nothing of X-Forwarded-* (which could be the client’s)', () => {
    const standard = { forwarded: 'for=198.51.100.4;proto=https;host=desktops.example.com, for="[2001:db8::7]:4711", for=10.0.0.9' };
    expect(trust.describe(request('10.0.0.5', standard))).toMatchObject({ address: '2001:db8::7', secure: false, host: 'gw.example:6080' });
    const oneHop = { forwarded: 'for=198.51.100.4;proto=https;host="desktops.example.com"' };
    expect(trust.describe(request('10.0.0.5', oneHop))).toMatchObject({ address: '198.51.100.4', secure: true, host: 'desktops.example.com' });
    expect(trust.describe(request('192.0.2.7', oneHop))).toMatchObject({ address: '192.0.2.7', secure: false, host: 'gw.example:6080' });
    const forged = { ...oneHop, 'x-forwarded-for': '203.0.113.66', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'evil.example' };
    expect(trust.describe(request('10.0.0.5', forged))).toMatchObject({ address: '198.51.100.4', secure: true, host: 'desktops.example.com' });
  });

  it('put the forwarded prefix, the mount point and basePath together, and ignore a prefix that is not a path', () => {
    const underBase = new ProxyTrust(['10.0.0.0/24'], '/gw');
    const mounted = Object.assign(request('10.0.0.5', forwarded), { baseUrl: '/remote' });
    expect(underBase.describe(mounted).prefix).toBe('/desktops/remote/gw');
    expect(underBase.describe(request('192.0.2.7', forwarded)).prefix).toBe('/gw');
    for (const bad of ['desktops', '//evil.example', '/a b', '/a?b', '/a#b', 'https://evil.example/x', '/p;Domain=example.com', '/a,b', '/a=b', '/a%3Bb']) {
      expect(trust.describe(request('10.0.0.5', { 'x-forwarded-prefix': bad })).prefix, bad).toBe('');
    }
  });

  it('ignore them from anyone else', () => {
    expect(trust.describe(request('192.0.2.7', forwarded))).toEqual({
      address: '192.0.2.7',
      viaTrustedProxy: false,
      secure: false,
      host: 'gw.example:6080',
      prefix: '',
    });
    expect(trust.describe(request('::ffff:192.0.2.7', forwarded)).address).toBe('192.0.2.7');
  });

  it('take the first untrusted hop from the right, so a client cannot forge its address', () => {
    const req = request('10.0.0.5', { 'x-forwarded-for': '127.0.0.1, 198.51.100.4, 10.0.0.9' });
    expect(trust.describe(req).address).toBe('198.51.100.4');
  });

  it('read hops that a proxy wrote with a port', () => {
    expect(trust.describe(request('10.0.0.5', { 'x-forwarded-for': '198.51.100.4:51234, 10.0.0.9:443' })).address).toBe('198.51.100.4');
    expect(trust.describe(request('10.0.0.5', { 'x-forwarded-for': '[2001:db8::7]:51234' })).address).toBe('2001:db8::7');
  });

  it('stop at a hop that is not an address', () => {
    expect(trust.describe(request('10.0.0.5', { 'x-forwarded-for': 'unknown' })).address).toBe('10.0.0.5');
  });

  // Node's BlockList matched 127.0.0.9 against an IPv6 rule such as ::/1.
  it('match a rule only against addresses of its own family, IPv4-mapped IPv6 being IPv4', () => {
    const v6 = new ProxyTrust(['::/1']);
    expect(v6.trusts('::1')).toBe(true);
    expect(v6.trusts('127.0.0.9')).toBe(false);
    expect(v6.trusts('::ffff:127.0.0.9')).toBe(false);
    expect(v6.describe(request('127.0.0.9', forwarded)).viaTrustedProxy).toBe(false);
    const v4 = new ProxyTrust(['10.0.0.0/8']);
    expect(v4.trusts('0:0:0:0:0:FFFF:a01:203')).toBe(true);
    expect(v4.trusts('2001:db8::a01:203')).toBe(false);
  });
});

describe('where a login may send the browser', () => {
  it('accepts pages of the gateway only, relative to its root; anything else means the dashboard', () => {
    expect(safeNext('view/lab1?x=1')).toBe('view/lab1?x=1');
    expect(safeNext('view/a%2Fb')).toBe('view/a%2Fb');
    const bad = ['/view/lab1', '//evil.example/', '/\\evil.example', '\\evil.example', 'https://evil.example/', 'javascript:alert(1)', 'HTTPS:evil'];
    const dotted = ['../../elsewhere', 'view/../../x', './x', '%2e%2e/other-app', 'view/%2E%2e/%2e./x', '.%2e/x', 'view/..#x'];
    for (const next of [...bad, ...dotted, '\t//evil.example', 'view/\nx', '', null, undefined]) {
      expect(safeNext(next), String(next)).toBe('');
    }
  });
});

describe('form posts', () => {
  const from = { address: '127.0.0.1', viaTrustedProxy: false, secure: false, host: 'gw.example:6080', prefix: '' };
  const post = (headers: Record<string, string>) => isForeignPost(request('127.0.0.1', headers), from);

  it("accept the gateway's own origin and clients that send none", () => {
    expect(post({ origin: 'http://gw.example:6080' })).toBe(false);
    expect(post({})).toBe(false);
  });

  it('refuse another origin', () => {
    expect(post({ origin: 'http://evil.example' })).toBe(true);
    expect(post({ origin: 'https://gw.example:6080' })).toBe(true);
  });

  // Under Referrer-Policy: no-referrer browsers post with Origin: null; Sec-Fetch-Site, which pages cannot set, decides.
  it('accept Origin: null only when the browser says the form was same-origin', () => {
    expect(post({ origin: 'null', 'sec-fetch-site': 'same-origin' })).toBe(false);
    expect(post({ origin: 'null', 'sec-fetch-site': 'cross-site' })).toBe(true);
    expect(post({ origin: 'null' })).toBe(true);
  });
});
