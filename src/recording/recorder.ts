/**
 * A session's recorder: relay stages that copy what passes into a queue, and a writer that
 * appends the queue to the session's file off the hot path (one writev per turn of the event
 * loop, whatever has gathered). The queue is bounded: when the disk cannot keep up, or fails,
 * or the file reaches its size limit, the desktop's policy decides: `end` closes the session
 * (DG_ERR_RECORDING_FAILED), `continue` stops the recording, marks the file and lets the
 * session go on. Memory stays bounded either way, and the relay never waits for the disk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errors } from '../errors.js';
import type { BrowserTap, StageSession, UpstreamFilter } from '../relay/stages.js';
import { ClientMessageType } from '../rfb/protocol.js';
import { encodeHeader, encodeJsonRecord, encodeRecord, RECORD_HEAD_BYTES, RecordKind, writeRecord, type RecordingHeader } from './format.js';

export interface RecorderOptions {
  dir: string;
  header: RecordingHeader;
  /** `end`: a recording that fails ends its session; `continue`: the session goes on unrecorded. */
  onFailure: 'end' | 'continue';
  /** Bytes waiting for the disk before the disk counts as unable to keep up. */
  maxQueuedBytes: number;
  /** The file's largest size; then the recording stops (or the session ends, by `onFailure`). */
  maxBytes: number;
  /** Told once when the recording fails or stops early, for the log. */
  onProblem(problem: string, err?: unknown): void;
}

/**
 * Chunks are copied into slabs of this size, reused once written: a relay read costs one copy
 * into memory already paged in, not an allocation (at 1 GB/s, fresh 256 KiB buffers cost as
 * much in page faults and garbage collection as the copy itself).
 */
const SLAB_BYTES = 1024 * 1024;
/** Written slabs kept for reuse; more are left to the garbage collector. */
const MAX_SPARE_SLABS = 8;

/** The viewer's first messages are read for its settings; no further. */
const SETTINGS_SCAN_BYTES = 4096;

export class Recorder {
  readonly id: string;
  readonly file: string;
  readonly #options: RecorderOptions;
  readonly #header: Buffer;
  readonly #startedAt = performance.now();
  #queue: Buffer[] = [];
  /** The slab records are being copied into, and how much of it they fill. */
  #slab: Buffer | undefined;
  #slabUsed = 0;
  /** Slabs whose records are in the queue, and written ones ready for reuse. */
  #sealed: Buffer[] = [];
  readonly #spare: Buffer[] = [];
  #queuedBytes = 0;
  #writtenBytes = 0;
  #handle: Promise<FileHandle> | undefined;
  /** The writer at work, if one is. */
  #draining: Promise<void> | undefined;
  /** Set once it no longer records: why. */
  #stopped: string | undefined;
  #session: StageSession | undefined;
  #finished: Promise<void> | undefined;
  /** The viewer's first bytes, until its SetEncodings is found (or SETTINGS_SCAN_BYTES have passed). */
  #viewerStart: Buffer | undefined = Buffer.alloc(0);
  #scanned = 0;
  readonly #settings: { pixelFormat?: number[]; encodings?: number[] } = {};

