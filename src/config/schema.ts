/**
 * The one configuration schema. Config file, environment and flags are merged into one
 * raw object (see sources.ts), validated here once at start-up, then frozen: nothing reads
 * process.env or re-validates later.
 */
import { z } from 'zod';
import { desktopName, groupName, userName } from './names.js';
import { isLoopbackHost, isValidHost, parseHostPort } from '../net/host-port.js';
import { normalizePath, socketPathProblem, UNIX_PREFIX } from '../net/address.js';
import { isOrigin, isPublicUrl, normalizeOrigin } from '../net/origin.js';
import { parseCidr } from '../net/cidr.js';
import { sourcesOf } from './options.js';

const port = z
  .number({ error: 'expected a port number from 1 to 65535' })
  .int('expected a port number from 1 to 65535')
  .min(1, 'expected a port number from 1 to 65535')
  .max(65535, 'expected a port number from 1 to 65535');

const host = z.string({ error: 'expected a host name or IP address' }).refine(isValidHost, 'expected a host name or IP address');

/** The longest setTimeout waits. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const milliseconds = (min: number, fallback: number) =>
  z
    .number({ error: `expected a number of milliseconds, at least ${min}` })
    .int(`expected a whole number of milliseconds, at least ${min}`)
    .min(min, `expected a number of milliseconds, at least ${min}`)
    // Node's timers take at most 2^31-1 ms (24.8 days) and fire at once beyond it.
    .max(MAX_TIMER_MS, `expected at most ${MAX_TIMER_MS} milliseconds (24.8 days), the longest a timer waits`)
    .default(fallback);

const bytes = (min: number, max: number, fallback: number) =>
  z
    .number({ error: `expected a number of bytes from ${min} to ${max}` })
    .int(`expected a whole number of bytes from ${min} to ${max}`)
    .min(min, `expected a number of bytes from ${min} to ${max}`)
    .max(max, `expected a number of bytes from ${min} to ${max}`)
    .default(fallback);

const count = (min: number, max: number, fallback: number) =>
  z
    .number({ error: `expected a whole number from ${min} to ${max}` })
    .int(`expected a whole number from ${min} to ${max}`)
    .min(min, `expected a whole number from ${min} to ${max}`)
    .max(max, `expected a whole number from ${min} to ${max}`)
    .default(fallback);

/** Who a desktop rule names: users and groups. */
const principals = z.strictObject({
  users: z.array(userName, { error: 'expected a list of user names' }).default([]),
  groups: z.array(groupName, { error: 'expected a list of group names' }).default([]),
});

const FINGERPRINT = /^(?:sha256:)?((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})$/i;

