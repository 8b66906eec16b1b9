/**
 * The RFB handshake phase of a session, between the browser's viewer and the VNC server,
 * before the relay takes over. Two ways, chosen per desktop:
 *
 * - **Followed** (the gateway holds no VNC credentials): the viewer and the server negotiate
 *   with each other as if the gateway were a wire, and the gateway reads along so that it
 *   knows where client messages begin (security None and VNC authentication). It writes the
 *   ClientInit shared flag itself, and offers a view-only viewer only security types it can
 *   follow. A viewer that picks one it cannot (VeNCrypt, say) gets a byte pipe from there on.
 * - **Terminated** (the desktop has `vnc` credentials or VeNCrypt): the gateway is the RFB
 *   client of the server (3.3, 3.7, 3.8; None, VNC authentication, VeNCrypt) and an RFB 3.8
 *   server offering security None to the viewer. Both halves run at once, so the viewer's
 *   round trips overlap the server's; the server's ServerInit is then passed on as it came.
 *   The VNC password and the challenge never reach the viewer.
 *
 * Either way, `tls: tls-first` speaks TLS to the server from its first byte. Every read has a
 * deadline and every buffer a bound (handshake-reader.ts); every failure is a catalogue
 * error naming the desktop and the step.
 */
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { errors, formatDuration, GatewayError } from '../errors.js';
import type { HandshakeReader } from './handshake-reader.js';
import {
  formatProtocolVersion,
  parseProtocolVersion,
  PROTOCOL_VERSION_LENGTH,
  RFB_VERSION_3_8,
  SecurityResult,
  SecurityType,
  VeNCryptSubtype,
  type ProtocolMinor,
} from './protocol.js';
import { CHALLENGE_LENGTH, vncAuthResponse } from './vnc-auth.js';

/** How the gateway speaks RFB to one VNC server: the desktop's `vnc` settings, files and variables read. */
export interface VncSettings {
  /** VNC authentication, or VeNCrypt's Vnc and Plain subtypes. */
  readonly password?: string | undefined;
  /** VeNCrypt's Plain subtypes. */
  readonly username?: string | undefined;
  readonly tls: 'none' | 'vencrypt' | 'tls-first';
  /** Trust these CAs for the server's certificate instead of the system's. */
  readonly ca?: Buffer | undefined;
  /** Accept exactly the certificate with this SHA-256 fingerprint, as Node writes it ("AB:CD:…"). */
  readonly fingerprint?: string | undefined;
  /** The name the server's certificate must carry; the desktop's host when unset. */
  readonly serverName?: string | undefined;
  readonly insecureSkipVerify: boolean;
  /** Allow VeNCrypt's anonymous TLS subtypes, which do not authenticate the server. */
  readonly anonymousTls: boolean;
  /** ClientInit's shared flag, whatever the viewer asks for. */
  readonly shared: boolean;
}

/** A desktop without a `vnc` section, and every ad-hoc target. */
export const PLAIN_VNC: VncSettings = Object.freeze({ tls: 'none', insecureSkipVerify: false, anonymousTls: false, shared: true });

/** Whether the gateway ends the handshake itself instead of following the viewer's. */
export function terminates(vnc: VncSettings): boolean {
  return vnc.password !== undefined || vnc.username !== undefined || vnc.tls === 'vencrypt';
}

/** One side as the handshake sees it. */
export interface HandshakeSide {
  readonly reader: HandshakeReader;
  write(bytes: Buffer): void;
}

export interface UpstreamSide extends HandshakeSide {
  /** Speak TLS from here on; rejects with what failed (see relay/upstream.ts). */
  startTls(options: ConnectionOptions, verify: (socket: TLSSocket) => void): Promise<void>;
}

export interface HandshakeOptions {
  /** How reasons name the server: "Desktop 'lab1'". */
  label: string;
  /** The server's host, which its certificate must name unless `vnc.serverName` says otherwise; none for a Unix socket. */
  host: string | undefined;
  vnc: VncSettings;
  /** The session needs a client-message filter (view-only): the gateway must be able to follow it. */
  mustFollow: boolean;
  /** The longest wait for any one answer of the server or the viewer. */
  timeoutMs: number;
  /** The longest wait for a person: the viewer's answer to a VNC password prompt, when followed. */
  personTimeoutMs: number;
}

