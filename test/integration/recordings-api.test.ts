/**
 * Serving recordings: real sessions of the demo desktop recorded by a real gateway in password
 * mode, then listed, played and downloaded over HTTP. Who sees what (alice her own, never bob's,
 * and a recording she may not see answered as one that does not exist; administrators all;
 * `access: admins` hides even her own), ids that try to leave the directory, byte ranges
 * compared with the file byte for byte, the headers, files cut short or removed meanwhile, and
 * retention.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoDesktop, type DemoDesktop } from '../../src/demo/server.js';
import { decodeHeader, decodeRecords, encodeHeader, encodeJsonRecord, encodeRecord, RECORD_HEAD_BYTES, RecordKind } from '../../src/recording/format.js';
import { RecordingLibrary, type RecordingInfo } from '../../src/recording/library.js';
import { encodeUpdateRequest } from '../../src/rfb/protocol.js';
import { loggedIn, writeUsers } from '../helpers/auth.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { send } from '../helpers/http-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/processes.js';
import { closeOpenedSockets, openDesktop, type TestClient } from '../helpers/ws-client.js';

const USERS = { alice: { password: 'alice-password-1' }, bob: { password: 'bob-password-1' }, root: { password: 'root-password-1' } };
const DAY_MS = 86_400_000;

let demo: DemoDesktop;
let scratch: string;
let dir: string;
let usersFile: string;
let gw: RunningGateway;
const logs = captureLogs();
const cookies: Record<string, { Cookie: string }> = {};
/** The recording of each user's finished session. */
const ids: Record<string, string> = {};