/** How the gateway speaks RFB to a desktop: its credentials (so browsers never see them) and TLS. */
const vncSettings = z
  .strictObject({
    /** The VNC password itself; prefer passwordFile or passwordEnv, which keep it out of the config file. */
    password: z.string({ error: 'expected the VNC password' }).min(1, 'expected the VNC password').optional(),
    /** A file holding the password as text (its first line). */
    passwordFile: z.string({ error: 'expected the path of a file holding the VNC password' }).min(1).optional(),
    /** A file written by `vncpasswd` (TigerVNC, TightVNC): the same file Xvnc -PasswordFile reads. */
    vncpasswdFile: z.string({ error: 'expected the path of a file written by vncpasswd' }).min(1).optional(),
    /** An environment variable holding the password. */
    passwordEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected the name of an environment variable')
      .optional(),
    /** For VeNCrypt's Plain subtypes, with the password. */
    username: z.string({ error: 'expected a user name' }).min(1).max(255).optional(),
    tls: z.enum(['none', 'vencrypt', 'tls-first'], { error: 'expected none, vencrypt or tls-first' }).default('none'),
    /** CA certificates (PEM) that must have signed the server's certificate, instead of the system's. */
    ca: z.string({ error: 'expected the path of a PEM file of CA certificates' }).min(1).optional(),
    /** Pin the server's certificate: its SHA-256 fingerprint (`openssl x509 -noout -fingerprint -sha256`). */
    fingerprint: z
      .string()
      .regex(FINGERPRINT, 'expected sha256: and 32 hex bytes, e.g. sha256:AB:CD:…')
      .transform((text) =>
        (FINGERPRINT.exec(text)?.[1] ?? '')
          .replaceAll(':', '')
          .toUpperCase()
          .replace(/..(?!$)/g, '$&:'),
      )
      .optional(),
    /** The name the certificate must carry, when it is not `host`. */
    serverName: host.optional(),
    insecureSkipVerify: z.boolean({ error: 'expected true or false' }).default(false),
    /** VeNCrypt's anonymous TLS subtypes (TLSNone, TLSVnc, TLSPlain), which do not authenticate the server. */
    anonymousTls: z.boolean({ error: 'expected true or false' }).default(false),
    /** ClientInit's shared flag: false lets each new session disconnect the server's other clients. */
    shared: z.boolean({ error: 'expected true or false' }).default(true),
  })
  .superRefine((vnc, ctx) => {
    const issue = (path: string, message: string, input: unknown): void => ctx.addIssue({ code: 'custom', path: [path], message, input });
    const sources = (['password', 'passwordFile', 'vncpasswdFile', 'passwordEnv'] as const).filter((key) => vnc[key] !== undefined);
    if (sources.length > 1) issue(sources[1] as string, `set one of password, passwordFile, vncpasswdFile and passwordEnv, not ${sources.join(' and ')}`, '…');
    if (vnc.username !== undefined && sources.length === 0) issue('username', 'a user name needs a password (passwordFile, passwordEnv, …)', vnc.username);
    const verifiers = (['ca', 'fingerprint', 'insecureSkipVerify'] as const).filter((key) => vnc[key] !== undefined && vnc[key] !== false);
    if (verifiers.length > 1) issue(verifiers[1] as string, `set one of ca, fingerprint and insecureSkipVerify, not ${verifiers.join(' and ')}`, true);
    if (vnc.tls === 'none') {
      for (const key of [...verifiers, ...(vnc.serverName !== undefined ? ['serverName' as const] : [])]) {
        issue(key, `${key} checks the server's certificate: it needs tls: vencrypt or tls-first`, vnc[key]);
      }
    }
    if (vnc.anonymousTls && vnc.tls !== 'vencrypt') issue('anonymousTls', 'anonymousTls is a VeNCrypt setting: it needs tls: vencrypt', true);
    // VeNCrypt's subtype list comes in the clear: anyone on the path could strike the X509 ones, and the pin would never be checked.
    if (vnc.anonymousTls && (vnc.ca !== undefined || vnc.fingerprint !== undefined)) {
      issue('anonymousTls', 'anonymousTls would let anyone on the path remove the X509 subtypes and skip ca or fingerprint: use one or the other', true);
    }
  });

/** A Unix socket's path, normalised: absolute, no NUL, short enough for sun_path. */
const socketPath = z.string({ error: 'expected the absolute path of a Unix socket, e.g. /run/vnc/lab.sock' }).transform((text, ctx) => {
  const path = normalizePath(text);
  const problem = socketPathProblem(path);
  if (problem === undefined) return path;
  ctx.addIssue({ code: 'custom', message: problem, input: text });
  return z.NEVER;
});

/** How a desktop's sessions are recorded. */
const recordSettings = z.strictObject(
  {
    /** Also record what the browser sends (keys typed, passwords too, clicks, clipboard), for audit. */
    input: z.boolean({ error: 'expected true or false' }).default(false),
    /** When the recording fails: `end` the session (it must not run unrecorded), or `continue` it unrecorded. */
    onFailure: z.enum(['end', 'continue'], { error: 'expected end or continue' }).default('continue'),
    /** A session's file stops growing here (then onFailure applies). */
    maxBytesPerSession: bytes(64 * 1024, 2 ** 40, 2 * 1024 ** 3),
    /** This desktop's recordings directory, instead of recordings.dir. */
    dir: z.string({ error: 'expected the path of a directory' }).min(1).optional(),
  },
  { error: 'expected true, false, or {input, onFailure, maxBytesPerSession, dir}' },
);