export interface HandshakeResult {
  /** False when the viewer chose a security type the gateway cannot read: no filter is possible. */
  followed: boolean;
  /** The security type used towards the server, for the log: "None", "VNC authentication", "VeNCrypt X509Vnc". */
  security: string;
  /** From ServerInit, when followed. */
  desktop?: { width: number; height: number; name: string } | undefined;
  /** The ServerInit the viewer was given, when followed: a recording's header replays it. */
  serverInit?: Buffer | undefined;
}

/** Reason strings and desktop names are short; a longer one is a hostile or broken server. */
const MAX_TEXT_BYTES = 64 * 1024;

/** The security types the gateway can follow between a viewer and a server. */
const FOLLOWABLE: ReadonlySet<number> = new Set([SecurityType.None, SecurityType.VncAuthentication]);

/** Run the handshake; resolves once the relay may start, rejects with a GatewayError. */
export function handshake(viewer: HandshakeSide, server: UpstreamSide, options: HandshakeOptions): Promise<HandshakeResult> {
  return terminates(options.vnc) ? terminate(viewer, server, options) : follow(viewer, server, options);
}

async function follow(viewer: HandshakeSide, server: UpstreamSide, o: HandshakeOptions): Promise<HandshakeResult> {
  const t = o.timeoutMs;
  if (o.vnc.tls === 'tls-first') await startTls(server, o, false);
  const serverVersion = await server.reader.read(PROTOCOL_VERSION_LENGTH, 'RFB version', t);
  const serverMinor = serverVersionOf(serverVersion, o.label);
  viewer.write(serverVersion);
  const viewerVersion = await viewer.reader.read(PROTOCOL_VERSION_LENGTH, 'RFB version', t);
  const minor = Math.min(viewerVersionOf(viewerVersion), serverMinor) as ProtocolMinor;
  server.write(Buffer.from(formatProtocolVersion(minor), 'latin1')); // the version both sides then speak, spelled as the RFC does

  let type: number;
  if (minor === 3) {
    const chosen = await server.reader.read(4, 'security type', t);
    type = chosen.readUInt32BE(0);
    if (type === SecurityType.Invalid) throw errors.vncRefused(o.label, await readText(server, o, 'reason'));
    if (!FOLLOWABLE.has(type) && o.mustFollow) throw errors.viewOnlyNotFollowed(o.label);
    viewer.write(chosen);
  } else {
    const offered = await readSecurityTypes(server, o);
    const forViewer = o.mustFollow ? offered.filter((t) => FOLLOWABLE.has(t)) : offered;
    if (forViewer.length === 0) throw errors.viewOnlyNotFollowed(o.label);
    viewer.write(Buffer.from([forViewer.length, ...forViewer]));
    const [choice = 0] = await viewer.reader.read(1, 'security type', t);
    if (!forViewer.includes(choice)) throw errors.viewerBrokeProtocol(`it chose security type ${choice}, which was not offered`);
    server.write(Buffer.from([choice]));
    type = choice;
  }
  if (!FOLLOWABLE.has(type)) return { followed: false, security: securityName(type) };

  if (type === SecurityType.VncAuthentication) {
    viewer.write(await server.reader.read(CHALLENGE_LENGTH, 'VNC authentication challenge', t));
    server.write(await viewer.reader.read(CHALLENGE_LENGTH, 'VNC password', o.personTimeoutMs));
  }
  const result = await readSecurityResult(server, o, type, minor);
  if (result) {
    // The viewer is told as the server told it; on a failure the session then ends with the reason.
    viewer.write(Buffer.concat([result.bytes, result.failure !== undefined && minor === 8 ? textBytes(result.failure) : Buffer.alloc(0)]));
    if (result.failure !== undefined) {
      const reason = result.failure;
      throw type === SecurityType.VncAuthentication ? errors.vncPasswordWrong(o.label, reason) : errors.vncRefused(o.label, reason);
    }
  }
  await viewer.reader.read(1, 'ClientInit', t); // its shared flag is replaced by the desktop's
  server.write(Buffer.from([o.vnc.shared ? 1 : 0]));
  const init = await readServerInit(server, o);
  viewer.write(init.bytes);
  return { followed: true, security: securityName(type), desktop: init.desktop, serverInit: init.bytes };
}

