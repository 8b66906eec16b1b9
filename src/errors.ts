/**
 * The one catalogue of gateway errors. Every refusal or failure a user can see has a
 * stable `code`, the HTTP status and WebSocket close code it maps to, and a sentence with
 * enough context to act on. `ERRORS` holds the codes; `errors` holds every sentence, once:
 * throw sites call it instead of writing their own. A test checks the catalogue against the
 * README's table both ways, and that the viewer has words for every close code.
 */

export const ERRORS = {
  DG_ERR_BAD_REQUEST: {
    status: 400,
    closeCode: 4400,
    summary: 'malformed request: bad desktop name, bad target syntax, not exactly one of `desktop`/`target`',
  },
  DG_ERR_RFB_CLIENT: {
    status: 400,
    closeCode: 4400,
    summary: 'the viewer broke the RFB protocol, or sent a message type the gateway does not know where it must read every message',
  },
  DG_ERR_UNAUTHENTICATED: {
    status: 401,
    closeCode: 4401,
    summary: 'authentication required or failed; during a session: the user logged out, or their account or password changed',
  },
  DG_ERR_FORBIDDEN: { status: 403, closeCode: 4403, summary: 'desktop or target outside the policy (e.g. ad-hoc targets disabled, or not in the allow rules)' },
  DG_ERR_UNKNOWN_DESKTOP: { status: 404, closeCode: 4404, summary: 'unknown desktop or token' },
  DG_ERR_UNKNOWN_SESSION: { status: 404, closeCode: 4404, summary: 'the admin API named a session that is not live on any node' },
  DG_ERR_UNKNOWN_RECORDING: { status: 404, closeCode: 4404, summary: 'no recording has this id, or it is not one this user may see' },
  DG_ERR_NOT_ENABLED: { status: 404, closeCode: 4404, summary: 'a feature this gateway does not have configured (the ticket API, recordings)' },
  DG_ERR_IDLE_TIMEOUT: { status: 408, closeCode: 4408, summary: 'no traffic for `session.idleTimeoutMs`' },
  DG_ERR_NO_PONG: { status: 408, closeCode: 4408, summary: 'the browser answered no WebSocket ping for `session.keepaliveMs` (it or the path to it is gone)' },
  DG_ERR_VIEWER_TIMEOUT: { status: 408, closeCode: 4408, summary: 'the viewer did not answer in time during the RFB handshake' },
  DG_ERR_SESSION_EXPIRED: { status: 408, closeCode: 4408, summary: '`session.maxDurationMs` reached' },
  DG_ERR_CONFLICT: { status: 409, closeCode: 4409, summary: 'the desktop is held by another session (`sharing: exclusive`)' },
  DG_ERR_TAKEN_OVER: { status: 409, closeCode: 4409, summary: 'this session was taken over from another window, or lost its hold on an exclusive desktop' },
  DG_ERR_ENDED_BY_ADMIN: { status: 409, closeCode: 4409, summary: 'an administrator ended this session (`DELETE /api/sessions/ID`)' },
  DG_ERR_TOO_LARGE: { status: 413, closeCode: 1009, summary: 'a WebSocket message over `session.maxMessageBytes`, or a request body over its limit' },
  DG_ERR_UNSUPPORTED: { status: 415, closeCode: 1003, summary: 'a text WebSocket message (RFB is binary), or a request body of the wrong type' },
  DG_ERR_TOO_MANY_SESSIONS: { status: 429, closeCode: 4429, summary: 'too many sessions (global, per user or per address)' },
  DG_ERR_THROTTLED: { status: 429, closeCode: 4429, summary: 'too many failed logins or API keys from this address' },
  DG_ERR_INTERNAL: { status: 500, closeCode: 1011, summary: 'an unexpected error in the gateway (a bug: the log has the details)' },
  DG_ERR_BODY_CONSUMED: {
    status: 500,
    closeCode: 1011,
    summary: "mounted in a host application: a request body was read before the gateway got it, and the host's body parser left nothing in `req.body`",
  },
  DG_ERR_UPSTREAM: { status: 500, closeCode: 4500, summary: 'the VNC server closed or broke the connection during the session' },
  DG_ERR_RECORDING_FAILED: {
    status: 507,
    closeCode: 4507,
    summary: 'the session was being recorded and the recording failed (disk full, unwritable, too slow, size limit) with `onFailure: end`',
  },
  DG_ERR_CONNECT_FAILED: { status: 502, closeCode: 4502, summary: 'could not connect to the VNC server (refused, DNS failure, unreachable)' },
  DG_ERR_VNC_AUTH_FAILED: { status: 502, closeCode: 4502, summary: "the VNC server rejected the gateway's credentials (`vnc.password`, `vnc.username`)" },
  DG_ERR_VNC_SECURITY: { status: 502, closeCode: 4502, summary: 'the VNC server offers no security type the gateway may use with this desktop' },
  DG_ERR_VNC_TLS: {
    status: 502,
    closeCode: 4502,
    summary: 'TLS to the VNC server failed: its certificate did not verify against `vnc.ca` or `vnc.fingerprint`, or the TLS handshake broke',
  },
  DG_ERR_VNC_PROTOCOL: { status: 502, closeCode: 4502, summary: 'the VNC server broke the RFB handshake (not a VNC server, or a malformed answer)' },
  DG_ERR_NOT_READY: { status: 503, closeCode: 4503, summary: 'gateway not ready, shutting down, or too busy to check a password' },
  DG_ERR_STORE_UNAVAILABLE: {
    status: 503,
    closeCode: 4503,
    summary: 'the cluster store (Redis) cannot be reached: sessions that need it (exclusive, controlled, tickets, logins) are refused until it is back',
  },
  DG_ERR_CONNECT_TIMEOUT: { status: 504, closeCode: 4504, summary: 'connecting to the VNC server timed out' },
  DG_ERR_HANDSHAKE_TIMEOUT: { status: 504, closeCode: 4504, summary: 'the RFB handshake did not finish within `session.handshakeTimeoutMs`' },
} as const satisfies Record<string, { status: number; closeCode: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** Close codes below 4000 keep their RFC 6455 meaning. */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
} as const;