const desktopFields = z.strictObject({
  name: desktopName,
  host: host.optional(),
  port: port.optional(),
  /** A VNC server listening on a Unix socket (Xvnc -rfbunixpath), instead of host and port. */
  socket: socketPath.optional(),
  description: z.string().max(200, 'expected a description of at most 200 characters').optional(),
  /** Who may open this desktop; unset: every authenticated user. */
  allow: principals.optional(),
  /** Who may only watch it. */
  viewOnly: principals.optional(),
  vnc: vncSettings.optional(),
  /**
   * How sessions share the desktop: `shared` (everyone with access controls it), `exclusive`
   * (one session at a time) or `controlled` (one controller, any number of viewers).
   */
  sharing: z.enum(['shared', 'exclusive', 'controlled'], { error: 'expected shared, exclusive or controlled' }).default('shared'),
  /** Who may take the desktop at once: their own other window's (exclusive), or control from its controller (controlled). */
  takeover: principals.optional(),
  /** Record its sessions (docs/RECORDING.md): `true`, or how. */
  record: z.preprocess((value) => (value === true ? {} : value === false ? undefined : value), recordSettings.optional()),
});

/** A desktop has `host` and `port`, or `socket`: exactly one of the two, and its output says which. */
const desktopObject = desktopFields.transform(({ host, port, socket, ...rest }, ctx) => {
  const issue = (path: PropertyKey[], message: string, input: unknown): void => ctx.addIssue({ code: 'custom', path, message, input });
  if (socket !== undefined) {
    if (host !== undefined || port !== undefined) issue([host !== undefined ? 'host' : 'port'], 'set either socket or host and port, not both', host ?? port);
    else if (rest.vnc && needsServerName(rest.vnc)) issue(['vnc', 'serverName'], SOCKET_SERVER_NAME, undefined);
    else return { ...rest, socket };
  } else if (host === undefined) {
    issue(['host'], 'expected host and port, or socket (the path of a Unix socket)', undefined);
  } else if (port === undefined) {
    issue(['port'], 'expected a port number from 1 to 65535', undefined);
  } else {
    return { ...rest, host, port };
  }
  return z.NEVER;
});

const SOCKET_SERVER_NAME = "a Unix socket has no host name for the server's certificate to carry: set vnc.serverName, or pin vnc.fingerprint";

/** TLS whose certificate is checked against a name: the host's, unless serverName gives one. */
function needsServerName(vnc: z.output<typeof vncSettings>): boolean {
  return vnc.tls !== 'none' && vnc.serverName === undefined && vnc.fingerprint === undefined && !vnc.insecureSkipVerify;
}

/** `--desktop NAME=HOST:PORT`, `NAME=unix:/PATH` and DESKGATE_DESKTOP use this short form. */
const desktopShorthand = z.string().transform((text, ctx): z.input<typeof desktopFields> => {
  const eq = text.indexOf('=');
  const where = text.slice(eq + 1);
  const target = eq <= 0 ? undefined : where.startsWith(UNIX_PREFIX) ? { socket: where.slice(UNIX_PREFIX.length) } : parseHostPort(where);
  if (!target) {
    ctx.addIssue({ code: 'custom', message: 'expected NAME=HOST:PORT or NAME=unix:/PATH, e.g. lab1=10.0.0.5:5901' });
    return z.NEVER;
  }
  return { name: text.slice(0, eq), ...target };
});

const DESKTOP_EXPECTED = 'expected NAME=HOST:PORT, NAME=unix:/PATH, or an object with name, host and port (or socket) and optional description';

/**
 * A value checked by the one schema `pick` chooses for its form, so that an object's errors
 * name its own keys (a union would only say that no form fit); `expected` when none fits.
 */
