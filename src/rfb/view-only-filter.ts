/**
 * The view-only filter: on the browser -> VNC direction after ClientInit, it drops the client
 * messages that act on the desktop (keys, pointer, clipboard, resizing, power) and passes
 * those that only ask to see it. It is a streaming state machine, like ws's Receiver: message
 * lengths are counters, and only the few header bytes that give a length are ever copied (when
 * a header is split across WebSocket messages), so a 4 GiB clipboard costs nothing.
 */
import { errors } from '../errors.js';
import type { StageSession, UpstreamFilter } from '../relay/stages.js';
import { ClientMessageType as T } from './protocol.js';

const UNKNOWN = 0;
const KEPT = 1;
const DROPPED = 2;

/** By type: what view-only does with the message; UNKNOWN ends the session (its end cannot be found). */
const KIND = new Uint8Array(256);
/** By type: the message's length when its type alone gives it. */
const FIXED_LENGTH = new Uint8Array(256);
/** By type: how many bytes of header give a variable length (QEMU audio needs 4, see headerLength). */
const LENGTH_HEADER = new Uint8Array(256);

for (const [type, kind, fixed, header] of [
  [T.SetPixelFormat, KEPT, 20, 0],
  [T.SetEncodings, KEPT, 0, 4],
  [T.FramebufferUpdateRequest, KEPT, 10, 0],
  [T.EnableContinuousUpdates, KEPT, 10, 0],
  [T.ClientFence, KEPT, 0, 9],
  [T.KeyEvent, DROPPED, 8, 0],
  [T.PointerEvent, DROPPED, 6, 0],
  [T.ClientCutText, DROPPED, 0, 8],
  [T.Xvp, DROPPED, 4, 0],
  [T.SetDesktopSize, DROPPED, 0, 8],
  [T.Gii, DROPPED, 0, 4],
  [T.Qemu, DROPPED, 0, 2],
] as const) {
  KIND[type] = kind;
  FIXED_LENGTH[type] = fixed;
  LENGTH_HEADER[type] = header;
}

/** The longest LENGTH_HEADER (ClientFence's): all a split header ever needs kept. */
const MAX_LENGTH_HEADER = 9;
const QEMU_EXTENDED_KEY = 0;
const QEMU_AUDIO = 1;

/** How many bytes of the header at `at` tell its message's length, given `available` of them. */
function headerLength(bytes: Buffer, at: number, available: number): number {
  const type = bytes[at]!;
  if (FIXED_LENGTH[type]) return 1;
  // QEMU's subtype says whether an audio operation follows.
  if (type === T.Qemu && available >= 2 && bytes[at + 1] === QEMU_AUDIO) return 4;
  return LENGTH_HEADER[type]!;
}

/** The total length of the message whose header (headerLength bytes of it) is at `at`, or -1 if unknown. */
function messageLength(bytes: Buffer, at: number): number {
  const type = bytes[at]!;
  const fixed = FIXED_LENGTH[type]!;
  if (fixed) return fixed;
  switch (type) {
    case T.SetEncodings:
      return 4 + 4 * bytes.readUInt16BE(at + 2);
    case T.ClientCutText:
      // A negative length is the extended-clipboard form, whose body is abs(length) bytes.
      return 8 + Math.abs(bytes.readInt32BE(at + 4));
    case T.ClientFence:
      return 9 + bytes[at + 8]!;
    case T.SetDesktopSize:
      return 8 + 16 * bytes[at + 6]!;
    case T.Gii:
      // Bit 7 of the second byte says the length (and the rest) is big-endian.
      return 4 + (bytes[at + 1]! & 0x80 ? bytes.readUInt16BE(at + 2) : bytes.readUInt16LE(at + 2));
    case T.Qemu: {
      const subtype = bytes[at + 1];
      if (subtype === QEMU_EXTENDED_KEY) return 12;
      if (subtype !== QEMU_AUDIO) return -1;
      const operation = bytes.readUInt16BE(at + 2);
      return operation <= 1 ? 4 : operation === 2 ? 10 : -1;
    }
    default:
      return -1;
  }
}