async function terminate(viewer: HandshakeSide, server: UpstreamSide, o: HandshakeOptions): Promise<HandshakeResult> {
  const upstream = negotiateWithServer(server, o);
  const greeted = greetViewer(viewer, o);
  // Both halves run at once; whichever fails first fails the handshake (the other's rejection is then moot).
  upstream.catch(noop);
  greeted.catch(noop);
  const [{ security, init }] = await Promise.all([upstream, greeted]);
  viewer.write(init.bytes);
  return { followed: true, security, desktop: init.desktop, serverInit: init.bytes };
}

/** The gateway as an RFB 3.8 server towards the viewer, offering security None; done once ClientInit is in. */
async function greetViewer(viewer: HandshakeSide, o: HandshakeOptions): Promise<void> {
  const t = o.timeoutMs;
  viewer.write(Buffer.from(RFB_VERSION_3_8, 'latin1'));
  const minor = viewerVersionOf(await viewer.reader.read(PROTOCOL_VERSION_LENGTH, 'RFB version', t));
  if (minor === 3) {
    viewer.write(u32(SecurityType.None));
  } else {
    viewer.write(Buffer.from([1, SecurityType.None]));
    const [choice = 0] = await viewer.reader.read(1, 'security type', t);
    if (choice !== SecurityType.None) throw errors.viewerBrokeProtocol(`it chose security type ${choice}; only None (1) was offered`);
    if (minor === 8) viewer.write(u32(SecurityResult.Ok));
  }
  await viewer.reader.read(1, 'ClientInit', t); // the shared flag towards the server is the desktop's
}

/** The gateway as an RFB client of the server, with the desktop's credentials and TLS. */
async function negotiateWithServer(server: UpstreamSide, o: HandshakeOptions): Promise<{ security: string; init: ServerInit }> {
  const t = o.timeoutMs;
  if (o.vnc.tls === 'tls-first') await startTls(server, o, false);
  const minor = serverVersionOf(await server.reader.read(PROTOCOL_VERSION_LENGTH, 'RFB version', t), o.label);
  server.write(Buffer.from(formatProtocolVersion(minor), 'latin1'));

  let type: number;
  if (minor === 3) {
    type = (await server.reader.read(4, 'security type', t)).readUInt32BE(0);
    if (type === SecurityType.Invalid) throw errors.vncRefused(o.label, await readText(server, o, 'reason'));
    if (chooseSecurityType([type], o.vnc) === undefined) throw errors.vncNoSecurityType(o.label, noUsableType([type], o.vnc));
  } else {
    const offered = await readSecurityTypes(server, o);
    const chosen = chooseSecurityType(offered, o.vnc);
    if (chosen === undefined) throw errors.vncNoSecurityType(o.label, noUsableType(offered, o.vnc));
    server.write(Buffer.from([chosen]));
    type = chosen;
  }

  let security = securityName(type);
  let sentCredentials = type === SecurityType.VncAuthentication;
  if (type === SecurityType.VeNCrypt) {
    const subtype = await negotiateVeNCrypt(server, o);
    security = `VeNCrypt ${subtypeName(subtype)}`;
    sentCredentials = subtype !== VeNCryptSubtype.X509None && subtype !== VeNCryptSubtype.TLSNone;
  } else if (type === SecurityType.VncAuthentication) {
    await answerChallenge(server, o);
  }
  const failure = (await readSecurityResult(server, o, type, minor))?.failure;
  if (failure !== undefined) throw sentCredentials ? errors.vncPasswordRejected(o.label, failure) : errors.vncRefused(o.label, failure);
  server.write(Buffer.from([o.vnc.shared ? 1 : 0]));
  return { security, init: await readServerInit(server, o) };
}