function oneOf<S extends z.ZodType>(pick: (value: unknown) => S | undefined, expected: string) {
  return z.custom<z.input<S>>().transform((value: unknown, ctx): z.output<S> => {
    const result = pick(value)?.safeParse(value, { reportInput: true });
    if (result?.success) return result.data;
    for (const issue of result?.error.issues ?? [{ code: 'custom' as const, message: expected, input: value, path: [] }]) {
      ctx.addIssue(issue as Parameters<typeof ctx.addIssue>[0] & object);
    }
    return z.NEVER;
  });
}

/** A string is the short form, an object the long one. */
const desktop = oneOf(
  (value) => (typeof value === 'string' ? desktopShorthand.pipe(desktopObject) : isPlainObject(value) ? desktopObject : undefined),
  DESKTOP_EXPECTED,
);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const listen = z.string({ error: 'expected HOST:PORT, e.g. 127.0.0.1:6080' }).transform((text, ctx) => {
  const parsed = parseHostPort(text, { allowPortZero: true });
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: 'expected HOST:PORT, e.g. 127.0.0.1:6080 or [::1]:6080' });
    return z.NEVER;
  }
  return parsed;
});

const PORT_RANGE = /^(\d{1,5})(?:-(\d{1,5}))?$/;

/** An operator's allow rule for ad-hoc `?target=host:port`: a CIDR block and a port range. */
const cidrRule = z.strictObject({
  cidr: z.string().transform(normalizeCidr),
  ports: z.union([z.number().int(), z.string()]).transform((value, ctx) => {
    const match = PORT_RANGE.exec(String(value));
    const from = Number(match?.[1]);
    const to = Number(match?.[2] ?? match?.[1]);
    if (!match || from < 1 || to > 65535 || from > to) {
      ctx.addIssue({ code: 'custom', message: 'expected a port or port range such as 5900-5999' });
      return z.NEVER;
    }
    return { from, to };
  }),
});

/** `{unix: DIR}`: ad-hoc `?target=unix:/PATH` for sockets below that directory (symlinks resolved), and nowhere else. */
const unixRule = z
  .strictObject({
    unix: z.string({ error: 'expected the absolute path of a directory' }).transform((text, ctx) => {
      const path = normalizePath(text);
      if (path.startsWith('/') && !path.includes('\0')) return path;
      ctx.addIssue({ code: 'custom', message: 'expected the absolute path of a directory, e.g. /run/vnc', input: text });
      return z.NEVER;
    }),
  })
  .transform((rule): { unix: string; cidr?: undefined; ports?: undefined } => rule);

const allowRule = oneOf(
  (value) => (isPlainObject(value) ? ('unix' in value ? unixRule : cidrRule) : undefined),
  'expected a rule {cidr, ports} or {unix: DIRECTORY}',
);

/** A CIDR block as the gateway uses it: an IPv4-mapped block becomes the IPv4 block it is. */
function normalizeCidr(text: string, ctx: z.RefinementCtx<string>): string {
  try {
    const { network, prefix } = parseCidr(text);
    return `${network}/${prefix}`;
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, input: text });
    return z.NEVER;
  }
}

const KEEPALIVE_EXPECTED = 'expected 0 (no pings) or a whole number of milliseconds, at least 1000';

const origins = z
  .array(z.string().refine(isOrigin, 'expected an origin such as https://console.example.com'), { error: 'expected a list of origins' })
  .default([])
  .transform((list) => list.map((o) => normalizeOrigin(o) as string));

const secret = z
  .string({ error: 'expected a secret of at least 32 characters' })
  .min(32, 'expected a secret of at least 32 characters (openssl rand -base64 32 makes one)');

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,64}$/, 'expected an HTTP header name')
  .transform((h) => h.toLowerCase());

const API_KEY_HASH = /^sha256:[0-9a-f]{64}$/;