export class ClientMessageFilter implements UpstreamFilter {
  /** Switchable while the session runs; takes effect at the next RFB message boundary (a message already started finishes as it began). */
  viewOnly: boolean;
  /** RFB messages dropped so far (counted when their first byte is seen). */
  dropped = 0;
  /** Bytes of the current message still to pass or drop, once its length is known. */
  #remaining = 0;
  /** Whether the current message passes: decided at its first byte. */
  #keep = true;
  /** A header split across WebSocket messages: its first `#headerHave` bytes. */
  readonly #header = Buffer.alloc(MAX_LENGTH_HEADER);
  #headerHave = 0;
  #closed = false;
  /** Kept ranges of the message being filtered; emptied before `filter` returns, so it holds no bytes. */
  readonly #pieces: Buffer[] = [];

  constructor(options: { viewOnly: boolean }) {
    this.viewOnly = options.viewOnly;
  }

  filter(message: Buffer, session: StageSession): Buffer | null {
    if (this.#closed) return null;
    const end = message.length;
    let pos = 0;
    // Where the current run of kept bytes began, or -1 while dropping; runs change only where messages start.
    let runStart = this.#keep ? 0 : -1;
    // Where the current RFB message began in `message` (0 if in an earlier one): an unknown one is cut off there.
    let messageStart = 0;
    while (pos < end) {
      if (this.#remaining === 0) {
        let length: number;
        if (this.#headerHave === 0) {
          // A message starts here.
          const type = message[pos]!;
          const kind = KIND[type]!;
          messageStart = pos;
          if (kind === UNKNOWN) return this.#unknown(message, runStart, messageStart, session, type);
          const keep = !this.viewOnly || kind === KEPT;
          if (keep !== this.#keep) {
            if (keep) {
              runStart = pos;
            } else {
              if (pos > runStart) this.#pieces.push(message.subarray(runStart, pos));
              runStart = -1;
            }
            this.#keep = keep;
          }
          if (!keep) this.dropped++;
          const available = end - pos;
          if (available >= headerLength(message, pos, available)) {
            length = messageLength(message, pos);
          } else {
            // The header is split: keep its bytes (not the message's) until the rest arrives.
            message.copy(this.#header, 0, pos, end);
            this.#headerHave = available;
            break;
          }
        } else {
          // The rest of a split header; QEMU audio learns it needs more once it has its subtype.
          const header = this.#header;
          let need = headerLength(header, 0, this.#headerHave);
          while (this.#headerHave < need && pos < end) {
            const copied = message.copy(header, this.#headerHave, pos, Math.min(end, pos + need - this.#headerHave));
            this.#headerHave += copied;
            pos += copied;
            need = headerLength(header, 0, this.#headerHave);
          }
          if (this.#headerHave < need) break;
          length = messageLength(header, 0);
          if (length >= 0) length -= this.#headerHave; // those bytes have been passed or dropped already
          this.#headerHave = 0;
        }
        if (length < 0) return this.#unknown(message, runStart, messageStart, session, T.Qemu);
        this.#remaining = length;
      }
      const take = Math.min(this.#remaining, end - pos);
      this.#remaining -= take;
      pos += take;
    }
    return this.#result(message, runStart, end);
  }

  /** A message whose end cannot be found: close, and pass only what was kept before it. */
  #unknown(message: Buffer, runStart: number, messageStart: number, session: StageSession, type: number): Buffer | null {
    this.#closed = true;
    session.close(errors.unknownClientMessage(type));
    return this.#result(message, runStart, messageStart);
  }

  /** The kept bytes of `message` up to `end`: `message` itself when nothing was dropped (the common path allocates nothing). */
  #result(message: Buffer, runStart: number, end: number): Buffer | null {
    const pieces = this.#pieces;
    if (pieces.length === 0) {
      if (runStart === 0 && end === message.length) return message;
      return runStart >= 0 && end > runStart ? message.subarray(runStart, end) : null;
    }
    if (runStart >= 0 && end > runStart) pieces.push(message.subarray(runStart, end));
    const kept = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    pieces.length = 0;
    return kept;
  }
}