/** The gateway's choice among the server's security types, most protective first; undefined: none will do. */
function chooseSecurityType(offered: readonly number[], vnc: VncSettings): number | undefined {
  // With TLS asked for, only VeNCrypt will do: never a silent downgrade to an unencrypted type.
  const preference =
    vnc.tls === 'vencrypt'
      ? [SecurityType.VeNCrypt]
      : [
          ...(vnc.password !== undefined ? [SecurityType.VncAuthentication] : []),
          ...(vnc.username !== undefined ? [SecurityType.VeNCrypt] : []),
          SecurityType.None,
        ];
  return preference.find((type) => offered.includes(type));
}

/** Why none of `offered` would do, in words an operator can act on. */
function noUsableType(offered: readonly number[], vnc: VncSettings): string {
  const names = offered.map(securityName).join(', ');
  if (vnc.tls === 'vencrypt') return `it does not offer VeNCrypt (it offers ${names}), and vnc.tls is vencrypt: the gateway does not fall back to no TLS`;
  if (offered.includes(SecurityType.VeNCrypt)) return `it offers ${names}: set vnc.tls: vencrypt for this desktop`;
  if (offered.includes(SecurityType.VncAuthentication)) return `it asks for a VNC password, and the desktop has none configured (vnc.passwordFile)`;
  return `it offers only ${names}, which the gateway does not speak`;
}

/** VeNCrypt 0.2: agree on a subtype, start TLS if it has it, then its own authentication. */
async function negotiateVeNCrypt(server: UpstreamSide, o: HandshakeOptions): Promise<number> {
  const t = o.timeoutMs;
  const [major = 0, minor = 0] = await server.reader.read(2, 'VeNCrypt version', t);
  if (major !== 0 || minor < 2) throw errors.vncNoSecurityType(o.label, `it speaks VeNCrypt ${major}.${minor}; the gateway speaks 0.2`);
  server.write(Buffer.from([0, 2]));
  const [refused] = await server.reader.read(1, 'VeNCrypt version answer', t);
  if (refused !== 0) throw errors.vncRefused(o.label, 'it would not speak VeNCrypt 0.2');
  const [count = 0] = await server.reader.read(1, 'VeNCrypt subtypes', t);
  if (count === 0) throw errors.vncRefused(o.label, 'it offers no VeNCrypt subtype');
  const list = await server.reader.read(4 * count, 'VeNCrypt subtypes', t);
  const offered = Array.from({ length: count }, (_, i) => list.readUInt32BE(4 * i));
  const subtype = chooseSubtype(offered, o.vnc);
  if (subtype === undefined) {
    const names = offered.map(subtypeName).join(', ');
    const hint = o.vnc.anonymousTls ? '' : ' (anonymous TLS needs vnc.anonymousTls)';
    throw errors.vncNoSecurityType(o.label, `its VeNCrypt subtypes (${names}) do not fit the desktop's vnc settings${hint}`);
  }
  server.write(u32(subtype));
  const withTls = subtype !== VeNCryptSubtype.Plain;
  if (withTls) {
    const [ready] = await server.reader.read(1, 'TLS go-ahead', t);
    if (ready === 0) throw errors.vncRefused(o.label, 'it could not start TLS');
    await startTls(server, o, ANONYMOUS.has(subtype));
  }
  if (VNC_AUTH_SUBTYPES.has(subtype)) await answerChallenge(server, o);
  else if (PLAIN_SUBTYPES.has(subtype)) sendPlain(server, o.vnc);
  return subtype;
}

const ANONYMOUS: ReadonlySet<number> = new Set([VeNCryptSubtype.TLSNone, VeNCryptSubtype.TLSVnc, VeNCryptSubtype.TLSPlain]);
const VNC_AUTH_SUBTYPES: ReadonlySet<number> = new Set([VeNCryptSubtype.TLSVnc, VeNCryptSubtype.X509Vnc]);
const PLAIN_SUBTYPES: ReadonlySet<number> = new Set([VeNCryptSubtype.Plain, VeNCryptSubtype.TLSPlain, VeNCryptSubtype.X509Plain]);

