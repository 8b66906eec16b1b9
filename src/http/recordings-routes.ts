/**
 * Recordings, for the people who may see them:
 *   GET /recordings            the list, a page, newest first
 *   GET /api/recordings        the same list, JSON
 *   GET /recordings/ID.dgrec   the file: one byte range at most (206, 416), HEAD; ?download=1 as an attachment
 *   GET /play/ID               the player
 * Administrators see every recording. Others see those of their own sessions with
 * `recordings.access: own` (the default; in auth mode none everyone is `anonymous`, and sees
 * anonymous's), and none with `admins`. A recording someone may not see is answered exactly
 * as one that does not exist, 404, so that its id cannot be probed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import type { Identity } from '../auth/identity.js';
import { errors, type GatewayError } from '../errors.js';
import { events } from '../observe/events.js';
import { VERSION } from '../package.js';
import { isRecordingId, openRecording, type FoundRecording, type RecordingInfo } from '../recording/library.js';
import { renderNotice, renderRecordings } from './pages.js';
import { renderPlayer } from './player-page.js';
import { type Headers, json, problem, text } from './respond.js';
import type { Exchange, RoutesContext } from './routes.js';

/** Whether a path is one of these routes. */
export function isRecordingsRoute(path: string): boolean {
  return path === '/recordings' || path === '/api/recordings' || /^\/(recordings|play)\//.test(path);
}

/** Whether this user may list recordings at all: the dashboard links the page then. */
export function mayListRecordings(ctx: RoutesContext, identity: Identity): boolean {
  return ctx.recordings.configured && (ctx.config.recordings.access === 'own' || ctx.coordinator.isAdmin(identity));
}

export type RecordingsRoute = (x: Exchange, path: string, askToLogIn: (x: Exchange) => void) => Promise<void>;

