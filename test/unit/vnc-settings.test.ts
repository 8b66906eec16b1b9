import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, FileError, parseConfig } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/sources.js';
import { loadDesktops } from '../../src/desktops/vnc-settings.js';

const dir = mkdtempSync(join(tmpdir(), 'deskgate-vnc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const desktop = (vnc: Record<string, unknown>) => ({ desktops: [{ name: 'lab', host: '10.0.0.5', port: 5901, vnc }] });

function refusal(vnc: Record<string, unknown>): string {
  try {
    parseConfig(desktop(vnc));
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the vnc section to be refused');
}

function file(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe("a desktop's vnc section", () => {
  it('defaults to no TLS, shared, nothing skipped or anonymous', () => {
    expect(parseConfig(desktop({})).desktops[0]?.vnc).toEqual({ tls: 'none', insecureSkipVerify: false, anonymousTls: false, shared: true });
  });

  it('normalises a pinned fingerprint to the form Node prints, with or without sha256: and colons', () => {
    const hex = 'ab'.repeat(32);
    const expected = Array.from({ length: 32 }, () => 'AB').join(':');
    expect(parseConfig(desktop({ tls: 'vencrypt', fingerprint: `sha256:${hex}` })).desktops[0]?.vnc?.fingerprint).toBe(expected);
    expect(parseConfig(desktop({ tls: 'tls-first', fingerprint: expected.toLowerCase() })).desktops[0]?.vnc?.fingerprint).toBe(expected);
    expect(refusal({ tls: 'vencrypt', fingerprint: 'sha256:abcd' })).toMatch(/desktops\[0\]\.vnc\.fingerprint: .*expected sha256: and 32 hex bytes/);
  });

  it('refuses settings that contradict each other, naming the key', () => {
    expect(refusal({ password: 'x', passwordFile: '/p' })).toMatch(/vnc\.passwordFile: .*set one of password, passwordFile, vncpasswdFile and passwordEnv/);
    expect(refusal({ username: 'alice' })).toMatch(/vnc\.username: .*needs a password/);
    expect(refusal({ tls: 'vencrypt', ca: '/ca.pem', insecureSkipVerify: true })).toMatch(/vnc\.insecureSkipVerify: .*set one of ca, fingerprint/);
    expect(refusal({ ca: '/ca.pem' })).toMatch(/vnc\.ca: .*needs tls: vencrypt or tls-first/);
    expect(refusal({ anonymousTls: true, tls: 'tls-first' })).toMatch(/vnc\.anonymousTls: .*needs tls: vencrypt/);
    expect(refusal({ tls: 'ssl' })).toMatch(/vnc\.tls: .*expected none, vencrypt or tls-first/);
    expect(refusal({ tls: 'vencrypt', anonymousTls: true, ca: '/ca.pem' })).toMatch(/vnc\.anonymousTls: .*remove the X509 subtypes/);
  });

  it('never shows a password in an error', () => {
    const message = refusal({ password: 'hunter2-very-secret', passwordFile: '/p' });
    expect(message).not.toContain('hunter2');
    expect(refusal({ password: 42 })).toMatch(/vnc\.password: got \(not shown\)/);
  });

  it('reads the password from a text file (its first line), a vncpasswd file or a variable', () => {
    const config = parseConfig({
      desktops: [
        { name: 'a', host: '10.0.0.5', port: 5901, vnc: { passwordFile: file('a.pass', 'first line\r\nsecond\n') } },
        { name: 'b', host: '10.0.0.5', port: 5902, vnc: { vncpasswdFile: file('b.passwd', Buffer.from('24b5ae4ce15503c6', 'hex')) } },
        { name: 'c', host: '10.0.0.5', port: 5903, vnc: { passwordEnv: 'LAB_C_PASSWORD' } },
        { name: 'd', host: '10.0.0.5', port: 5904 },
      ],
    });
    const [a, b, c, d] = loadDesktops(config.desktops, { LAB_C_PASSWORD: 'from-env' });
    expect([a?.vnc?.password, b?.vnc?.password, c?.vnc?.password, d?.vnc]).toEqual(['first line', 'secret12', 'from-env', undefined]);
  });

  it('stops the start with the key and the file when a password or CA cannot be used', () => {
    const load =
      (vnc: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
      () =>
        loadDesktops(parseConfig(desktop(vnc)).desktops, env);
    expect(load({ passwordFile: join(dir, 'missing.pass') })).toThrow(FileError);
    expect(load({ passwordFile: join(dir, 'missing.pass') })).toThrow(/desktops\[0\]\.vnc\.passwordFile .*missing\.pass/);
    expect(load({ passwordFile: file('empty.pass', '\n') })).toThrow(/is empty: its first line is the password/);
    expect(load({ vncpasswdFile: file('short.passwd', 'abc') })).toThrow(/vncpasswdFile .*at least 8 bytes/);
    expect(load({ passwordEnv: 'NOT_SET_ANYWHERE' })).toThrow(/passwordEnv: the variable NOT_SET_ANYWHERE is not set or empty/);
    expect(load({ tls: 'vencrypt', ca: file('not-a-ca.pem', 'hello') })).toThrow(/vnc\.ca .*holds no usable PEM certificate/);
  });

  it("resolves its file paths against the config file's directory", async () => {
    const config = file(
      'deskgate.yaml',
      'desktops:\n  - name: lab\n    host: 10.0.0.5\n    port: 5901\n    vnc: { passwordFile: lab.pass, tls: vencrypt, ca: ../ca.pem }\n',
    );
    const loaded = await loadConfig({ config }, {});
    expect(loaded.desktops[0]?.vnc).toMatchObject({ passwordFile: join(dir, 'lab.pass'), ca: join(dir, '../ca.pem') });
  });
});
