/**
 * deskgate's recordings as the benchmark sees them: how far a file got, whether its session
 * is over, and their removal after each round (a recorded round writes as much as it relays).
 * The format (docs/RECORDING.md, src/recording/format.ts) is read by hand, as bench/rfb.js
 * speaks RFB by hand: a magic line, a length-prefixed JSON header, then records, each a kind
 * (u8), a time (u32) and a length-prefixed (u32) payload, big-endian. Only the heads are read.
 */
import { closeSync, fstatSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const MAGIC = Buffer.from('DGREC\0\x01\n', 'latin1');
const RECORD_HEAD_BYTES = 9;
const KIND = { screen: 1, stopped: 4, end: 5 };
/** A file that has not grown for this long, without an End or Stopped record, is taken as finished (policy `end` marks nothing). */
const SETTLE_MS = 1_000;
const POLL_MS = 20;

/**
 * @typedef {object} Recording
 * @property {string} file
 * @property {number} bytes the file's size
 * @property {number} screenBytes the payload of its Screen records: how much of the VNC side it holds
 * @property {number} screenMs the time of its last Screen record, milliseconds after the recording started
 * @property {string | undefined} stopped the reason in its Stopped record (policy `continue`)
 * @property {boolean} ended it has an End record: the session ended, recorded to the last byte
 */

/** @param {string} file @returns {Recording} */
export function readRecording(file) {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    /** @type {Recording} */
    const found = { file, bytes: size, screenBytes: 0, screenMs: 0, stopped: undefined, ended: false };
    const head = Buffer.alloc(MAGIC.length + 4);
    if (readSync(fd, head, 0, head.length, 0) < head.length || !head.subarray(0, MAGIC.length).equals(MAGIC)) return found;
    let at = head.length + head.readUInt32BE(MAGIC.length);
    while (at + RECORD_HEAD_BYTES <= size) {
      readSync(fd, head, 0, RECORD_HEAD_BYTES, at);
      const kind = head[0];
      const length = head.readUInt32BE(5);
      if (at + RECORD_HEAD_BYTES + length > size) break; // cut short: read up to its last complete record
      if (kind === KIND.screen) {
        found.screenBytes += length;
        found.screenMs = head.readUInt32BE(1);
      }
      if (kind === KIND.end) found.ended = true;
      if (kind === KIND.stopped) {
        const payload = Buffer.alloc(length);
        readSync(fd, payload, 0, length, at + RECORD_HEAD_BYTES);
        found.stopped = String(JSON.parse(payload.toString('utf8')).stopped);
      }
      at += RECORD_HEAD_BYTES + length;
    }
    return found;
  } finally {
    closeSync(fd);
  }
}

/**
 * Wait until every recording in `dir` is finished — an End or a Stopped record written, or no
 * growth for SETTLE_MS — and read them. Call it once the sessions have ended.
 * @param {string} dir
 * @param {number} timeoutMs
 * @returns {Promise<Recording[]>}
 */
export async function finishedRecordings(dir, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  /** @type {Map<string, { bytes: number, since: number }>} */
  const sizes = new Map();
  for (;;) {
    const files = readdirSync(dir).map((name) => join(dir, name));
    const unfinished = files.filter((file) => {
      const bytes = statSync(file).size;
      const seen = sizes.get(file);
      if (seen?.bytes !== bytes) sizes.set(file, { bytes, since: Date.now() });
      if (Date.now() - (sizes.get(file)?.since ?? 0) >= SETTLE_MS) return false;
      const recording = readRecording(file);
      return !recording.ended && recording.stopped === undefined;
    });
    if (unfinished.length === 0) return files.map(readRecording);
    if (Date.now() > deadline) throw new Error(`recordings still being written ${timeoutMs} ms after their sessions: ${unfinished.join(', ')}`);
    await sleep(POLL_MS);
  }
}

/**
 * The finished recordings in `dir` (see finishedRecordings), which are then removed.
 * @param {string} dir
 * @param {number} [timeoutMs] how long the last may take to be finished after its session ended
 */
export async function takeRecordings(dir, timeoutMs = 30_000) {
  const recordings = await finishedRecordings(dir, timeoutMs);
  for (const { file } of recordings) rmSync(file, { force: true });
  return recordings;
}