/** WebSocket close reasons are limited to 123 bytes of UTF-8. */
const MAX_REASON_BYTES = 123;

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;
  readonly closeCode: number;
  readonly status: number;
  /** Who was refused, when the gateway knew by then: for the log. */
  user: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.closeCode = ERRORS[code].closeCode;
    this.status = ERRORS[code].status;
  }

  /** The message as a WebSocket close reason: what the viewer shows the user. */
  get reason(): string {
    return truncateReason(this.message);
  }

  /** This error, naming who was refused. */
  of(user: string): this {
    this.user = user;
    return this;
  }

  /** This error with what caused it attached, for the log. */
  causedBy(cause: unknown): this {
    Object.defineProperty(this, 'cause', { value: cause, writable: true, configurable: true });
    return this;
  }
}

const make =
  <A extends unknown[]>(code: ErrorCode, message: (...args: A) => string) =>
  (...args: A): GatewayError =>
    new GatewayError(code, message(...args));

/** Every sentence the gateway refuses or ends something with, by what happened. */
export const errors = {
  // What was asked for
  malformedUrl: make('DG_ERR_BAD_REQUEST', () => 'Malformed URL'),
  notOneTarget: make('DG_ERR_BAD_REQUEST', () => 'Name exactly one desktop (?desktop=NAME or ?token=TOKEN) or one target (?target=HOST:PORT)'),
  malformedDesktopName: make('DG_ERR_BAD_REQUEST', () => 'Malformed desktop name: use letters, digits, ".", "_" and "-"'),
  malformedToken: make('DG_ERR_BAD_REQUEST', () => 'Malformed token: expected 1 to 256 characters, no control characters'),
  malformedTarget: make('DG_ERR_BAD_REQUEST', () => 'Malformed target: expected HOST:PORT or [IPv6]:PORT'),
  malformedViewKey: make('DG_ERR_BAD_REQUEST', () => 'Malformed view key: expected 22 to 128 letters, digits, "-" and "_"'),
  ticketForOneDesktop: make('DG_ERR_BAD_REQUEST', () => 'A ticket opens one desktop: ?desktop=NAME&ticket=TICKET'),
  unknownDesktop: make('DG_ERR_UNKNOWN_DESKTOP', (name: string) => `There is no desktop named '${name}'`),
  malformedRecordingId: make('DG_ERR_BAD_REQUEST', () => 'Malformed recording id: expected a UUID in lower-case hex'),
  unknownRecording: make('DG_ERR_UNKNOWN_RECORDING', (id: string) => `There is no recording '${id}'`),

  // Who is asking
  logInFirst: make('DG_ERR_UNAUTHENTICATED', () => 'Log in first'),
  authenticationRequired: make('DG_ERR_UNAUTHENTICATED', () => 'Authentication required'),
  signInThroughSso: make('DG_ERR_UNAUTHENTICATED', () => "Authentication required: sign in through your organisation's single sign-on"),
  wrongPassword: make('DG_ERR_UNAUTHENTICATED', () => 'Wrong user name or password'),
  apiKeyRequired: make('DG_ERR_UNAUTHENTICATED', () => 'Send a valid API key as Authorization: Bearer KEY'),
  loggedOut: make('DG_ERR_UNAUTHENTICATED', () => 'You logged out'),
  accountChanged: make('DG_ERR_UNAUTHENTICATED', () => 'Your account was removed or its password changed: log in again'),
  ticketsNotEnabled: make('DG_ERR_UNAUTHENTICATED', () => 'Tickets are not enabled on this gateway'),
  ticketInvalid: make('DG_ERR_UNAUTHENTICATED', () => 'The ticket is not valid'),
  ticketExpired: make('DG_ERR_UNAUTHENTICATED', () => 'The ticket has expired: ask for a new one'),
  ticketTooLong: make('DG_ERR_UNAUTHENTICATED', (maxSeconds: number) => `The ticket lives longer than this gateway allows (${maxSeconds} s)`),
  ticketFromBeforeStart: make('DG_ERR_UNAUTHENTICATED', () => 'The ticket was issued before the gateway last started: ask for a new one'),
  ticketUsed: make('DG_ERR_UNAUTHENTICATED', () => 'The ticket has already been used: ask for a new one'),

  // What they may do
  foreignHost: make(
    'DG_ERR_FORBIDDEN',
    (host: string) => `Host ${host} is not a name of this gateway: without authentication it answers to IP addresses, localhost and the host of publicUrl only`,
  ),
  foreignOrigin: make(
    'DG_ERR_FORBIDDEN',
    (origin: string, own: string) =>
      `Origin ${origin} is not allowed: this gateway takes itself for ${own}. Behind a proxy, pass the Host header ` +
      '(or X-Forwarded-Host and X-Forwarded-Proto, from an address in trustProxy); for another site, add its origin to allowedOrigins',
  ),
  originRequired: make('DG_ERR_FORBIDDEN', () => 'An Origin header is required'),
  foreignPost: make('DG_ERR_FORBIDDEN', () => 'Cross-site form posts are not accepted'),
  notAllowed: make('DG_ERR_FORBIDDEN', (user: string, desktop: string) => `${user} may not open desktop '${desktop}'`),
  ticketForAnotherDesktop: make('DG_ERR_FORBIDDEN', () => 'The ticket is for another desktop'),
  targetsNotEnabled: make('DG_ERR_FORBIDDEN', () => 'Ad-hoc targets are not enabled on this gateway'),
  targetNotAllowed: make('DG_ERR_FORBIDDEN', (target: string) => `Target ${target} is not allowed by this gateway's rules`),
  ticketApiNotEnabled: make('DG_ERR_NOT_ENABLED', () => 'This gateway does not issue tickets (configure tickets and tickets.apiKeys)'),
  recordingsNotEnabled: make('DG_ERR_NOT_ENABLED', () => "This gateway does not record sessions (configure recordings.dir and a desktop's record)"),

  // Sharing
  inUse: make('DG_ERR_CONFLICT', (desktop: string, user: string, since: string) => `Desktop '${desktop}' is in use by ${user} since ${since}`),
  takenOver: make('DG_ERR_TAKEN_OVER', (user: string) => `Taken over by ${user} from another window`),
  leaseLost: make('DG_ERR_TAKEN_OVER', (desktop: string) => `This session lost its hold on desktop '${desktop}' to another session`),
  storeRecovering: make(
    'DG_ERR_STORE_UNAVAILABLE',
    () => 'The cluster store (Redis) has just restarted and is learning who holds which desktop: try again in a few seconds',
  ),
  holdLapsed: make('DG_ERR_STORE_UNAVAILABLE', (desktop: string) => `The cluster store (Redis) is out of reach: this session's hold on '${desktop}' lapsed`),
  endedByAdmin: make('DG_ERR_ENDED_BY_ADMIN', (admin: string) => `Ended by an administrator (${admin})`),
  storeUnavailable: make(
    'DG_ERR_STORE_UNAVAILABLE',
    () => 'The gateway cannot reach its cluster store (Redis), which this session needs: try again in a moment',
  ),
  noSessionForViewKey: make('DG_ERR_UNKNOWN_SESSION', () => 'No live session has this view key: the session ended, or the key is wrong'),
  notAdmin: make('DG_ERR_FORBIDDEN', (user: string) => `${user} is not an administrator of this gateway`),
  noSuchSession: make('DG_ERR_UNKNOWN_SESSION', (id: string) => `There is no live session ${id}`),
  roleFixed: make(
    'DG_ERR_CONFLICT',
    (id: string) => `Session ${id} relays its input unparsed (it opened with control on a shared or exclusive desktop): its role cannot change, end it instead`,
  ),

  // Limits
  gatewayFull: make('DG_ERR_TOO_MANY_SESSIONS', (limit: number) => `The gateway is at its limit of ${limit} sessions`),
  tooManyFromAddress: make('DG_ERR_TOO_MANY_SESSIONS', (address: string, limit: number) => `Too many sessions from ${address} (limit ${limit})`),
  tooManyForUser: make('DG_ERR_TOO_MANY_SESSIONS', (user: string, limit: number) => `Too many sessions for ${user} (limit ${limit})`),
  tooManyPresenceChannels: make('DG_ERR_TOO_MANY_SESSIONS', (limit: number) => `This session has ${limit} presence channels open already`),
  throttled: make('DG_ERR_THROTTLED', () => 'Too many failed attempts from this address'),
  loginsBlocked: make(
    'DG_ERR_THROTTLED',
    (minutes: number) => `Too many failed logins from your address: try again in ${minutes} minute${minutes === 1 ? '' : 's'}`,
  ),
  busyCheckingLogins: make('DG_ERR_NOT_READY', () => 'The gateway is busy checking other logins: try again in a moment'),
  formTooLarge: make('DG_ERR_TOO_LARGE', () => 'The form is too large'),
  bodyTooLarge: make('DG_ERR_TOO_LARGE', (limit: number) => `The request body is larger than ${limit} bytes`),
  notAForm: make('DG_ERR_UNSUPPORTED', () => 'Expected a form (application/x-www-form-urlencoded)'),
  notJson: make('DG_ERR_UNSUPPORTED', () => 'Expected Content-Type: application/json'),
  bodyNotJson: make('DG_ERR_BAD_REQUEST', () => 'The request body is not valid JSON'),
  badField: make('DG_ERR_BAD_REQUEST', (field: string, expected: string) => `${field}: ${expected}`),
  textMessage: make('DG_ERR_UNSUPPORTED', () => 'Text messages are not supported: the RFB stream is binary'),

  // The RFB handshake and the view-only filter
  viewerBrokeProtocol: make('DG_ERR_RFB_CLIENT', (what: string) => `The viewer broke the RFB protocol: ${what}`),
  unknownClientMessage: make(
    'DG_ERR_RFB_CLIENT',
    (type: number) => `The viewer sent RFB message type ${type}, which the gateway does not know: it cannot tell where the message ends`,
  ),
  viewOnlyNotFollowed: make(
    'DG_ERR_FORBIDDEN',
    (label: string) => `${label} uses a security type the gateway cannot follow: view-only access needs gateway-held VNC credentials (vnc: in the config)`,
  ),
  vncPasswordRejected: make(
    'DG_ERR_VNC_AUTH_FAILED',
    (label: string, why: string) => `${label} rejected the gateway's VNC credentials${why ? ` (${why})` : ''}`,
  ),
  vncNoSecurityType: make('DG_ERR_VNC_SECURITY', (label: string, why: string) => `${label}: ${why}`),
  vncTlsFailed: make('DG_ERR_VNC_TLS', (label: string, why: string) => `${label}: TLS failed (${why})`),
  vncPasswordWrong: make('DG_ERR_UNAUTHENTICATED', (label: string, why: string) => `${label} rejected the VNC password${why ? ` (${why})` : ''}`),
  vncRefused: make('DG_ERR_VNC_PROTOCOL', (label: string, why: string) => `${label} refused the connection${why ? `: ${why}` : ''}`),
  vncClosed: make(
    'DG_ERR_VNC_PROTOCOL',
    (label: string, waitingFor: string) => `${label} closed the connection during the RFB handshake (before its ${waitingFor})`,
  ),
  vncBrokeProtocol: make('DG_ERR_VNC_PROTOCOL', (label: string, what: string) => `${label} broke the RFB handshake: ${what}`),
  handshakeTimeout: make('DG_ERR_HANDSHAKE_TIMEOUT', (label: string, waitingFor: string, duration: string) => `${label}: no ${waitingFor} within ${duration}`),
  viewerTimeout: make('DG_ERR_VIEWER_TIMEOUT', (waitingFor: string, duration: string) => `The viewer sent no ${waitingFor} within ${duration}`),

  // The session
  idle: make('DG_ERR_IDLE_TIMEOUT', (duration: string) => `Session closed after ${duration} without activity`),
  noPong: make('DG_ERR_NO_PONG', (duration: string) => `The browser answered no ping for ${duration}: the connection is gone`),
  expired: make('DG_ERR_SESSION_EXPIRED', (duration: string) => `Session reached its maximum duration of ${duration}`),
  upstreamClosed: make('DG_ERR_UPSTREAM', (label: string) => `${label} closed the connection`),
  upstreamBroke: make('DG_ERR_UPSTREAM', (label: string, why: string) => `${label} broke the connection (${why})`),
  unreachable: make('DG_ERR_CONNECT_FAILED', (label: string, why: string) => `${label} is not reachable (${why})`),
  connectTimeout: make('DG_ERR_CONNECT_TIMEOUT', (label: string, ms: number) => `${label} did not answer within ${ms} ms`),
  shuttingDown: make('DG_ERR_NOT_READY', () => 'The gateway is shutting down'),
  internal: make('DG_ERR_INTERNAL', () => 'Unexpected gateway error'),
  recordingFailed: make('DG_ERR_RECORDING_FAILED', () => 'Recording failed: the session cannot continue'),
  bodyReadByHost: make(
    'DG_ERR_BODY_CONSUMED',
    () =>
      'The request body was read by another handler before deskgate, which left nothing in req.body: mount deskgate before ' +
      "the body parser (Express: before express.urlencoded() and express.json()), or, in Fastify, give deskgate's routes a " +
      'content-type parser that leaves the body unread (README: "Using it as a library")',
  ),
};

export function truncateReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_REASON_BYTES) return text;
  let cut = text.slice(0, MAX_REASON_BYTES);
  while (Buffer.byteLength(`${cut}…`) > MAX_REASON_BYTES) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Words for the socket errors a connect or a session can end with. */
const SOCKET_ERROR_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'name not found',
  ENOENT: 'no such socket',
  EACCES: 'permission denied',
  EAI_AGAIN: 'name lookup failed',
  EPIPE: 'broken pipe',
  ETIMEDOUT: 'timed out',
};

export function describeSocketError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && SOCKET_ERROR_WORDS[code]) return SOCKET_ERROR_WORDS[code];
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** "90 s", "1 minute", "12 hours": for close reasons people read. */
export function formatDuration(ms: number): string {
  const plural = (n: number, unit: string): string => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return plural(ms / 3_600_000, 'hour');
  if (ms >= 60_000 && ms % 60_000 === 0) return plural(ms / 60_000, 'minute');
  return `${Math.round(ms / 100) / 10} s`;
}