function chooseSubtype(offered: readonly number[], vnc: VncSettings): number | undefined {
  const password = vnc.password !== undefined;
  const plain = password && vnc.username !== undefined;
  const { X509Plain, X509Vnc, X509None, TLSPlain, TLSVnc, TLSNone, Plain } = VeNCryptSubtype;
  const preference =
    vnc.tls === 'vencrypt'
      ? [
          ...(plain ? [X509Plain] : []),
          ...(password ? [X509Vnc] : []),
          X509None,
          ...(vnc.anonymousTls ? [...(plain ? [TLSPlain] : []), ...(password ? [TLSVnc] : []), TLSNone] : []),
        ]
      : plain
        ? [Plain] // VeNCrypt chosen for its user name: without TLS inside, only Plain is left
        : [];
  return preference.find((subtype) => offered.includes(subtype));
}

async function answerChallenge(server: UpstreamSide, o: HandshakeOptions): Promise<void> {
  const challenge = await server.reader.read(CHALLENGE_LENGTH, 'VNC authentication challenge', o.timeoutMs);
  if (o.vnc.password === undefined) throw errors.vncNoSecurityType(o.label, noUsableType([SecurityType.VncAuthentication], o.vnc));
  server.write(vncAuthResponse(o.vnc.password, challenge));
}

function sendPlain(server: UpstreamSide, vnc: VncSettings): void {
  const username = Buffer.from(vnc.username ?? '', 'utf8');
  const password = Buffer.from(vnc.password ?? '', 'utf8');
  server.write(Buffer.concat([u32(username.length), u32(password.length), username, password]));
}

async function startTls(server: UpstreamSide, o: HandshakeOptions, anonymous: boolean): Promise<void> {
  // Bytes that came in the clear with the go-ahead would be read as if TLS had protected them
  // (STARTTLS injection): a server sends nothing before the TLS handshake, so anyone who does is refused.
  if (server.reader.buffered > 0) throw errors.vncBrokeProtocol(o.label, `it sent ${server.reader.buffered} bytes in the clear where TLS had to begin`);
  const { options, verify } = tlsSetup(o, anonymous);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(errors.handshakeTimeout(o.label, 'TLS handshake', formatDuration(o.timeoutMs))), o.timeoutMs);
  });
  try {
    await Promise.race([server.startTls(options, verify), timedOut]);
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw errors.vncTlsFailed(o.label, (err as Error).message).causedBy(err);
  } finally {
    clearTimeout(timer);
  }
}

/** How the server's certificate is checked: a pinned fingerprint, CAs and the server's name, or (opted into) not at all. */
function tlsSetup(o: HandshakeOptions, anonymous: boolean): { options: ConnectionOptions; verify: (socket: TLSSocket) => void } {
  const { vnc } = o;
  const name = vnc.serverName ?? o.host;
  const servername = name === undefined || isIP(name) ? undefined : name; // SNI carries host names only
  if (anonymous) {
    // Anonymous Diffie-Hellman: no certificate at all, TLS 1.2 at most, and OpenSSL 3 allows it only at security level 0.
    return { options: { servername, ciphers: 'aNULL:@SECLEVEL=0', maxVersion: 'TLSv1.2', rejectUnauthorized: false }, verify: noop };
  }
  if (vnc.fingerprint !== undefined) {
    const pinned = vnc.fingerprint;
    return {
      options: { servername, rejectUnauthorized: false },
      verify(socket) {
        const seen = (socket.getPeerCertificate() as PeerCertificate | undefined)?.fingerprint256;
        // The fingerprint seen comes last: where a close reason is cut short, only it is.
        if (seen !== pinned) throw new Error(`its certificate does not match vnc.fingerprint; it is sha256:${seen ?? 'none'}`);
      },
    };
  }
  if (vnc.insecureSkipVerify) return { options: { servername, rejectUnauthorized: false }, verify: noop };
  // The schema asks for serverName on a socket desktop with TLS; a desktop added otherwise is refused here.
  if (name === undefined) throw errors.vncTlsFailed(o.label, 'a Unix socket has no host name for the certificate to carry: set vnc.serverName');
  return {
    options: { servername, ca: vnc.ca, rejectUnauthorized: true, checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert) },
    verify: noop,
  };
}