/** `pageHeaders`: the pages' CSP, Referrer-Policy, nosniff and no-store, which the files get too. */
export function createRecordingsRoute(ctx: RoutesContext, pageHeaders: Headers): RecordingsRoute {
  const library = ctx.recordings;

  /** Whether this user may see this recording. */
  function mayPlay(identity: Identity, recording: RecordingInfo): boolean {
    if (ctx.coordinator.isAdmin(identity)) return true;
    return ctx.config.recordings.access === 'own' && recording.user === identity.user;
  }

  /** The recording the path names, if this user may see it; else the refusal. */
  async function findFor(identity: Identity, id: string): Promise<FoundRecording | GatewayError> {
    if (!isRecordingId(id)) return errors.malformedRecordingId().of(identity.user);
    const found = await library.find(id);
    return found && mayPlay(identity, found.info) ? found : errors.unknownRecording(id).of(identity.user);
  }

  function served(x: Exchange, identity: Identity, recording: RecordingInfo, as: 'player' | 'file' | 'download', range?: string): void {
    events.recordingServed.publish(() => ({
      gateway: ctx.gateway,
      remote: x.from.address,
      user: identity.user,
      recording: recording.id,
      desktop: recording.desktop,
      of: recording.user,
      as,
      range,
    }));
  }

  /** The recordings this user may see, newest first. */
  async function visibleTo(identity: Identity): Promise<RecordingInfo[]> {
    return (await library.list()).filter((r) => mayPlay(identity, r));
  }

  async function listPage(x: Exchange, identity: Identity): Promise<void> {
    const recordings = await visibleTo(identity);
    const user = identity.via === 'password' ? identity.user : undefined;
    x.page(200, renderRecordings(recordings, { root: x.root, version: VERSION, user }));
  }

  async function player(x: Exchange, identity: Identity, id: string): Promise<void> {
    const found = await findFor(identity, id);
    if (!('info' in found)) {
      x.refused(found);
      return x.page(found.status, renderNotice(x.root, found.status === 404 ? 'No such recording' : 'Malformed request', found.message));
    }
    served(x, identity, found.info, 'player');
    x.page(200, renderPlayer({ root: x.root, recording: found.info }));
  }

  async function file(x: Exchange, identity: Identity, name: string): Promise<void> {
    if (!name.endsWith('.dgrec')) return refuse(x, errors.unknownRecording(name).of(identity.user));
    const found = await findFor(identity, name.slice(0, -'.dgrec'.length));
    if (!('info' in found)) return refuse(x, found);
    // The player waits its turn on a pipelined connection holding no file.
    if (!(await itsTurn(x.req, x.res))) return;
    const opened = await openRecording(found.file);
    if (!opened) return refuse(x, errors.unknownRecording(found.info.id).of(identity.user)); // removed since it was found
    const { handle, size } = opened;
    const range = x.req.headers['if-range'] === undefined ? parseRange(x.req.headers.range, size) : undefined;
    const download = new URL(x.req.url ?? '/', 'http://x').searchParams.get('download') === '1';
    const headers: Headers = {
      ...pageHeaders,
      'Accept-Ranges': 'bytes',
      ...(download && { 'Content-Disposition': `attachment; filename="${found.info.id}.dgrec"` }),
    };
    if (range === 'unsatisfiable') {
      await handle.close();
      return text(x.res, 416, 'Range not satisfiable', { ...headers, 'Content-Range': `bytes */${size}` });
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const contentRange = range && `bytes ${start}-${end}/${size}`;
    x.res.writeHead(range ? 206 : 200, {
      ...headers,
      'Content-Type': 'application/octet-stream',
      'Content-Length': end - start + 1,
      ...(contentRange && { 'Content-Range': contentRange }),
    });
    if (x.req.method === 'HEAD' || end < start) {
      await handle.close();
      x.res.end();
      return;
    }
    served(x, identity, found.info, download ? 'download' : 'file', contentRange?.slice('bytes '.length));
    // pipeline() closes the file when the response is cut short, and cuts the response short
    // when the file cannot be read (its length was promised already).
    pipeline(handle.createReadStream({ start, end }), x.res, ignoreError);
  }

  async function listJson(x: Exchange, identity: Identity): Promise<void> {
    json(x.res, 200, { recordings: await visibleTo(identity) });
  }

  function refuse(x: Exchange, error: GatewayError): void {
    x.refused(error);
    problem(x.res, error);
  }

  return async function recordingsRoute(x, path, askToLogIn) {
    const api = path === '/api/recordings';
    const identity = await ctx.auth.identify(x.req, x.from);
    if (!identity) {
      if (!api) return askToLogIn(x);
      const error = ctx.auth.mode === 'password' ? errors.logInFirst() : errors.authenticationRequired();
      x.refused(error);
      return json(x.res, error.status, { error: error.code, message: error.message });
    }
    if (!mayListRecordings(ctx, identity)) {
      const error = (ctx.recordings.configured ? errors.notAdmin(identity.user) : errors.recordingsNotEnabled()).of(identity.user);
      x.refused(error);
      if (api) return json(x.res, error.status, { error: error.code, message: error.message });
      return x.page(error.status, renderNotice(x.root, 'Recordings', error.message));
    }
    if (api) return listJson(x, identity);
    if (path === '/recordings') return listPage(x, identity);
    if (path.startsWith('/play/')) return player(x, identity, path.slice('/play/'.length));
    return file(x, identity, path.slice('/recordings/'.length));
  };
}

/**
 * The one byte range a Range header asks for, within a file of `size` bytes: `bytes=a-b`,
 * `bytes=a-` or `bytes=-n`. Undefined: the whole file (no header, another unit, several
 * ranges, or a header that is not valid, which RFC 9110 says to ignore).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    return suffix === 0 || size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return undefined;
  return start >= size ? 'unsatisfiable' : { start, end };
}

/**
 * Resolves once the response may write to the connection: at once, or, for a response queued
 * behind others on a pipelined connection, when its turn comes; false if the connection closes
 * first (Node then closes the queued requests, never their responses).
 */
function itsTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onSocket = (): void => {
      req.off('close', onClose);
      resolve(true);
    };
    const onClose = (): void => {
      res.off('socket', onSocket);
      resolve(false);
    };
    res.once('socket', onSocket);
    req.once('close', onClose);
  });
}

/** pipeline() has destroyed both streams by then: nothing is left to clean up or tell. */
function ignoreError(): void {}
