/**
 * The recording file format (docs/RECORDING.md), version 1. Append-only: a magic line, a
 * length-prefixed JSON header, then records, each a kind, a time and a length-prefixed payload.
 * Nothing is ever rewritten, so a file cut short (a crash, a full disk) is read up to its last
 * complete record.
 *
 *   file    = MAGIC header record*
 *   header  = u32 length, JSON (UTF-8)
 *   record  = u8 kind, u32 milliseconds since the start, u32 length, payload
 *
 * All numbers are big-endian, as in RFB.
 */

/** "DGREC", a NUL, the format version, a newline: `head -c 8` tells what the file is. */
export const MAGIC = Buffer.from('DGREC\0\x01\n', 'latin1');
export const FORMAT_VERSION = 1;
export const RECORD_HEAD_BYTES = 9;

export const RecordKind = {
  /** Bytes the VNC server sent the browser, after the handshake: what the player shows. */
  Screen: 1,
  /** Bytes the browser sent the VNC server (keys, pointer, clipboard): only with `input`, for audit. */
  Input: 2,
  /** JSON: the pixel format and encodings the viewer asked for (its first SetPixelFormat and SetEncodings). */
  Settings: 3,
  /** JSON `{ "stopped": reason }`: the recording stopped while the session went on (policy `continue`). */
  Stopped: 4,
  /** JSON `{ "durationMs": N }`: the session ended and the file is complete. */
  End: 5,
} as const;

export type RecordKindValue = (typeof RecordKind)[keyof typeof RecordKind];

export interface RecordingHeader {
  format: typeof FORMAT_VERSION;
  /** The recording's id: the session's. */
  id: string;
  desktop: string;
  user: string;
  /** The node that recorded it, in a cluster. */
  node?: string | undefined;
  /** ISO 8601, UTC. */
  start: string;
  /** The ServerInit the viewer was given, base64: framebuffer size, pixel format, name. */
  serverInit: string;
  width: number;
  height: number;
  name: string;
  /** Whether Input records are in the file. */
  input: boolean;
}

/** The magic and header, ready to write. */
export function encodeHeader(header: RecordingHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, length, json]);
}

/** One record: its head and a copy of `payload`, in one buffer. */
export function encodeRecord(kind: RecordKindValue, atMs: number, payload: Uint8Array): Buffer {
  const record = Buffer.allocUnsafe(RECORD_HEAD_BYTES + payload.length);
  writeRecord(record, 0, kind, atMs, payload);
  return record;
}

/** Write a record (RECORD_HEAD_BYTES + payload.length bytes) into `target` at `offset`. */
export function writeRecord(target: Buffer, offset: number, kind: RecordKindValue, atMs: number, payload: Uint8Array): void {
  target[offset] = kind;
  target.writeUInt32BE(Math.min(Math.max(0, Math.round(atMs)), 0xffffffff), offset + 1);
  target.writeUInt32BE(payload.length, offset + 5);
  target.set(payload, offset + RECORD_HEAD_BYTES);
}

export function encodeJsonRecord(kind: RecordKindValue, atMs: number, value: unknown): Buffer {
  return encodeRecord(kind, atMs, Buffer.from(JSON.stringify(value), 'utf8'));
}

/** The header of a file's first bytes, and where the records start; undefined if they hold no complete header. */
export function decodeHeader(bytes: Buffer): { header: RecordingHeader; recordsAt: number } | undefined {
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const length = bytes.readUInt32BE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (bytes.length < start + length) return undefined;
  try {
    const header = JSON.parse(bytes.toString('utf8', start, start + length)) as RecordingHeader;
    return header.format === FORMAT_VERSION ? { header, recordsAt: start + length } : undefined;
  } catch {
    return undefined;
  }
}

export interface DecodedRecord {
  kind: number;
  atMs: number;
  payload: Buffer;
}

/** The complete records in `bytes` from `at`, and where the first incomplete one (or the end) is. */
export function decodeRecords(bytes: Buffer, at: number): { records: DecodedRecord[]; end: number } {
  const records: DecodedRecord[] = [];
  let offset = at;
  while (offset + RECORD_HEAD_BYTES <= bytes.length) {
    const length = bytes.readUInt32BE(offset + 5);
    if (offset + RECORD_HEAD_BYTES + length > bytes.length) break;
    records.push({
      kind: bytes[offset]!,
      atMs: bytes.readUInt32BE(offset + 1),
      payload: bytes.subarray(offset + RECORD_HEAD_BYTES, offset + RECORD_HEAD_BYTES + length),
    });
    offset += RECORD_HEAD_BYTES + length;
  }
  return { records, end: offset };
}