/**
 * The server's SecurityResult, where the version sends one (always in 3.8; after any type but
 * None before): its bytes, and on a failure the reason (3.8 gives one, older versions "").
 */
async function readSecurityResult(
  server: HandshakeSide,
  o: HandshakeOptions,
  type: number,
  minor: ProtocolMinor,
): Promise<{ bytes: Buffer; failure?: string } | undefined> {
  if (type === SecurityType.None && minor !== 8) return undefined;
  const bytes = await server.reader.read(4, 'security result', o.timeoutMs);
  if (bytes.readUInt32BE(0) === SecurityResult.Ok) return { bytes };
  return { bytes, failure: minor === 8 ? await readText(server, o, 'reason') : '' };
}

async function readSecurityTypes(server: HandshakeSide, o: HandshakeOptions): Promise<number[]> {
  const [count = 0] = await server.reader.read(1, 'security types', o.timeoutMs);
  if (count === 0) throw errors.vncRefused(o.label, await readText(server, o, 'reason'));
  return [...(await server.reader.read(count, 'security types', o.timeoutMs))];
}

interface ServerInit {
  bytes: Buffer;
  desktop: { width: number; height: number; name: string };
}

async function readServerInit(server: HandshakeSide, o: HandshakeOptions): Promise<ServerInit> {
  const head = await server.reader.read(24, 'ServerInit', o.timeoutMs);
  const nameLength = head.readUInt32BE(20);
  if (nameLength > MAX_TEXT_BYTES) throw errors.vncBrokeProtocol(o.label, `its desktop name would be ${nameLength} bytes long`);
  const name = await server.reader.read(nameLength, 'desktop name', o.timeoutMs);
  return {
    bytes: Buffer.concat([head, name]),
    desktop: { width: head.readUInt16BE(0), height: head.readUInt16BE(2), name: name.toString('utf8') },
  };
}

/** A length-prefixed string of the server's (a refusal's reason), made safe to show. */
async function readText(server: HandshakeSide, o: HandshakeOptions, what: string): Promise<string> {
  const length = (await server.reader.read(4, what, o.timeoutMs)).readUInt32BE(0);
  if (length > MAX_TEXT_BYTES) throw errors.vncBrokeProtocol(o.label, `its ${what} would be ${length} bytes long`);
  const text = (await server.reader.read(length, what, o.timeoutMs)).toString('utf8');
  return text.replace(/[\p{Cc}\p{Cf}]+/gu, ' ').trim();
}

function textBytes(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
}

function serverVersionOf(bytes: Buffer, label: string): ProtocolMinor {
  try {
    return parseProtocolVersion(bytes);
  } catch {
    throw errors.vncBrokeProtocol(label, `it is not a VNC server (it began with ${JSON.stringify(bytes.toString('latin1'))})`);
  }
}

function viewerVersionOf(bytes: Buffer): ProtocolMinor {
  try {
    return parseProtocolVersion(bytes);
  } catch {
    throw errors.viewerBrokeProtocol(`it answered with ${JSON.stringify(bytes.toString('latin1'))}, not an RFB version`);
  }
}

const SECURITY_NAMES: Readonly<Record<number, string>> = { 1: 'None', 2: 'VNC authentication', 19: 'VeNCrypt' };
const SUBTYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(VeNCryptSubtype).map(([name, value]) => [value, name]));

function securityName(type: number): string {
  return SECURITY_NAMES[type] ?? `security type ${type}`;
}

function subtypeName(subtype: number): string {
  return SUBTYPE_NAMES[subtype] ?? String(subtype);
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value, 0);
  return bytes;
}

function noop(): void {}
