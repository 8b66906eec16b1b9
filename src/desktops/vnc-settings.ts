/**
 * A desktop's `vnc` section as the handshake uses it: the password read from its file or
 * variable and the CA file read, once at start-up, so a bad one stops the start with the
 * key that names it. The password is held here and in the handshake only: never logged.
 */
import { X509Certificate } from 'node:crypto';
import { ConfigError, FileError, type DesktopConfig, type VncConfig } from '../config/schema.js';
import { readOperatorFile } from '../config/sources.js';
import type { VncSettings } from '../rfb/handshake.js';
import { decodeVncPasswdFile } from '../rfb/vnc-auth.js';
import type { Desktop } from './directory.js';

/** The configured desktops, each with its `vnc` settings loaded. */
export function loadDesktops(desktops: readonly DesktopConfig[], env: NodeJS.ProcessEnv): Desktop[] {
  return desktops.map((desktop, i) => ({ ...desktop, vnc: loadVncSettings(desktop, i, env) }));
}

/** `index` is the desktop's place in `desktops`, for the keys errors name. */
function loadVncSettings(desktop: DesktopConfig, index: number, env: NodeJS.ProcessEnv): VncSettings | undefined {
  const vnc = desktop.vnc;
  if (!vnc) return undefined;
  const key = (name: string): string => `desktops[${index}].vnc.${name}`;
  const { tls, username, fingerprint, serverName, insecureSkipVerify, anonymousTls, shared } = vnc;
  return Object.freeze({
    password: readPassword(vnc, key, env),
    username,
    tls,
    ca: vnc.ca === undefined ? undefined : readCa(key('ca'), vnc.ca),
    fingerprint,
    serverName,
    insecureSkipVerify,
    anonymousTls,
    shared,
  });
}

function readPassword(vnc: VncConfig, key: (name: string) => string, env: NodeJS.ProcessEnv): string | undefined {
  if (vnc.password !== undefined) return vnc.password;
  if (vnc.passwordFile !== undefined) {
    const text = readOperatorFile(key('passwordFile'), vnc.passwordFile).toString('utf8');
    const password = text.split(/\r?\n/, 1)[0] ?? '';
    if (!password)
      throw new FileError(key('passwordFile'), vnc.passwordFile, `${key('passwordFile')} ${vnc.passwordFile} is empty: its first line is the password`);
    return password;
  }
  if (vnc.vncpasswdFile !== undefined) {
    const bytes = readOperatorFile(key('vncpasswdFile'), vnc.vncpasswdFile);
    try {
      return decodeVncPasswdFile(bytes);
    } catch (err) {
      throw new FileError(key('vncpasswdFile'), vnc.vncpasswdFile, `${key('vncpasswdFile')} ${vnc.vncpasswdFile}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (vnc.passwordEnv !== undefined) {
    const password = env[vnc.passwordEnv];
    if (!password) throw new ConfigError(`invalid configuration:\n  ${key('passwordEnv')}: the variable ${vnc.passwordEnv} is not set or empty`);
    return password;
  }
  return undefined;
}

function readCa(key: string, path: string): Buffer {
  const ca = readOperatorFile(key, path);
  // OpenSSL skips what is not a certificate without a word: check that there is one, and that it parses.
  const first = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(ca.toString('latin1'))?.[0];
  try {
    if (!first) throw new Error('no PEM certificate (-----BEGIN CERTIFICATE-----) in it');
    new X509Certificate(first);
  } catch (err) {
    throw new FileError(key, path, `${key} ${path} holds no usable PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  return ca;
}