export const configSchema = z
  .strictObject({
    listen: listen.prefault('127.0.0.1:6080'),
    desktops: z.array(desktop, { error: 'expected a list of desktops' }).default([]),
    demo: z.boolean({ error: 'expected true or false' }).optional(),
    /** websockify token files as a desktop source: each token names a desktop. */
    tokens: z
      .strictObject({
        /** A token file, or a directory whose every file is read. */
        source: z.string({ error: 'expected the path of a token file or directory' }).min(1).optional(),
        /** `lines`: `token: host:port` per line (websockify's TokenFile); `filenames`: a directory whose file names are the tokens, each holding `host:port` (TokenFileName). */
        format: z.enum(['lines', 'filenames'], { error: 'expected lines or filenames' }).default('lines'),
        /** Whether the dashboard lists them: tokens are often secrets, so only who knows one opens its desktop. */
        listed: z.boolean({ error: 'expected true or false' }).default(false),
      })
      .prefault({}),
    /** The desktop an upgrade without `desktop`, `token` or `target` opens, as a single-target websockify does. */
    defaultDesktop: z.string({ error: 'expected a desktop name' }).min(1).optional(),
    /** The path sessions' WebSockets open on (below basePath); `*`: any path that is not one of the gateway's pages. */
    websocketPath: z
      .string({ error: "expected a path such as /websockify, or '*'" })
      .refine(
        (path) => path === '*' || (/^(?:\/[A-Za-z0-9._~-]+)+$/.test(path) && !/\/\.\.?(\/|$)/.test(path)),
        "expected a path such as /websockify, or '*' for any path",
      )
      .default('/websockify'),
    /** A directory served as it is below the gateway's own routes (websockify's --web), e.g. Debian's noVNC. */
    web: z.string({ error: 'expected the path of a directory' }).min(1).optional(),
    /** Session recordings (docs/RECORDING.md): where they go, how long they stay, who may play them. */
    recordings: z
      .strictObject({
        dir: z.string({ error: 'expected the path of a directory' }).min(1).optional(),
        /** Files older than this are removed; 0 keeps them. */
        retentionDays: count(0, 36_500, 30),
        /** Who may list and play a recording besides administrators: `own` (its user) or `admins` (no one else). */
        access: z.enum(['own', 'admins'], { error: 'expected own or admins' }).default('own'),
        /** A session's recording waits in memory up to this much for the disk; beyond it the disk cannot keep up. */
        maxQueuedBytes: bytes(64 * 1024, 256 * 1024 * 1024, 4 * 1024 * 1024),
      })
      .prefault({}),
    /** For a gateway started on demand: exit when unused (websockify's --idle-timeout and --timeout). */
    lifetime: z.strictObject({ exitAfterIdleMs: milliseconds(0, 0), acceptForMs: milliseconds(0, 0) }).prefault({}),
    targets: z.strictObject({ allow: z.array(allowRule, { error: 'expected a list of {cidr, ports} rules' }).default([]) }).default({ allow: [] }),
    session: z
      .strictObject({
        connectTimeoutMs: milliseconds(100, 5_000),
        /** The longest the gateway waits for any one answer of the VNC server or the viewer during the RFB handshake. */
        handshakeTimeoutMs: milliseconds(100, 10_000),
        idleTimeoutMs: milliseconds(1_000, 30 * 60_000),
        maxDurationMs: milliseconds(1_000, 12 * 60 * 60_000),
        /** A WebSocket ping this often (0: none); a browser that misses one is cut with 4408. Under proxies' 60 s idle cut. */
        keepaliveMs: z
          .number({ error: KEEPALIVE_EXPECTED })
          .int(KEEPALIVE_EXPECTED)
          .refine((ms) => ms === 0 || ms >= 1_000, KEEPALIVE_EXPECTED)
          .default(25_000),
        maxMessageBytes: bytes(1024, 64 * 1024 * 1024, 1024 * 1024),
        /** How long the controller of a `controlled` desktop has to answer a request for control; silence is a no. */
        controlRequestTimeoutMs: milliseconds(1_000, 30_000),
        highWaterMarkBytes: bytes(16 * 1024, 64 * 1024 * 1024, 1024 * 1024),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxSessions: count(1, 1_000_000, 10_000),
        maxSessionsPerAddress: count(1, 1_000_000, 100),
        maxSessionsPerUser: count(1, 1_000_000, 20),
      })
      .prefault({}),
    auth: z
      .strictObject({
        mode: z.enum(['none', 'password', 'header'], { error: 'expected none, password or header' }).default('none'),
        /** Lets mode `none` listen beyond loopback: for an isolated lab only. */
        insecureNoAuth: z.boolean({ error: 'expected true or false' }).default(false),
        usersFile: z.string({ error: 'expected the path of a users file (YAML)' }).min(1).optional(),
        /** Signs login cookies; random per process when unset (logins then end with a restart). */
        secret: secret.optional(),
        sessionTtlMs: milliseconds(60_000, 8 * 60 * 60_000),
        userHeader: headerName.default('x-forwarded-user'),
        groupsHeader: headerName.default('x-forwarded-groups'),
        maxFailedLogins: count(1, 1000, 5),
        failedLoginWindowMs: milliseconds(1_000, 5 * 60_000),
        failedLoginBlockMs: milliseconds(1_000, 5 * 60_000),
      })
      .prefault({}),
    tickets: z
      .strictObject({
        /** HS256: the gateway signs and verifies with this shared secret. */
        secret: secret.optional(),
        /** EdDSA or ES256: verify tickets a host application signs with its private key. */
        publicKeyFile: z.string().min(1).optional(),
        /** With publicKeyFile: lets the gateway sign tickets itself (POST /api/tickets, `deskgate ticket`). */
        privateKeyFile: z.string().min(1).optional(),
        apiKeys: z
          .array(z.string().regex(API_KEY_HASH, 'expected sha256:<64 hex digits> (deskgate api-key prints one)'), {
            error: 'expected a list of API key hashes',
          })
          .default([]),
        defaultTtlSeconds: count(1, 86_400, 60),
        maxTtlSeconds: count(1, 86_400, 300),
      })
      .prefault({}),
    /** Who may list every live session, end one and change its role (GET /api/sessions, the sessions page). */
    admins: principals.prefault({}),
    /** Nodes that share sessions' state through Redis; unset: this node alone, in memory. */
    cluster: z
      .strictObject({
        /** redis://[user:password@]host:port[/db], or rediss:// for TLS. */
        redis: z
          .string({ error: 'expected a Redis URL such as redis://127.0.0.1:6379' })
          .refine(isRedisUrl, 'expected a Redis URL such as redis://127.0.0.1:6379 or rediss://redis.example.com:6380')
          .optional(),
        /** The Redis password, kept out of the URL: from a file (its first line) or DESKGATE_REDIS_PASSWORD. */
        redisPasswordFile: z.string().min(1).optional(),
        redisPassword: z.string().min(1).optional(),
        /** CA certificates (PEM) for rediss://, instead of the system's. */
        redisCa: z.string().min(1).optional(),
        /** Put before every key and channel name, so several gateways (or other programs) can share one Redis. */
        keyPrefix: z
          .string()
          .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'expected up to 64 letters, digits, ":", "_", "." or "-"')
          .default('deskgate:'),
        /** This node's name in the admin list and in Redis; host, pid and a random tag when unset. */
        node: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected up to 64 letters, digits, ".", "_" or "-"')
          .optional(),
        /** How long a dead node's desktops stay held and its sessions listed. */
        leaseTtlMs: milliseconds(1_000, 15_000),
      })
      .prefault({}),
    tls: z
      .strictObject({
        cert: z.string({ error: 'expected the path of a PEM certificate chain' }).min(1),
        key: z.string({ error: 'expected the path of a PEM private key' }).min(1),
      })
      .optional(),
    /** Proxies whose X-Forwarded-* headers (and identity headers in auth mode header) are believed. */
    trustProxy: z.array(z.string().transform(normalizeCidr), { error: 'expected a list of CIDR blocks' }).default([]),
    /**
     * The path prefix the gateway serves everything under, e.g. /desktops: for a proxy that
     * passes paths through unchanged, or a plain node:http server it is mounted in. A proxy that
     * strips the prefix says so with X-Forwarded-Prefix instead; Express's mount point is read too.
     */
    basePath: z
      .string({ error: 'expected a path prefix such as /desktops' })
      .transform((path) => path.replace(/\/+$/, ''))
      .refine(
        (path) => /^(?:\/[A-Za-z0-9._~-]+)*$/.test(path) && !/\/\.\.?(\/|$)/.test(path),
        'expected a path prefix such as /desktops: letters, digits, ".", "_", "~", "-" between slashes',
      )
      .default(''),
    /** The URL users reach the gateway at (it may carry a path), for links the CLI prints; defaults to the listen address and basePath. */
    publicUrl: z
      .string()
      .transform((url) => url.replace(/\/+$/, ''))
      .refine(isPublicUrl, 'expected an http(s) URL such as https://desktops.example.com or https://example.com/desktops, without query or fragment')
      .optional(),
    http: z
      .strictObject({
        headersTimeoutMs: milliseconds(1_000, 10_000),
        requestTimeoutMs: milliseconds(1_000, 30_000),
        idleTimeoutMs: milliseconds(1_000, 30_000),
        maxHeaderBytes: bytes(1024, 1024 * 1024, 16 * 1024),
      })
      .prefault({}),
    probe: z
      .strictObject({
        timeoutMs: milliseconds(100, 1_500),
        cacheMs: milliseconds(0, 5_000),
      })
      .prefault({}),
    allowedOrigins: origins,
    requireOrigin: z.boolean({ error: 'expected true or false' }).default(false),
    /** Pages that may embed the viewer in a frame, besides the gateway's own. */
    frameAncestors: origins,
    shutdownTimeoutMs: milliseconds(0, 10_000),
    /** Prometheus metrics: off unless `listen` is set, served there only (GET /metrics), apart from the public port. */
    metrics: z.strictObject({ listen: listen.optional() }).prefault({}),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
            error: 'expected one of fatal, error, warn, info, debug, trace, silent',
          })
          .default('info'),
        /** `auto`: coloured lines for a person when stdout is a terminal, JSON lines otherwise. */
        format: z.enum(['auto', 'json', 'pretty'], { error: 'expected auto, json or pretty' }).default('auto'),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.desktops.forEach((d, i) => {
      if (seen.has(d.name)) ctx.addIssue({ code: 'custom', path: ['desktops', i, 'name'], message: `desktop name '${d.name}' is used twice`, input: d.name });
      seen.add(d.name);
    });
    if (config.demo && seen.has(DEMO_DESKTOP)) {
      ctx.addIssue({
        code: 'custom',
        path: ['demo'],
        message: `the built-in demo desktop needs the name '${DEMO_DESKTOP}', which a configured desktop already uses`,
        input: true,
      });
    }
    config.desktops.forEach((d, i) => {
      if (d.record && d.record.dir === undefined && config.recordings.dir === undefined) {
        ctx.addIssue({ code: 'custom', path: ['desktops', i, 'record'], message: 'recording needs recordings.dir (or record.dir)', input: true });
      }
    });
    if (config.tokens.format === 'filenames' && config.tokens.source === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tokens', 'format'], message: 'tokens.format needs tokens.source', input: 'filenames' });
    }
    const { auth, tickets } = config;
    const issue = (path: PropertyKey[], message: string, input: unknown): void => ctx.addIssue({ code: 'custom', path, message, input });
    if (auth.mode === 'none' && !auth.insecureNoAuth && !isLoopbackHost(config.listen.host)) {
      issue(
        ['auth', 'mode'],
        `listening on ${config.listen.host} without authentication would open every desktop to anyone who can reach it; ` +
          'set auth.mode to password or header (see the README, section Security), or auth.insecureNoAuth (--insecure-no-auth) for an isolated lab',
        'none',
      );
    }
    if (auth.mode === 'password' && !auth.usersFile) issue(['auth', 'usersFile'], 'auth.mode password needs a users file', undefined);
    if (auth.mode === 'header' && config.trustProxy.length === 0) {
      issue(['trustProxy'], 'auth.mode header needs the addresses of the proxies that set the identity headers', []);
    }
    if (tickets.secret && tickets.publicKeyFile) issue(['tickets'], 'set either tickets.secret or tickets.publicKeyFile, not both', 'both');
    config.trustProxy.forEach((cidr, i) => {
      if (cidr.endsWith('/0'))
        issue(['trustProxy', i], 'trusting every address would let anyone write X-Forwarded-* (and identity headers in mode header); name the proxies', cidr);
    });
    if (tickets.privateKeyFile && !tickets.publicKeyFile)
      issue(['tickets', 'privateKeyFile'], 'tickets.privateKeyFile needs tickets.publicKeyFile', tickets.privateKeyFile);
    if (tickets.apiKeys.length > 0 && !tickets.secret && !tickets.privateKeyFile) {
      issue(['tickets', 'apiKeys'], 'issuing tickets needs tickets.secret, or tickets.publicKeyFile with tickets.privateKeyFile', '[...]');
    }
    const { cluster } = config;
    if (!cluster.redis) {
      for (const key of ['redisPasswordFile', 'redisPassword', 'redisCa'] as const) {
        if (cluster[key] !== undefined) issue(['cluster', key], `cluster.${key} needs cluster.redis`, key === 'redisPassword' ? '…' : cluster[key]);
      }
    }
    if (cluster.redisPasswordFile && cluster.redisPassword)
      issue(['cluster', 'redisPassword'], 'set either cluster.redisPasswordFile or cluster.redisPassword, not both', '…');
    if (tickets.defaultTtlSeconds > tickets.maxTtlSeconds) {
      issue(['tickets', 'defaultTtlSeconds'], `expected at most tickets.maxTtlSeconds (${tickets.maxTtlSeconds})`, tickets.defaultTtlSeconds);
    }
  })
  .transform((config) => ({ ...config, demo: config.demo ?? config.desktops.length === 0 }));