  /** The stages to put on the relay: the tap records the screen, the filter the viewer's settings (and input, with `input`). */
  readonly toBrowser: BrowserTap = { tap: (chunk, session) => this.#record(RecordKind.Screen, chunk, session) };
  readonly toUpstream: UpstreamFilter = {
    filter: (message, session) => {
      if (this.#viewerStart) this.#readSettings(message);
      if (this.#options.header.input) this.#record(RecordKind.Input, message, session);
      return message;
    },
  };

  constructor(options: RecorderOptions) {
    this.#options = options;
    this.id = options.header.id;
    this.file = join(options.dir, `${this.id}.dgrec`);
    this.#header = encodeHeader(options.header);
    this.#enqueue(this.#header);
  }

  /** Whether it still records. */
  get recording(): boolean {
    return this.#stopped === undefined;
  }

  /** The session ended: the End record, the rest of the queue, then the file closed. Never rejects. */
  finish(): Promise<void> {
    this.#finished ??= (async () => {
      if (this.#stopped === undefined) this.#enqueue(encodeJsonRecord(RecordKind.End, this.#now(), { durationMs: Math.round(this.#now()) }));
      this.#stopped ??= 'the session ended';
      if (this.#queue.length > 0) this.#drainSoon(); // a Stopped mark queued by the writer that failed
      while (this.#draining) await this.#draining;
      await (await this.#handle?.catch(() => undefined))?.close().catch(() => undefined);
    })();
    return this.#finished;
  }

  #now(): number {
    return performance.now() - this.#startedAt;
  }

  /** A chunk of the relay, copied into the open slab (a buffer of its own when larger than one). */
  #record(kind: typeof RecordKind.Screen | typeof RecordKind.Input, bytes: Buffer, session: StageSession): void {
    if (this.#stopped !== undefined) return;
    this.#session ??= session;
    const size = RECORD_HEAD_BYTES + bytes.length;
    if (size > SLAB_BYTES) return this.#enqueue(encodeRecord(kind, this.#now(), bytes));
    if (!this.#fits(size)) return;
    if (this.#slab === undefined || this.#slabUsed + size > SLAB_BYTES) {
      this.#seal();
      this.#slab = this.#spare.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#slabUsed = 0;
    }
    writeRecord(this.#slab, this.#slabUsed, kind, this.#now(), bytes);
    this.#slabUsed += size;
    this.#queuedBytes += size;
    this.#drainSoon();
  }

  /** A record of its own (the header, JSON records, a chunk larger than a slab), after what the open slab holds. */
  #enqueue(record: Buffer): void {
    if (!this.#fits(record.length)) return;
    this.#seal();
    this.#queue.push(record);
    this.#queuedBytes += record.length;
    this.#drainSoon();
  }

  /** Whether `size` more bytes stay within the file's and the queue's bounds; if not, the recording fails. */
  #fits(size: number): boolean {
    if (this.#writtenBytes + this.#queuedBytes + size > this.#options.maxBytes) {
      this.#fail(`the recording reached its size limit (${this.#options.maxBytes} bytes)`);
    } else if (this.#queuedBytes + size > this.#options.maxQueuedBytes) {
      this.#fail(`the disk cannot keep up: ${this.#queuedBytes} bytes wait to be written`);
    }
    return this.#stopped === undefined;
  }

  /** The open slab's records join the queue; the slab is reused once they are written. */
  #seal(): void {
    if (this.#slab === undefined) return;
    if (this.#slabUsed > 0) this.#queue.push(this.#slab.subarray(0, this.#slabUsed));
    this.#sealed.push(this.#slab);
    this.#slab = undefined;
  }

  /**
   * Write what is queued, turn after turn, until the queue is empty: one writer at a time, so
   * records reach the file in order. The loop's last check and its end run in one go, so a
   * record queued while it writes is never left behind.
   */
  #drainSoon(): void {
    this.#draining ??= (async () => {
      await new Promise((resolve) => setImmediate(resolve));
      try {
        this.#seal();
        while (this.#queue.length > 0) {
          const batch = this.#queue;
          const slabs = this.#sealed;
          this.#queue = [];
          this.#sealed = [];
          this.#handle ??= open(this.file, 'wx', 0o600);
          const { bytesWritten } = await (await this.#handle).writev(batch);
          this.#queuedBytes -= batch.reduce((sum, b) => sum + b.length, 0);
          this.#writtenBytes += bytesWritten;
          this.#spare.push(...slabs.slice(0, MAX_SPARE_SLABS - this.#spare.length));
          this.#seal();
        }
      } catch (err) {
        this.#fail(`the recording cannot be written: ${(err as Error).message}`, err);
      } finally {
        this.#draining = undefined;
      }
    })();
  }

  /** Stop recording, by the desktop's policy. */
  #fail(problem: string, err?: unknown): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = problem;
    // The header stays, if it waits still: a file without one could not be read at all.
    this.#queue = this.#queue[0] === this.#header ? [this.#header] : [];
    this.#slab = undefined;
    this.#sealed = [];
    this.#queuedBytes = this.#queue.length > 0 ? this.#header.length : 0;
    this.#options.onProblem(problem, err);
    if (this.#options.onFailure === 'end') {
      this.#session?.close(errors.recordingFailed());
      return;
    }
    // Marked, if the file still takes it: a player then says why the recording stops there.
    this.#queue.push(encodeJsonRecord(RecordKind.Stopped, this.#now(), { stopped: problem }));
    this.#drainSoon();
  }

  /** The viewer's SetPixelFormat and SetEncodings, from its first messages (noVNC sends them at once): one Settings record. */
  #readSettings(message: Buffer): void {
    const bytes = Buffer.concat([this.#viewerStart as Buffer, message]);
    let at = 0;
    let unknown = false;
    while (at < bytes.length && !unknown) {
      const type = bytes[at];
      const length =
        type === ClientMessageType.SetPixelFormat
          ? 20
          : type === ClientMessageType.SetEncodings
            ? at + 4 <= bytes.length
              ? 4 + 4 * bytes.readUInt16BE(at + 2)
              : Infinity
            : type === ClientMessageType.FramebufferUpdateRequest
              ? 10
              : -1;
      unknown = length < 0;
      if (unknown || at + length > bytes.length) break;
      if (type === ClientMessageType.SetPixelFormat) this.#settings.pixelFormat = [...bytes.subarray(at + 4, at + 20)];
      if (type === ClientMessageType.SetEncodings) {
        this.#settings.encodings = Array.from({ length: (length - 4) / 4 }, (_, i) => bytes.readInt32BE(at + 4 + 4 * i));
      }
      at += length;
    }
    this.#scanned += message.length;
    const done = unknown || this.#settings.encodings !== undefined || this.#scanned >= SETTINGS_SCAN_BYTES;
    this.#viewerStart = done ? undefined : bytes.subarray(at);
    if (done && this.#stopped === undefined) this.#enqueue(encodeJsonRecord(RecordKind.Settings, this.#now(), this.#settings));
  }

  /** The session the stages belong to, for policy `end`; a failure before it is known ends it now. */
  attach(session: StageSession): void {
    this.#session = session;
    if (this.#stopped !== undefined && this.#options.onFailure === 'end' && this.#finished === undefined) session.close(errors.recordingFailed());
  }
}
