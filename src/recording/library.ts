/**
 * The recordings on disk: every `ID.dgrec` in the recordings directories (recordings.dir and
 * each desktop's record.dir), what each holds (whose session, when, how long), and their removal
 * once older than recordings.retentionDays.
 *
 * Nothing a request names reaches the file system unchecked: an id is a lower-case UUID or
 * nothing, and a file whose real path leaves its directory (a symlink) is not a recording.
 * A file that vanishes or is cut short while it is read is reported, never thrown.
 */
import { constants } from 'node:fs';
import { lstat, open, readdir, realpath, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { decodeHeader, MAGIC, RECORD_HEAD_BYTES, RecordKind, type RecordingHeader } from './format.js';

/** A session's id, as the gateway makes them: lower-case hex and dashes only. */
const RECORDING_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FILE_NAME = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.dgrec$/;

/** A header longer than this is damage, not a recording (a real one is well under 1 KiB). */
const MAX_HEADER_BYTES = 64 * 1024;
/** An End record's payload, `{"durationMs":N}`, fits in this with room to spare. */
const TAIL_BYTES = 64;
/** How much of a file a scan reads at once. */
const SCAN_CHUNK_BYTES = 256 * 1024;
/** A Stopped record's reason is read up to this length. */
const MAX_STOPPED_BYTES = 4096;
const DAY_MS = 86_400_000;
/**
 * Opened by a path with no link left in it, which must not have one now (O_NOFOLLOW), and never
 * waiting on a FIFO named like a recording (O_NONBLOCK).
 */
const READ_ONLY = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

export function isRecordingId(id: string): boolean {
  return RECORDING_ID.test(id);
}

export interface RecordingInfo {
  id: string;
  desktop: string;
  user: string;
  /** The node that recorded it, in a cluster. */
  node?: string | undefined;
  /** ISO 8601, UTC. */
  start: string;
  /** From the End record; in a file without one, the time of its last complete record. */
  durationMs: number;
  width: number;
  height: number;
  /** The desktop's name as its VNC server gave it. */
  name: string;
  /** Whether the browser's input is in it. */
  input: boolean;
  /** Bytes, when it was looked at. */
  size: number;
  /** Whether it has its End record; false: the session is still on, or the gateway stopped before it ended. */
  complete: boolean;
  /** Why the recording stopped while the session went on (a Stopped record). */
  stopped?: string | undefined;
}

export interface FoundRecording {
  /** The file's real path, inside its directory. */
  file: string;
  info: RecordingInfo;
}

export interface LibraryOptions {
  /**
   * The directories to look in (recordings.dir and each desktop's record.dir; unset ones are
   * skipped), asked each time: desktops come and go. One given once stays, so the recordings of
   * a desktop removed since are still listed and swept. A directory not made yet holds nothing.
   */
  dirs(): readonly (string | undefined)[];
  /** Files older than this many days are removed by sweep(); 0 keeps them. */
  retentionDays: number;
  /** A file that is not listed, or not removed, and why: told once per file and problem, for the log. */
  onProblem(file: string, problem: string): void;
}

/** What was learned of a file, valid while its size and modification time stay the same. */
interface Described {
  /** Its real path. */
  file: string;
  size: number;
  mtimeMs: number;
  info: RecordingInfo;
}

export class RecordingLibrary {
  readonly #options: LibraryOptions;
  /** By real path; what the last list() did not see is dropped, so it holds at most one listing. */
  #described = new Map<string, Described>();
  readonly #reported = new Set<string>();
  /** Every directory given so far, resolved. */
  readonly #dirs = new Set<string>();

  constructor(options: LibraryOptions) {
    this.#options = options;
  }

  /** Whether any directory is configured: whether recording is on at all. */
  get configured(): boolean {
    return this.#knownDirs().length > 0;
  }

  /** Every readable recording, newest first. */
  async list(): Promise<RecordingInfo[]> {
    const seen = new Map<string, Described>();
    const found = new Map<string, RecordingInfo>();
    for (const dir of await this.#realDirs()) {
      for (const name of await readdir(dir).catch(() => [])) {
        const id = FILE_NAME.exec(name)?.[1];
        if (id === undefined || found.has(id)) continue;
        const described = await this.#describe(dir, name);
        if (!described) continue;
        seen.set(join(dir, name), described);
        found.set(id, described.info);
      }
    }
    this.#described = seen;
    return [...found.values()].sort((a, b) => b.start.localeCompare(a.start));
  }

  /** The recording with this id, or undefined: no such file, a malformed id, or a file that cannot be read. */
  async find(id: string): Promise<FoundRecording | undefined> {
    if (!isRecordingId(id)) return undefined;
    for (const dir of await this.#realDirs()) {
      const described = await this.#describe(dir, `${id}.dgrec`);
      if (described) return { file: described.file, info: described.info };
    }
    return undefined;
  }

  /** Remove the recordings last written before `retentionDays` ago; returns the ids removed. */
  async sweep(now = Date.now()): Promise<string[]> {
    const { retentionDays } = this.#options;
    if (retentionDays === 0) return [];
    const removed: string[] = [];
    for (const dir of await this.#realDirs()) {
      for (const name of await readdir(dir).catch(() => [])) {
        const id = FILE_NAME.exec(name)?.[1];
        const file = join(dir, name);
        // lstat: a symlink is not a recording, and its target's age is not its own.
        const info = id === undefined ? undefined : await lstat(file).catch(() => undefined);
        if (!id || !info?.isFile() || info.mtimeMs >= now - retentionDays * DAY_MS) continue;
        try {
          await unlink(file);
          removed.push(id);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#report(file, `cannot be removed: ${(err as Error).message}`);
        }
      }
    }
    return removed;
  }

  #knownDirs(): string[] {
    for (const dir of this.#options.dirs()) if (dir !== undefined) this.#dirs.add(resolve(dir));
    return [...this.#dirs];
  }

  /** The directories that exist, each once, by real path. */
  async #realDirs(): Promise<string[]> {
    const dirs = await Promise.all(this.#knownDirs().map((dir) => realpath(dir).catch(() => undefined)));
    return [...new Set(dirs.filter((dir): dir is string => dir !== undefined))];
  }

  /** What `name` in `dir` holds; undefined (reported unless it is simply gone) when it is no recording to list. */
  async #describe(dir: string, name: string): Promise<Described | undefined> {
    const path = join(dir, name);
    const real = await realpath(path).catch(() => undefined);
    if (real === undefined) return undefined; // gone (or a dangling link): nothing to say
    if (!real.startsWith(dir + sep)) return this.#report(path, 'points outside its directory: not listed');
    const handle = await open(real, READ_ONLY).catch(() => undefined);
    if (!handle) return undefined;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return this.#report(path, 'is not a file: not listed');
      const known = this.#described.get(path);
      if (known && known.size === stats.size && known.mtimeMs === stats.mtimeMs) return known;
      const info = await readInfo(handle, stats.size, FILE_NAME.exec(name)?.[1] as string);
      if (typeof info === 'string') return this.#report(path, `${info}: not listed`);
      const described = { file: real, size: stats.size, mtimeMs: stats.mtimeMs, info };
      this.#described.set(path, described);
      return described;
    } catch (err) {
      return this.#report(path, `cannot be read: ${(err as Error).message}`);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  #report(file: string, problem: string): undefined {
    const key = `${file}\0${problem}`;
    if (this.#reported.has(key)) return undefined;
    if (this.#reported.size >= 1000) this.#reported.clear();
    this.#reported.add(key);
    this.#options.onProblem(file, problem);
    return undefined;
  }
}

/** A file's facts from its header and its end; a string says why it has none. */
async function readInfo(handle: FileHandle, size: number, id: string): Promise<RecordingInfo | string> {
  const head = await readHeader(handle, size);
  if (typeof head === 'string') return head;
  const { header, recordsAt } = head;
  const end = (await readEnd(handle, size, recordsAt)) ?? (await scan(handle, size, recordsAt));
  return {
    id,
    desktop: header.desktop,
    user: header.user,
    node: header.node,
    start: header.start,
    durationMs: end.durationMs,
    width: header.width,
    height: header.height,
    name: header.name,
    input: header.input === true,
    size,
    complete: end.complete,
    stopped: end.stopped,
  };
}

async function readHeader(handle: FileHandle, size: number): Promise<{ header: RecordingHeader; recordsAt: number } | string> {
  const lengthAt = MAGIC.length;
  const start = await readAt(handle, 0, Math.min(size, lengthAt + 4));
  if (start.length < lengthAt + 4) return 'too short to hold a header (empty, or cut short as it began)';
  if (!start.subarray(0, lengthAt).equals(MAGIC)) return 'not a recording of format 1';
  const length = start.readUInt32BE(lengthAt);
  if (length > MAX_HEADER_BYTES) return 'damaged: its header claims to be longer than 64 KiB';
  const bytes = await readAt(handle, 0, Math.min(size, lengthAt + 4 + length));
  const decoded = decodeHeader(bytes);
  if (!decoded) return bytes.length < lengthAt + 4 + length ? 'cut short within its header' : 'damaged: its header is not valid';
  const { header } = decoded;
  const strings = [header.id, header.desktop, header.user, header.start, header.name].every((s) => typeof s === 'string');
  const numbers = [header.width, header.height].every((n) => Number.isInteger(n));
  return strings && numbers ? decoded : 'damaged: its header lacks a field';
}

interface Ending {
  durationMs: number;
  complete: boolean;
  stopped?: string | undefined;
}

/**
 * The End record, read from the file's tail without reading the rest: the last record, whose
 * payload is `{"durationMs":N}`. A file without one is scanned instead.
 */
async function readEnd(handle: FileHandle, size: number, recordsAt: number): Promise<Ending | undefined> {
  const tail = await readAt(handle, Math.max(recordsAt, size - TAIL_BYTES), Math.min(TAIL_BYTES, size - recordsAt));
  for (let at = tail.length - RECORD_HEAD_BYTES; at >= 0; at -= 1) {
    if (tail[at] !== RecordKind.End || tail.readUInt32BE(at + 5) !== tail.length - at - RECORD_HEAD_BYTES) continue;
    const durationMs = /^\{"durationMs":(\d{1,10})\}$/.exec(tail.toString('latin1', at + RECORD_HEAD_BYTES))?.[1];
    if (durationMs !== undefined) return { durationMs: Number(durationMs), complete: true };
  }
  return undefined;
}

/** Walk the records' heads to the last complete one: its time is the duration; a Stopped record says why it stopped. */
async function scan(handle: FileHandle, size: number, recordsAt: number): Promise<Ending> {
  let window: Buffer = Buffer.alloc(0);
  let windowAt = 0;
  /** `length` bytes at `offset`, read a chunk at a time. */
  const bytesAt = async (offset: number, length: number): Promise<Buffer> => {
    if (offset < windowAt || offset + length > windowAt + window.length) {
      window = await readAt(handle, offset, Math.min(Math.max(length, SCAN_CHUNK_BYTES), size - offset));
      windowAt = offset;
    }
    return window.subarray(offset - windowAt, offset - windowAt + length);
  };
  const ending: Ending = { durationMs: 0, complete: false };
  let offset = recordsAt;
  while (offset + RECORD_HEAD_BYTES <= size) {
    const head = await bytesAt(offset, RECORD_HEAD_BYTES);
    if (head.length < RECORD_HEAD_BYTES) break; // the file shrank while it was read
    const length = head.readUInt32BE(5);
    if (offset + RECORD_HEAD_BYTES + length > size) break;
    ending.durationMs = head.readUInt32BE(1);
    if (head[0] === RecordKind.Stopped && length <= MAX_STOPPED_BYTES) ending.stopped = stoppedReason(await bytesAt(offset + RECORD_HEAD_BYTES, length));
    offset += RECORD_HEAD_BYTES + length;
  }
  return ending;
}

function stoppedReason(payload: Buffer): string | undefined {
  try {
    const { stopped } = JSON.parse(payload.toString('utf8')) as { stopped?: unknown };
    return typeof stopped === 'string' ? stopped : undefined;
  } catch {
    return undefined;
  }
}

/** Up to `length` bytes at `position`: fewer if the file is shorter by now. */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(Math.max(0, length));
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

/**
 * A recording's file, open for reading, and its size now (a live session's grows: what is
 * served is what was there at this moment); undefined if it is gone since it was found.
 */
export async function openRecording(file: string): Promise<{ handle: FileHandle; size: number } | undefined> {
  const handle = await open(file, READ_ONLY).catch(() => undefined);
  if (!handle) return undefined;
  const stats = await handle.stat().catch(() => undefined);
  if (stats?.isFile()) return { handle, size: stats.size };
  await handle.close().catch(() => undefined);
  return undefined;
}
