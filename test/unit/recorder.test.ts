/**
 * The recorder on its own, with a temporary directory and a stand-in session: records reach the
 * file in order, and a queue the disk cannot drain follows the policy (`end` closes the session
 * with 4507; `continue` marks the file and records no more).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Closing } from '../../src/relay/bridge.js';
import { decodeHeader, decodeRecords, RecordKind } from '../../src/recording/format.js';
import { Recorder, type RecorderOptions } from '../../src/recording/recorder.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function recorder(options: Partial<RecorderOptions> = {}): { recorder: Recorder; problems: string[]; closed: Closing[] } {
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-recorder-'));
  dirs.push(dir);
  const problems: string[] = [];
  const closed: Closing[] = [];
  const made = new Recorder({
    dir,
    header: {
      format: 1,
      id: '00000000-0000-4000-8000-000000000000',
      desktop: 'd',
      user: 'u',
      start: '',
      serverInit: '',
      width: 1,
      height: 1,
      name: 'n',
      input: false,
    },
    onFailure: 'continue',
    maxQueuedBytes: 1024 * 1024,
    maxBytes: 1024 ** 3,
    onProblem: (problem) => problems.push(problem),
    ...options,
  });
  made.attach({ close: (closing) => closed.push(closing) });
  return { recorder: made, problems, closed };
}

function records(file: string): { kind: number; payload: Buffer }[] {
  const bytes = readFileSync(file);
  return decodeRecords(bytes, decodeHeader(bytes)!.recordsAt).records;
}

const session = { close: () => {} };

describe('Recorder', () => {
  it('writes every chunk, in order, then the end', async () => {
    const { recorder: r } = recorder();
    for (let i = 0; i < 1000; i += 1) r.toBrowser.tap(Buffer.from([i & 0xff, i >> 8]), session);
    await r.finish();
    const written = records(r.file);
    expect(written).toHaveLength(1001);
    expect(written.slice(0, 1000).map((w) => w.payload.readUInt16LE(0))).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(written.at(-1)?.kind).toBe(RecordKind.End);
  });

  it('stops recording and marks the file when the queue passes its bound (continue)', async () => {
    const { recorder: r, problems, closed } = recorder({ maxQueuedBytes: 64 * 1024 });
    const chunk = Buffer.alloc(16 * 1024, 7);
    for (let i = 0; i < 10; i += 1) r.toBrowser.tap(chunk, session); // in one turn: nothing written yet
    expect(r.recording).toBe(false);
    expect(problems).toEqual([expect.stringMatching(/^the disk cannot keep up: \d+ bytes wait to be written$/)]);
    expect(closed).toEqual([]);
    r.toBrowser.tap(chunk, session); // no longer recorded
    await r.finish();
    const kinds = records(r.file).map((w) => w.kind);
    expect(kinds.at(-1)).toBe(RecordKind.Stopped);
    expect(kinds).not.toContain(RecordKind.End);
  });

  it('ends the session with 4507 when the queue passes its bound (end)', async () => {
    const { recorder: r, closed } = recorder({ maxQueuedBytes: 64 * 1024, onFailure: 'end' });
    for (let i = 0; i < 10; i += 1) r.toBrowser.tap(Buffer.alloc(16 * 1024), session);
    expect(closed.map((c) => [c.closeCode, c.reason])).toEqual([[4507, 'Recording failed: the session cannot continue']]);
    await r.finish();
  });

  it('stops at its size limit', async () => {
    const { recorder: r, problems } = recorder({ maxBytes: 100 * 1024 });
    for (let i = 0; i < 20; i += 1) {
      r.toBrowser.tap(Buffer.alloc(16 * 1024), session);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await r.finish();
    expect(problems).toEqual(['the recording reached its size limit (102400 bytes)']);
    expect(readFileSync(r.file).length).toBeLessThanOrEqual(100 * 1024 + 200);
  });
});
