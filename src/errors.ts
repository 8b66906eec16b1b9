/**
 * The one catalogue of gateway errors. Every refusal or failure a user can see has a
 * stable `code`, the WebSocket close code and HTTP status it maps to, and a message
 * with enough context to act on. The README's close-code table is checked against
 * this catalogue by a test.
 */

export const ERRORS = {
  DG_ERR_BAD_REQUEST: { closeCode: 4400, status: 400, summary: 'malformed request (bad desktop name, bad target syntax)' },
  DG_ERR_UNAUTHENTICATED: { closeCode: 4401, status: 401, summary: 'authentication required or failed' },
  DG_ERR_FORBIDDEN: { closeCode: 4403, status: 403, summary: "desktop or target outside this user's policy" },
  DG_ERR_UNKNOWN_DESKTOP: { closeCode: 4404, status: 404, summary: 'unknown desktop or token' },
  DG_ERR_IDLE_TIMEOUT: { closeCode: 4408, status: 408, summary: 'no traffic for the idle timeout' },
  DG_ERR_SESSION_EXPIRED: { closeCode: 4408, status: 408, summary: 'maximum session duration reached' },
  DG_ERR_CONFLICT: { closeCode: 4409, status: 409, summary: 'desktop held exclusively, or session taken over' },
  DG_ERR_TOO_MANY_SESSIONS: { closeCode: 4429, status: 429, summary: 'too many sessions (global, per user or per address)' },
  DG_ERR_UPSTREAM: { closeCode: 4500, status: 500, summary: 'the VNC server ended or broke the session' },
  DG_ERR_CONNECT_FAILED: { closeCode: 4502, status: 502, summary: 'could not connect to the VNC server' },
  DG_ERR_NOT_READY: { closeCode: 4503, status: 503, summary: 'gateway not ready or shutting down for maintenance' },
  DG_ERR_CONNECT_TIMEOUT: { closeCode: 4504, status: 504, summary: 'connecting to the VNC server timed out' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** Close codes below 4000 keep their RFC 6455 meaning. */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  MESSAGE_TOO_BIG: 1009,
} as const;

/** WebSocket close reasons are limited to 123 bytes of UTF-8. */
const MAX_REASON_BYTES = 123;

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;
  readonly closeCode: number;
  readonly status: number;

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
}

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
  EAI_AGAIN: 'name lookup failed',
  EPIPE: 'broken pipe',
  ETIMEDOUT: 'timed out',
};

export function describeSocketError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && SOCKET_ERROR_WORDS[code]) return SOCKET_ERROR_WORDS[code];
  return code ?? (err instanceof Error ? err.message : String(err));
}
