/**
 * Session recording on the relay, with raw clients and the demo desktop: what a file holds
 * (header with the ServerInit, the screen bytes as the browser got them, the viewer's settings,
 * input only when asked, the end), that a file cut anywhere reads up to its last complete
 * record, and what happens when the disk fails: `end` closes the session with 4507, `continue`
 * lets it run unrecorded, and other sessions are served either way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { decodeHeader, decodeRecords, RecordKind } from '../../src/recording/format.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { captureLogs } from '../helpers/log-capture.js';
import { freePort, waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, openDesktop, type TestClient } from '../helpers/ws-client.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

let demo: DemoDesktop;
let dir: string;
const running: RunningGateway[] = [];

beforeAll(async () => {
  demo = await startDemoDesktop({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await demo?.close();
});
afterEach(async () => {
  closeOpenedSockets();
  await Promise.all(running.splice(0).map((g) => g.gateway.destroy()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function recordingGateway(record: object | boolean, options: Parameters<typeof startGateway>[1] = {}): Promise<RunningGateway> {
  dir = mkdtempSync(join(tmpdir(), 'deskgate-rec-'));
  const g = await startGateway(
    {
      recordings: { dir },
      desktops: [
        { name: 'rec', host: demo.host, port: demo.port, record },
        { name: 'plain', host: demo.host, port: demo.port },
      ],
    },
    options,
  );
  running.push(g);
  return g;
}

/** Ask for the whole screen and read what comes until `bytes` have arrived. */
async function readScreen(session: TestClient, bytes = 1): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < bytes) {
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 64, height: 64 }, false));
    const chunk = await session.nextMessage();
    chunks.push(chunk);
    total += chunk.length;
  }
  return Buffer.concat(chunks);
}

function recordingFiles(): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.dgrec'));
}

/** The one recording in `dir`, once its End record is written. */
async function completeRecording(): Promise<Buffer> {
  let bytes = Buffer.alloc(0);
  await waitFor(() => {
    if (recordingFiles().length !== 1) return false;
    bytes = readFileSync(join(dir, recordingFiles()[0]!));
    const head = decodeHeader(bytes);
    return head !== undefined && decodeRecords(bytes, head.recordsAt).records.some((r) => r.kind === RecordKind.End);
  }, 'a complete recording');
  return bytes;
}