export const DEMO_DESKTOP = 'demo';

function isRedisUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '';
  } catch {
    return false;
  }
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type DesktopConfig = Config['desktops'][number];
export type VncConfig = NonNullable<DesktopConfig['vnc']>;
export type RecordSettings = z.output<typeof recordSettings>;
export type AllowRule = Config['targets']['allow'][number];

/** A bad flag, value or configuration: the operator's to fix (exit code 2). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'DG_ERR_CONFIG';
}

/** A file the operator named, under `key`, that cannot be read or used: theirs to fix too (exit code 2). */
export class FileError extends Error {
  override readonly name = 'FileError';
  readonly code = 'DG_ERR_FILE';

  constructor(
    readonly key: string,
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Validate once, then deep-freeze: the rest of the program can trust and share it. */
export function parseConfig(raw: unknown): Config {
  return deepFreeze(validate(configSchema, raw, []));
}

/** One desktop, as the config file's `desktops` takes it (NAME=HOST:PORT or an object): for adding one at run time. */
export function parseDesktop(raw: unknown): DesktopConfig {
  return deepFreeze(validate(desktop, raw, ['desktop']));
}

/** The schema's output, or a ConfigError with one line per problem: the key, what the user typed, what was expected. */
function validate<S extends z.ZodType>(schema: S, raw: unknown, path: PropertyKey[]): z.output<S> {
  const result = schema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = formatPath([...path, ...issue.path]);
      const source = sourcesOf(key.replace(/\[\d+\]$/, '')); // names what the user actually typed
      const value = SECRET_KEY.test(key) ? '(not shown)' : 'input' in issue && issue.input !== undefined ? JSON.stringify(issue.input, hideSecrets) : 'nothing';
      return `  ${key}${source ? ` (${source})` : ''}: got ${value}; ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}

/** Keys whose values an error never shows: a secret, a password, and what holds one. */
const SECRET_KEY = /secret|password(?!(File|Env)\b)|(^|\.)redis$/i;

function hideSecrets(key: string, value: unknown): unknown {
  return key && SECRET_KEY.test(key) ? '(not shown)' : value;
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(config)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