beforeAll(async () => {
  demo = await startDemoDesktop({ host: '127.0.0.1', port: 0 });
  scratch = mkdtempSync(join(tmpdir(), 'deskgate-recordings-'));
  dir = join(scratch, 'recordings');
  mkdirSync(dir);
  usersFile = join(scratch, 'users.yaml');
  await writeUsers(usersFile, USERS);
  gw = await startGateway(recordingConfig(), { logger: logs.logger });
  for (const user of Object.keys(USERS)) cookies[user] = await loggedIn(gw.httpUrl, user, USERS[user as keyof typeof USERS].password);
  for (const user of ['alice', 'bob']) ids[user] = await recordSession(user);
});
afterAll(async () => {
  closeOpenedSockets();
  await gw?.gateway.destroy();
  await demo?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function recordingConfig(recordings: object = {}): Parameters<typeof startGateway>[0] {
  return {
    auth: { mode: 'password', usersFile },
    admins: { users: ['root'] },
    recordings: { dir, ...recordings },
    desktops: [{ name: 'rec', host: demo.host, port: demo.port, record: true }],
  };
}

/** Ask for the whole screen and read until `bytes` have arrived. */
async function readScreen(session: TestClient, bytes = 1): Promise<void> {
  for (let total = 0; total < bytes;) {
    session.ws.send(encodeUpdateRequest({ x: 0, y: 0, width: 64, height: 64 }, false));
    total += (await session.nextMessage()).length;
  }
}

function filesOf(user: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.dgrec') && decodeHeader(readFileSync(join(dir, f)))?.header.user === user);
}

/** A session of `user`, ended; its recording's id once the file is complete. */
async function recordSession(user: string): Promise<string> {
  const before = new Set(filesOf(user));
  const session = await openDesktop(gw.wsUrl('rec'), { headers: cookies[user] });
  await readScreen(session, 50_000); // several updates: several records
  session.ws.close();
  let id = '';
  await waitFor(() => {
    const file = filesOf(user).find((f) => !before.has(f));
    const bytes = file ? readFileSync(join(dir, file)) : Buffer.alloc(0);
    const records = file ? decodeRecords(bytes, decodeHeader(bytes)!.recordsAt).records : [];
    id = file?.slice(0, -'.dgrec'.length) ?? '';
    return records.at(-1)?.kind === RecordKind.End;
  }, `${user}'s recording`);
  return id;
}

function get(path: string, as?: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Response> {
  return fetch(`${gw.httpUrl}${path}`, { method, headers: { ...(as ? cookies[as] : {}), ...headers }, redirect: 'manual' });
}

async function listed(as: string, g = gw): Promise<RecordingInfo[]> {
  const res = await fetch(`${g.httpUrl}/api/recordings`, { headers: cookies[as] });
  expect(res.status).toBe(200);
  return ((await res.json()) as { recordings: RecordingInfo[] }).recordings;
}

const bytesOf = (id: string): Buffer => readFileSync(join(dir, `${id}.dgrec`));
const body = async (res: Response): Promise<Buffer> => Buffer.from(await res.arrayBuffer());

describe('who sees which recording', () => {
  it('shows alice her own recordings, never bob’s, in the list, the file and the player', async () => {
    const mine = await listed('alice');
    expect(mine.map((r) => r.id)).toContain(ids.alice);
    expect(mine.every((r) => r.user === 'alice')).toBe(true);
    expect(mine.find((r) => r.id === ids.alice)).toMatchObject({
      desktop: 'rec',
      user: 'alice',
      complete: true,
      size: bytesOf(ids.alice!).length,
      width: 1024,
      height: 768,
      start: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const page = await get('/recordings', 'alice');
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`href="./play/${ids.alice}"`);
    expect(html).not.toContain(ids.bob);

    const file = await get(`/recordings/${ids.alice}.dgrec`, 'alice');
    expect(file.status).toBe(200);
    expect((await body(file)).equals(bytesOf(ids.alice!))).toBe(true);
    const player = await get(`/play/${ids.alice}`, 'alice');
    expect(player.status).toBe(200);
    expect(await player.text()).toContain(`data-recording="${ids.alice}"`);

    // Bob's recording is answered as one that does not exist: its id cannot be probed.
    for (const path of [`/recordings/${ids.bob}.dgrec`, `/play/${ids.bob}`, `/recordings/${randomUUID()}.dgrec`]) {
      const res = await get(path, 'alice');
      expect(res.status, path).toBe(404);
      expect(await res.text()).toMatch(/There is no recording (&#39;|')[0-9a-f-]{36}/);
    }
  });

  it('shows an administrator every recording', async () => {
    expect((await listed('root')).map((r) => r.id)).toEqual(expect.arrayContaining([ids.alice, ids.bob]));
    const file = await get(`/recordings/${ids.bob}.dgrec`, 'root');
    expect((await body(file)).equals(bytesOf(ids.bob!))).toBe(true);
    expect((await get(`/play/${ids.bob}`, 'root')).status).toBe(200);
  });

  it('lists newest first', async () => {
    const starts = (await listed('root')).map((r) => r.start);
    expect(starts).toEqual([...starts].sort().reverse());
  });

  it('asks who is asking first: pages go to the login form, the API answers 401', async () => {
    for (const path of ['/recordings', `/recordings/${ids.alice}.dgrec`, `/play/${ids.alice}`]) {
      const res = await get(path);
      expect(res.status, path).toBe(303);
      const root = path === '/recordings' ? './' : '../';
      expect(res.headers.get('location'), path).toBe(`${root}login?next=${encodeURIComponent(path.slice(1))}`);
    }
    const api = await get('/api/recordings');
    expect(api.status).toBe(401);
    expect(await api.json()).toMatchObject({ error: 'DG_ERR_UNAUTHENTICATED' });
  });

  it('links the recordings from the dashboard', async () => {
    expect(await (await get('/', 'alice')).text()).toContain('href="./recordings"');
  });

  it('with access: admins, hides even her own from alice, and shows all to administrators', async () => {
    const strict = await startGateway(recordingConfig({ access: 'admins' }));
    try {
      const as = async (user: string, path: string): Promise<Response> =>
        fetch(`${strict.httpUrl}${path}`, { headers: await loggedIn(strict.httpUrl, user, USERS[user as keyof typeof USERS].password), redirect: 'manual' });
      for (const path of ['/recordings', '/api/recordings', `/recordings/${ids.alice}.dgrec`, `/play/${ids.alice}`]) {
        const res = await as('alice', path);
        expect(res.status, path).toBe(403);
        expect(await res.text()).not.toContain('DGREC');
      }
      expect(await (await as('alice', '/')).text()).not.toContain('recordings');
      const all = (await (await as('root', '/api/recordings')).json()) as { recordings: RecordingInfo[] };
      expect(all.recordings.map((r) => r.id)).toEqual(expect.arrayContaining([ids.alice, ids.bob]));
    } finally {
      await strict.gateway.destroy();
    }
  });
});

describe('ids that try to leave the directory', () => {
  let outside: string;
  let linked: string;
  beforeAll(() => {
    // A valid recording of alice's, outside the directory, behind a link named like one inside it.
    outside = join(scratch, 'outside');
    mkdirSync(outside);
    copyFileSync(join(dir, `${ids.alice}.dgrec`), join(outside, 'secret.dgrec'));
    writeFileSync(join(outside, 'passwd'), 'root:x:0:0');
    linked = randomUUID();
    symlinkSync(join(outside, 'secret.dgrec'), join(dir, `${linked}.dgrec`));
  });

  it('refuses each trick without reaching a file outside', async () => {
    const base = gw.httpUrl;
    const tricks: [path: string, status: number][] = [
      [`/recordings/..%2foutside%2fsecret.dgrec`, 400],
      [`/recordings/..%2F..%2Foutside%2Fpasswd`, 400],
      [`/recordings/../outside/secret.dgrec`, 400],
      [`/recordings/../x`, 404],
      [`/play/..%2f..%2foutside`, 400],
      [`/play/../outside/passwd`, 400],
      [`/recordings/%2e%2e/outside/secret.dgrec`, 400],
      [`/recordings/${ids.alice!.toUpperCase()}.dgrec`, 400],
      [`/play/${ids.alice!.toUpperCase()}`, 400],
      [`/recordings/${ids.alice}0.dgrec`, 400],
      [`/recordings/${ids.alice}${'0'.repeat(5000)}.dgrec`, 400],
      [`/recordings/${ids.alice}%00.dgrec`, 400],
      [`/recordings/${ids.alice}.dgrec%00`, 404],
      [`/recordings/${ids.alice}`, 404],
      [`/recordings/${linked}.dgrec`, 404],
      [`/play/${linked}`, 404],
    ];
    for (const [path, status] of tricks) {
      for (const user of ['alice', 'root']) {
        const reply = await send(`${base}${path}`, { headers: cookies[user] });
        expect(reply.status, `${user} ${path}`).toBe(status);
        expect(reply.body, path).not.toMatch(/DGREC|root:x/);
      }
    }
    expect((await listed('root')).map((r) => r.id)).not.toContain(linked);
    expect(logs.lines).toContainEqual(
      expect.objectContaining({ level: 40, file: join(realpathSync(dir), `${linked}.dgrec`), msg: 'recording points outside its directory: not listed' }),
    );
  });
});

describe('byte ranges and headers', () => {
  it('serves single ranges byte for byte, suffixes, HEAD, and 416 beyond the end', async () => {
    const id = ids.alice!;
    const whole = bytesOf(id);
    const size = whole.length;
    const path = `/recordings/${id}.dgrec`;
    const cases: [range: string, start: number, end: number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=100-', 100, size - 1],
      ['bytes=-50', size - 50, size - 1],
      [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
      [`bytes=-${size + 10}`, 0, size - 1],
      ['bytes=7-7', 7, 7],
    ];
    for (const [range, start, end] of cases) {
      const res = await get(path, 'alice', { Range: range });
      expect(res.status, range).toBe(206);
      expect(res.headers.get('content-range'), range).toBe(`bytes ${start}-${end}/${size}`);
      expect(res.headers.get('content-length'), range).toBe(String(end - start + 1));
      expect((await body(res)).equals(whole.subarray(start, end + 1)), range).toBe(true);
    }
    for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 9}`, 'bytes=-0']) {
      const res = await get(path, 'alice', { Range: range });
      expect(res.status, range).toBe(416);
      expect(res.headers.get('content-range')).toBe(`bytes */${size}`);
    }
    // Ignored, as RFC 9110 allows: the whole file.
    for (const range of ['bytes=9-3', 'bytes=0-1,5-6', 'items=0-5', 'bytes=x-y']) {
      const res = await get(path, 'alice', { Range: range });
      expect(res.status, range).toBe(200);
      expect((await body(res)).length).toBe(size);
    }
    const head = await get(path, 'alice', {}, 'HEAD');
    expect([head.status, head.headers.get('content-length'), (await body(head)).length]).toEqual([200, String(size), 0]);
    const headRange = await get(path, 'alice', { Range: 'bytes=10-19' }, 'HEAD');
    expect([headRange.status, headRange.headers.get('content-range')]).toEqual([206, `bytes 10-19/${size}`]);
  });

  it('sends the file uncached, unsniffed, under the pages’ CSP, and as an attachment when asked', async () => {
    const res = await get(`/recordings/${ids.alice}.dgrec`, 'alice');
    await body(res);
    expect(
      Object.fromEntries(['content-type', 'cache-control', 'x-content-type-options', 'referrer-policy', 'accept-ranges'].map((h) => [h, res.headers.get(h)])),
    ).toEqual({
      'content-type': 'application/octet-stream',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'accept-ranges': 'bytes',
    });
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'self'.*frame-ancestors 'self'/);
    expect(res.headers.get('content-disposition')).toBeNull();
    const download = await get(`/recordings/${ids.alice}.dgrec?download=1`, 'alice');
    await body(download);
    expect(download.headers.get('content-disposition')).toBe(`attachment; filename="${ids.alice}.dgrec"`);
    for (const path of ['/recordings', `/play/${ids.alice}`]) {
      const page = await get(path, 'alice');
      expect([page.headers.get('cache-control'), page.headers.get('x-content-type-options')], path).toEqual(['no-store', 'nosniff']);
      expect(page.headers.get('content-security-policy'), path).toMatch(/script-src 'self'/);
    }
  });

  it('logs each play and download with who, which, whose and the range', async () => {
    await body(await get(`/recordings/${ids.alice}.dgrec?download=1`, 'alice', { Range: 'bytes=0-9' }));
    await (await get(`/play/${ids.bob}`, 'root')).text();
    expect(logs.lines).toContainEqual(
      expect.objectContaining({
        msg: 'recording served',
        user: 'alice',
        recording: ids.alice,
        desktop: 'rec',
        of: 'alice',
        as: 'download',
        range: expect.stringMatching(/^0-9\/\d+$/),
      }),
    );
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'recording served', user: 'root', recording: ids.bob, of: 'bob', as: 'player' }));
  });
});

describe('files cut short, growing or gone', () => {
  /** A copy of alice's recording under a new id, cut at `length` bytes. */
  function cutCopy(length: (whole: Buffer) => number): { id: string; whole: Buffer } {
    const id = randomUUID();
    const whole = bytesOf(ids.alice!);
    writeFileSync(join(dir, `${id}.dgrec`), whole.subarray(0, length(whole)));
    return { id, whole };
  }

  it('lists a truncated file as incomplete, lasting until its last complete record', async () => {
    const { recordsAt } = decodeHeader(bytesOf(ids.alice!))!;
    const end = decodeRecords(bytesOf(ids.alice!), recordsAt).records.at(-1)!;
    // Cut inside the last records, then at the record boundary just before the End record.
    const inside = cutCopy((whole) => whole.length - RECORD_HEAD_BYTES - end.payload.length - 20);
    const boundary = cutCopy((whole) => whole.length - RECORD_HEAD_BYTES - end.payload.length);
    const all = await listed('alice');
    for (const { id, whole } of [inside, boundary]) {
      const cut = readFileSync(join(dir, `${id}.dgrec`));
      const complete = decodeRecords(cut, recordsAt).records;
      expect(complete.length).toBeLessThan(decodeRecords(whole, recordsAt).records.length);
      expect(all.find((r) => r.id === id)).toMatchObject({ complete: false, durationMs: complete.at(-1)!.atMs, size: cut.length, user: 'alice' });
      // Still served as it is.
      expect((await body(await get(`/recordings/${id}.dgrec`, 'alice'))).equals(cut)).toBe(true);
    }
  });

  it('says why a recording stopped while its session went on', async () => {
    const id = randomUUID();
    const header = decodeHeader(bytesOf(ids.alice!))!.header;
    writeFileSync(
      join(dir, `${id}.dgrec`),
      Buffer.concat([
        encodeHeader({ ...header, id }),
        encodeRecord(RecordKind.Screen, 10, Buffer.alloc(100, 1)),
        encodeJsonRecord(RecordKind.Stopped, 1234, { stopped: 'the disk cannot keep up' }),
      ]),
    );
    expect((await listed('alice')).find((r) => r.id === id)).toMatchObject({ complete: false, durationMs: 1234, stopped: 'the disk cannot keep up' });
    expect(await (await get('/recordings', 'alice')).text()).toContain('title="Stopped: the disk cannot keep up"');
  });

  it('never lets a header’s words become markup in the list', async () => {
    const id = randomUUID();
    const header = decodeHeader(bytesOf(ids.alice!))!.header;
    const hostile = '"><img src=x onerror=alert(1)>';
    writeFileSync(join(dir, `${id}.dgrec`), encodeHeader({ ...header, id, desktop: hostile, start: hostile }));
    const html = await (await get('/recordings', 'alice')).text();
    expect(html).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img');
    rmSync(join(dir, `${id}.dgrec`));
  });

  it('skips what is no recording (empty, cut within its header, another format) and says so once', async () => {
    const [empty, header, other] = [randomUUID(), randomUUID(), randomUUID()];
    writeFileSync(join(dir, `${empty}.dgrec`), '');
    writeFileSync(join(dir, `${header}.dgrec`), bytesOf(ids.alice!).subarray(0, 30));
    writeFileSync(join(dir, `${other}.dgrec`), 'GIF89a and more bytes');
    const all = await listed('root');
    await listed('alice');
    for (const id of [empty, header, other]) {
      expect(all.map((r) => r.id)).not.toContain(id);
      expect(logs.lines.filter((l) => l.file === join(realpathSync(dir), `${id}.dgrec`))).toEqual([
        expect.objectContaining({ level: 40, msg: expect.stringMatching(/^recording (too short|cut short|not a recording).*: not listed$/) }),
      ]);
      expect((await get(`/recordings/${id}.dgrec`, 'root')).status).toBe(404);
    }
  });

  it('answers 404 for a file removed between the list and the request, and goes on serving', async () => {
    const { id } = cutCopy((whole) => whole.length);
    expect((await listed('alice')).map((r) => r.id)).toContain(id);
    unlinkSync(join(dir, `${id}.dgrec`));
    for (const path of [`/recordings/${id}.dgrec`, `/play/${id}`]) expect((await get(path, 'alice')).status, path).toBe(404);
    expect((await listed('alice')).map((r) => r.id)).not.toContain(id);
    expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200);
  });

  it('serves a live session’s recording as far as it is written', async () => {
    const before = new Set(filesOf('alice'));
    const session = await openDesktop(gw.wsUrl('rec'), { headers: cookies.alice });
    await readScreen(session, 5_000);
    let id = '';
    await waitFor(() => {
      id =
        filesOf('alice')
          .find((f) => !before.has(f))
          ?.slice(0, -'.dgrec'.length) ?? '';
      return id !== '';
    }, 'the live recording');
    await waitFor(async () => (await listed('alice')).some((r) => r.id === id && r.complete === false), 'the live recording listed');
    const res = await get(`/recordings/${id}.dgrec`, 'alice');
    const served = await body(res);
    expect(Number(res.headers.get('content-length'))).toBe(served.length);
    expect(served.equals(bytesOf(id).subarray(0, served.length))).toBe(true);
    session.ws.close();
  });
});

describe('retention', () => {
  let sweepDir: string;
  beforeAll(() => {
    sweepDir = join(scratch, 'sweep');
    mkdirSync(sweepDir);
  });

  /** Files in `sweepDir`, each last written `ageDays` ago. */
  function filesAged(...ageDays: number[]): string[] {
    return ageDays.map((age) => {
      const id = randomUUID();
      const file = join(sweepDir, `${id}.dgrec`);
      writeFileSync(file, 'x');
      const when = new Date(Date.now() - age * DAY_MS);
      utimesSync(file, when, when);
      return id;
    });
  }

  const left = (): string[] => readdirSync(sweepDir);

  it('removes files older than retentionDays by their last write, and keeps the young', async () => {
    const [old, older, young] = filesAged(8, 400, 6);
    const notes = join(sweepDir, 'notes.txt');
    writeFileSync(notes, 'not a recording');
    utimesSync(notes, new Date(0), new Date(0));
    const library = new RecordingLibrary({ dirs: () => [sweepDir, join(scratch, 'not-made-yet')], retentionDays: 7, onProblem: () => {} });
    expect((await library.sweep()).sort()).toEqual([old, older].sort());
    expect(left().sort()).toEqual([`${young}.dgrec`, 'notes.txt'].sort());
    rmSync(notes);
    rmSync(join(sweepDir, `${young}.dgrec`));
  });

  it('keeps everything with retentionDays 0', async () => {
    const ids0 = filesAged(1, 10_000);
    const library = new RecordingLibrary({ dirs: () => [sweepDir], retentionDays: 0, onProblem: () => {} });
    expect(await library.sweep()).toEqual([]);
    expect(left().sort()).toEqual(ids0.map((id) => `${id}.dgrec`).sort());
    for (const id of ids0) rmSync(join(sweepDir, `${id}.dgrec`));
  });

  it('runs when the gateway starts, in every desktop’s directory, and never follows a link', async () => {
    const [old, young] = filesAged(31, 29);
    const target = join(scratch, 'outside', 'ancient.dgrec');
    writeFileSync(target, 'y');
    utimesSync(target, new Date(0), new Date(0));
    const link = randomUUID();
    symlinkSync(target, join(sweepDir, `${link}.dgrec`));
    const g = await startGateway({
      recordings: { dir, retentionDays: 30 },
      desktops: [{ name: 'own-dir', host: demo.host, port: demo.port, record: { dir: sweepDir } }],
    });
    try {
      await waitFor(() => !left().includes(`${old}.dgrec`), 'the old recording to go');
      expect(left().sort()).toEqual([`${young}.dgrec`, `${link}.dgrec`].sort());
      expect(readFileSync(target, 'utf8')).toBe('y');
      // The recordings above, written just now, stay.
      expect(readdirSync(dir)).toContain(`${ids.alice}.dgrec`);
    } finally {
      await g.gateway.destroy();
    }
  });
});