describe('a recorded session', () => {
  it('writes the ServerInit, the screen as the browser got it, the viewer settings, and its end', async () => {
    const g = await recordingGateway(true);
    const session = await openDesktop(g.wsUrl('rec'));
    // noVNC's first messages: SetPixelFormat, SetEncodings.
    const pixelFormat = Buffer.from([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    const encodings = Buffer.from([2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
    session.ws.send(Buffer.concat([pixelFormat, encodings]));
    const seen = await readScreen(session);
    session.ws.close();
    const bytes = await completeRecording();
    const { header, recordsAt } = decodeHeader(bytes)!;
    expect(header).toMatchObject({ format: 1, desktop: 'rec', user: 'anonymous', width: 1024, height: 768, name: expect.any(String), input: false });
    const serverInit = Buffer.from(header.serverInit, 'base64');
    expect([serverInit.readUInt16BE(0), serverInit.readUInt16BE(2), serverInit.subarray(24).toString()]).toEqual([1024, 768, header.name]);
    const { records, end } = decodeRecords(bytes, recordsAt);
    expect(end).toBe(bytes.length);
    const screen = Buffer.concat(records.filter((r) => r.kind === RecordKind.Screen).map((r) => r.payload));
    expect(screen.subarray(0, seen.length)).toEqual(seen);
    expect(JSON.parse(records.find((r) => r.kind === RecordKind.Settings)!.payload.toString())).toEqual({
      pixelFormat: [...pixelFormat.subarray(4)],
      encodings: [0, -223],
    });
    expect(records.some((r) => r.kind === RecordKind.Input)).toBe(false);
    expect(records.at(-1)?.kind).toBe(RecordKind.End);
    // Times never go backwards.
    const times = records.map((r) => r.atMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  });

  it('records what the browser sent only with input on', async () => {
    const g = await recordingGateway({ input: true });
    const session = await openDesktop(g.wsUrl('rec'));
    const key = Buffer.from([4, 1, 0, 0, 0, 0, 0, 0x61]); // KeyEvent down 'a'
    session.ws.send(key);
    await readScreen(session);
    session.ws.close();
    const bytes = await completeRecording();
    const inputs = decodeRecords(bytes, decodeHeader(bytes)!.recordsAt).records.filter((r) => r.kind === RecordKind.Input);
    expect(inputs.map((r) => r.payload)).toContainEqual(key);
  });

  it('reads a file cut at any byte up to its last complete record', async () => {
    const g = await recordingGateway(true);
    const session = await openDesktop(g.wsUrl('rec'));
    await readScreen(session, 20_000);
    session.ws.close();
    const whole = await completeRecording();
    const { recordsAt } = decodeHeader(whole)!;
    const all = decodeRecords(whole, recordsAt).records;
    for (let i = 0; i < 50; i += 1) {
      const cut = recordsAt + Math.floor(Math.random() * (whole.length - recordsAt));
      const { records, end } = decodeRecords(whole.subarray(0, cut), recordsAt);
      expect(end).toBeLessThanOrEqual(cut);
      expect(records).toEqual(all.slice(0, records.length));
      expect(cut - end).toBeLessThan(9 + Math.max(...all.map((r) => r.payload.length)));
    }
    expect(decodeHeader(whole.subarray(0, recordsAt - 1))).toBeUndefined();
  });
});

describe('a recording that cannot be written', () => {
  it('ends its session with 4507 under onFailure end, and the gateway serves others', async () => {
    const { logger, lines } = captureLogs();
    const g = await recordingGateway({ onFailure: 'end' }, { logger });
    // The directory replaced by a file: not even root can create a file below it.
    rmSync(dir, { recursive: true });
    writeFileSync(dir, 'not a directory');
    const session = await openDesktop(g.wsUrl('rec'));
    expect(await session.closed).toEqual({ code: 4507, reason: 'Recording failed: the session cannot continue' });
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        desktop: 'rec',
        msg: expect.stringMatching(/^recording stopped: the recording cannot be written: ENOTDIR.*; session ended$/),
      }),
    );
    const other = await openDesktop(g.wsUrl('plain'));
    expect((await readScreen(other)).length).toBeGreaterThan(0);
    rmSync(dir);
    mkdirSync(dir);
  });
});

describe('a disk that fills up mid-session', () => {
  // The gateway runs with a file size limit (ulimit -f): writes past it fail with EFBIG, as on a full disk.
  let cli: ChildProcess;
  let port: number;
  let log = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'deskgate-full-'));
    port = await freePort();
    const desktop = (name: string, record?: object) => ({ name, host: demo.host, port: demo.port, ...(record && { record }) });
    writeFileSync(
      join(dir, 'deskgate.yaml'),
      stringify({
        listen: `127.0.0.1:${port}`,
        recordings: { dir },
        desktops: [desktop('strict', { onFailure: 'end' }), desktop('lenient', { onFailure: 'continue' }), desktop('plain')],
      }),
    );
    cli = spawn('bash', ['-c', 'ulimit -f 256 && exec "$0" "$@"', process.execPath, CLI, '--config', join(dir, 'deskgate.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cli.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    cli.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    await waitFor(() => log.includes('gateway listening'), 'the gateway to listen');
  });
  afterAll(async () => {
    cli?.kill('SIGTERM');
    if (cli && cli.exitCode === null) await once(cli, 'exit');
  });

  it("follows each desktop's policy and serves other sessions", async () => {
    const url = (name: string): string => `ws://127.0.0.1:${port}/websockify?desktop=${name}`;
    const strict = await openDesktop(url('strict'));
    const lenient = await openDesktop(url('lenient'));
    // Full-screen updates until the files pass 256 KiB.
    const stream = async (session: TestClient, until: () => boolean): Promise<void> => {
      for (let i = 0; i < 200 && !until(); i += 1) await readScreen(session, 4096).catch(() => undefined);
    };
    let strictClosed: { code: number; reason: string } | undefined;
    void strict.closed.then((c) => (strictClosed = c));
    await stream(strict, () => strictClosed !== undefined);
    expect(strictClosed).toEqual({ code: 4507, reason: 'Recording failed: the session cannot continue' });
    await stream(lenient, () => log.includes('session goes on unrecorded'));
    expect(log).toMatch(/recording stopped: the recording cannot be written: EFBIG.*session goes on unrecorded/);
    // The lenient session still runs, unrecorded; a new session elsewhere opens.
    expect((await readScreen(lenient, 4096)).length).toBeGreaterThan(0);
    const plain = await openDesktop(url('plain'));
    expect((await readScreen(plain)).length).toBeGreaterThan(0);
    // What was written reads up to its last complete record.
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.dgrec'))) {
      const bytes = readFileSync(join(dir, file));
      const head = decodeHeader(bytes);
      expect(head?.header.desktop).toMatch(/^(strict|lenient)$/);
      expect(decodeRecords(bytes, head!.recordsAt).records.length).toBeGreaterThan(0);
    }
  });
});
