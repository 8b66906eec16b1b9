/**
 * The recording player: noVNC's own RFB client shows a recording (docs/RECORDING.md), fed
 * from a fake WebSocket instead of a desktop. The channel plays the server's part of a
 * security-None handshake, hands over the recorded ServerInit, then the recorded screen bytes
 * at their recorded times; what noVNC sends back has nowhere to go.
 *
 * The recorded stream is one continuous RFB stream (Tight and ZRLE keep zlib state from one
 * message to the next), so a seek backwards starts a new RFB from the beginning and catches
 * up to the target as fast as noVNC takes the bytes (big messages, one picture at the end:
 * see holdFlips); a seek forwards catches up from where it is.
 *
 * State for tests: <body data-state="loading|playing|paused|seeking|ended|error"> and
 * data-position, the position in milliseconds.
 */
import RFB from '../novnc/core/rfb.js';

/** The file format (src/recording/format.ts): "DGREC", NUL, version 1, newline. */
const MAGIC = 'DGREC\0\x01\n';
const RECORD_HEAD_BYTES = 9;
const KIND = { screen: 1, stopped: 4, end: 5 };
const SPEEDS = [0.5, 1, 2, 4, 8, 16];
const SKIP_MS = 10_000;
/** Recorded bytes per message to noVNC when catching up: few big messages make a seek fast. */
const BATCH_BYTES = 1024 * 1024;
/** How long catching up runs before it lets the page draw its progress. */
const SLICE_MS = 40;
const INCOMPLETE = 'This is an incomplete recording (the gateway stopped before the session ended).';

const STATE_LABELS = {
  loading: 'Loading the recording…',
  playing: 'Playing',
  paused: 'Paused',
  seeking: 'Seeking…',
  ended: 'End of the recording',
  error: 'Cannot play the recording',
};

/**
 * @typedef {keyof typeof STATE_LABELS} State
 * @typedef {{ atMs: number, payload: Uint8Array, end: number }} Screen a Screen record; `end` counts the screen bytes up to its last
 * @typedef {object} Recording
 * @property {{ desktop: string, user: string, start: string, serverInit: string }} header
 * @property {Screen[]} screens
 * @property {number} durationMs
 * @property {boolean} complete whether the file has its End record
 * @property {{ atMs: number, reason: string } | undefined} stopped
 * @typedef {object} Session one RFB and its channel; a seek backwards starts a new one
 * @property {RFB} rfb
 * @property {ReplayChannel} channel
 * @property {number} next the index of the first screen record not given to noVNC yet
 * @property {boolean} over set once noVNC gave up or the session was torn down
 */

/** @param {string} id */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`player page is missing #${id}`);
  return element;
}

const ui = {
  screen: byId('screen'),
  state: byId('player-state'),
  start: byId('recording-start'),
  notice: byId('notice'),
  play: /** @type {HTMLButtonElement} */ (byId('play')),
  seek: /** @type {HTMLInputElement} */ (byId('seek')),
  currentTime: byId('current-time'),
  duration: byId('duration'),
  speed: /** @type {HTMLSelectElement} */ (byId('speed')),
  progress: /** @type {HTMLProgressElement} */ (byId('seek-progress')),
  download: /** @type {HTMLAnchorElement} */ (byId('download')),
  overlay: byId('overlay'),
  errorMessage: byId('error-message'),
  errorDetail: byId('error-detail'),
};

/**
 * What noVNC accepts instead of a WebSocket (core/websock.js checks for send, close,
 * binaryType, protocol, readyState and the four on* handlers). It is open from the start, so
 * noVNC begins its handshake as soon as it attaches, in its constructor.
 */
class ReplayChannel {
  constructor() {
    /** @type {number} */
    this.readyState = WebSocket.OPEN;
    this.binaryType = 'arraybuffer';
    this.protocol = '';
    /** @type {((event: MessageEvent) => void) | null} */
    this.onmessage = null;
    /** @type {((event: Event) => void) | null} */
    this.onopen = null;
    /** @type {((event: CloseEvent) => void) | null} */
    this.onclose = null;
    /** @type {((event: Event) => void) | null} */
    this.onerror = null;
  }

  /** What noVNC says to the "server" (its version, ClientInit, update requests) is not needed. */
  send() {}

  close() {
    if (this.readyState === WebSocket.CLOSED) return;
    this.readyState = WebSocket.CLOSED;
    // After the caller's turn, as a WebSocket's close event comes: noVNC ends its disconnect on it.
    queueMicrotask(() => this.onclose?.(new CloseEvent('close', { code: 1000, wasClean: true })));
  }

  /** @param {Uint8Array} bytes the whole of its ArrayBuffer */
  deliver(bytes) {
    if (this.readyState === WebSocket.OPEN) this.onmessage?.(new MessageEvent('message', { data: bytes.buffer }));
  }
}

/** @type {Recording | undefined} */
let recording;
/** @type {Session | undefined} */
let current;
/** @type {State} */
let state = 'loading';
/** The playback clock: at `atMs` when `since` (performance.now()) was, moving while running. */
const clock = { running: false, atMs: 0, since: 0 };
let speed = 1;
/** Whether the person wants it playing: a seek keeps playing or paused as it was. */
let wantPlaying = true;
/** Each seek takes a number; a seek that sees a newer number stops. */
let seekTicket = 0;
let seekTarget = 0;
/** Whether the person is dragging the seek bar: playback must not move it under the pointer. */
let scrubbing = false;
/** @type {number | undefined} */
let frame;

/** @param {string} message */
function notRecording(message) {
  return new Error(`This file is not a deskgate recording: ${message}.`);
}

/** @param {Uint8Array} bytes */
function parseJson(bytes) {
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * The header and the complete records of a .dgrec file; a file cut short is read up to its
 * last complete record.
 * @param {ArrayBuffer} buffer
 * @returns {Recording}
 */
function parseRecording(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  if (bytes.length < MAGIC.length + 4 || String.fromCharCode(...bytes.subarray(0, MAGIC.length)) !== MAGIC) throw notRecording('it does not start with DGREC');
  const recordsAt = MAGIC.length + 4 + view.getUint32(MAGIC.length);
  if (recordsAt > bytes.length) throw notRecording('its header is cut short');
  let header;
  try {
    header = parseJson(bytes.subarray(MAGIC.length + 4, recordsAt));
  } catch {
    throw notRecording('its header is not JSON');
  }
  if (header?.format !== 1 || typeof header.serverInit !== 'string') throw notRecording(`format ${header?.format} is not the format 1 this player reads`);
  /** @type {Screen[]} */
  const screens = [];
  /** @type {Recording['stopped']} */
  let stopped;
  let endMs = -1;
  let lastMs = 0;
  let screenBytes = 0;
  for (let at = recordsAt; at + RECORD_HEAD_BYTES <= bytes.length;) {
    const [kind, atMs, length] = [bytes[at], view.getUint32(at + 1), view.getUint32(at + 5)];
    const payload = bytes.subarray(at + RECORD_HEAD_BYTES, at + RECORD_HEAD_BYTES + length);
    if (payload.length < length) break;
    lastMs = atMs;
    if (kind === KIND.screen) screens.push({ atMs, payload, end: (screenBytes += length) });
    else if (kind === KIND.stopped) stopped ??= { atMs, reason: String(parseJson(payload).stopped) };
    else if (kind === KIND.end) endMs = Number(parseJson(payload).durationMs) || atMs;
    at += RECORD_HEAD_BYTES + length;
  }
  return { header, screens, stopped, complete: endMs >= 0, durationMs: Math.max(endMs, lastMs) };
}

/**
 * The server's side of the handshake, as noVNC expects it before the screen: version 3.8, one
 * security type (None), SecurityResult OK, then the recorded ServerInit. One message each, as a
 * server's come: noVNC reads no further in a message than the step it expects (after the
 * version, and once connected), and would leave the rest waiting for the next message.
 * @param {string} serverInit base64
 */
function handshake(serverInit) {
  return [new TextEncoder().encode('RFB 003.008\n'), Uint8Array.of(1, 1), Uint8Array.of(0, 0, 0, 0), Uint8Array.from(atob(serverInit), (c) => c.charCodeAt(0))];
}

/**
 * A new RFB on a new channel, given the handshake: it shows the recording from its start.
 * @param {Recording} rec
 */
function startSession(rec) {
  teardown();
  const channel = new ReplayChannel();
  const rfb = new RFB(ui.screen, /** @type {WebSocket} */ (/** @type {unknown} */ (channel)), { shared: true });
  rfb.viewOnly = true;
  rfb.scaleViewport = true;
  rfb.focusOnClick = false; // the keyboard stays with the player's shortcuts
  /** @type {Session} */
  const session = { rfb, channel, next: 0, over: false };
  rfb.addEventListener('disconnect', () => {
    if (session.over) return;
    session.over = true;
    fail('The player could not decode this recording.', `noVNC stopped at ${clockTime(position())}.`);
  });
  current = session;
  for (const message of handshake(rec.header.serverInit)) give(session, message);
  return session;
}

function teardown() {
  const session = current;
  current = undefined;
  if (!session || session.over) return;
  session.over = true;
  session.rfb.disconnect();
}

/**
 * Give noVNC bytes. It parses them in this call, so a decoding error surfaces here.
 * @param {Session} session
 * @param {Uint8Array} bytes
 */
function give(session, bytes) {
  try {
    session.channel.deliver(bytes);
  } catch (err) {
    if (session.over) return;
    fail('The player could not decode this recording.', err instanceof Error ? err.message : String(err));
  }
}

/**
 * Hand noVNC the screen bytes recorded up to `untilMs` that it has not had, at most about
 * BATCH_BYTES in one message (a single larger record goes alone).
 * @param {Session} session
 * @param {Screen[]} screens
 * @param {number} untilMs
 * @returns {boolean} whether there was anything to give
 */
function giveDue(session, screens, untilMs) {
  const first = session.next;
  let end = first;
  let total = 0;
  for (let screen = screens[end]; screen && screen.atMs <= untilMs; screen = screens[++end]) {
    if (total > 0 && total + screen.payload.length > BATCH_BYTES) break;
    total += screen.payload.length;
  }
  if (end === first) return false;
  const batch = new Uint8Array(total);
  for (let i = first, at = 0; i < end; i++) {
    const { payload } = /** @type {Screen} */ (screens[i]);
    batch.set(payload, at);
    at += payload.length;
  }
  session.next = end;
  give(session, batch);
  return !session.over;
}

/**
 * noVNC's display, which it keeps to itself: noVNC 1.7.0's (pinned in package.json). The
 * player needs two things of it that noVNC has no public call for (below); without it, the
 * player still works, only slower to seek.
 * @typedef {{ pending(): boolean, flush(): Promise<void>, flip(): void }} Display
 * @param {RFB} rfb
 * @returns {Display | undefined}
 */
function displayOf(rfb) {
  return /** @type {{ _display?: Display }} */ (/** @type {unknown} */ (rfb))._display;
}

/**
 * noVNC stops reading while its display decodes images (JPEG, PNG) and queues what arrives
 * meanwhile, up to a limit it fails at: catching up waits for the display to finish.
 * @param {Display | undefined} display
 */
async function displayDrained(display) {
  while (display?.pending()) await display.flush();
}

/**
 * noVNC draws each update on a back buffer, then copies the damaged area to the canvas on the
 * page ("flip"). After such a copy the browser must duplicate the whole back buffer before the
 * next drawing on it, and over thousands of updates that is most of a seek's time. So while
 * catching up the copies wait, and one flip at the end shows the damage gathered meanwhile.
 * @param {Display | undefined} display
 * @returns {() => void} shows the result and lets noVNC flip again
 */
function holdFlips(display) {
  if (!display) return () => {};
  display.flip = () => {};
  return () => {
    Reflect.deleteProperty(display, 'flip'); // noVNC's own again, even if holds overlapped
    display.flip();
  };
}

/**
 * Deliver everything up to `targetMs` as fast as noVNC takes it, yielding now and then so
 * the page shows the progress. False when a newer seek took over or noVNC gave up.
 * @param {Session} session
 * @param {Recording} rec
 * @param {number} targetMs
 * @param {number} ticket
 */
async function catchUp(session, rec, targetMs, ticket) {
  const { screens } = rec;
  const from = screens[session.next - 1]?.end ?? 0;
  const due = (screens.findLast((screen) => screen.atMs <= targetMs)?.end ?? 0) - from;
  const display = displayOf(session.rfb);
  const release = holdFlips(display);
  try {
    let sliceStart = performance.now();
    while (giveDue(session, screens, targetMs)) {
      await displayDrained(display);
      if (performance.now() - sliceStart > SLICE_MS) {
        showProgress(((screens[session.next - 1]?.end ?? 0) - from) / due);
        await new Promise((resolve) => setTimeout(resolve));
        sliceStart = performance.now();
      }
      if (ticket !== seekTicket || session.over) return false;
    }
    return !session.over;
  } finally {
    release();
  }
}

/** @param {number} fraction */
function showProgress(fraction) {
  ui.progress.hidden = false;
  ui.progress.value = fraction;
  ui.state.textContent = `Seeking… ${Math.floor(fraction * 100)}%`;
}

/**
 * Show the recording at `targetMs`, then play on or stay paused as the person wants.
 * @param {number} targetMs
 */
async function seek(targetMs) {
  const rec = recording;
  if (!rec || state === 'error') return;
  const target = Math.min(Math.max(0, Math.round(targetMs)), rec.durationMs);
  const ticket = ++seekTicket;
  seekTarget = target;
  stopClock();
  setState('seeking');
  showPosition(target);
  let session = current;
  // A record already given lies past the target: noVNC cannot go back, so start again.
  if (!session || session.over || (rec.screens[session.next - 1]?.atMs ?? 0) > target) session = startSession(rec);
  if (!(await catchUp(session, rec, target, ticket))) return;
  ui.progress.hidden = true;
  clock.atMs = target;
  if (target >= rec.durationMs) finish(rec);
  else if (wantPlaying) startClock();
  else setState('paused');
}

/** @param {number} deltaMs */
function skip(deltaMs) {
  void seek((state === 'seeking' ? seekTarget : position()) + deltaMs);
}

/** Where playback is now. */
function position() {
  if (!clock.running || !recording) return clock.atMs;
  return Math.min(recording.durationMs, clock.atMs + (performance.now() - clock.since) * speed);
}

function startClock() {
  clock.since = performance.now();
  clock.running = true;
  setState('playing');
  frame ??= requestAnimationFrame(tick);
}

function stopClock() {
  clock.atMs = position();
  clock.running = false;
  if (frame !== undefined) cancelAnimationFrame(frame);
  frame = undefined;
}

/** The one scheduler: each frame, give noVNC what was recorded up to the clock's time. */
function tick() {
  frame = undefined;
  const session = current;
  const rec = recording;
  if (!clock.running || !session || !rec) return;
  const at = position();
  const release = holdFlips(displayOf(session.rfb)); // one picture a frame, however many updates
  while (giveDue(session, rec.screens, at));
  release();
  if (session.over) return;
  showPosition(at);
  if (at >= rec.durationMs) finish(rec);
  else frame = requestAnimationFrame(tick);
}

/** @param {Recording} rec */
function finish(rec) {
  stopClock();
  clock.atMs = rec.durationMs;
  wantPlaying = false;
  showPosition(rec.durationMs);
  setState('ended');
}

function togglePlay() {
  if (!recording || state === 'loading' || state === 'error') return;
  if (state === 'ended') {
    wantPlaying = true;
    void seek(0);
    return;
  }
  wantPlaying = !wantPlaying;
  if (state === 'seeking') setState('seeking');
  else if (wantPlaying) startClock();
  else {
    stopClock();
    setState('paused');
  }
}

/** @param {number} next */
function setSpeed(next) {
  if (clock.running) {
    clock.atMs = position();
    clock.since = performance.now();
  }
  speed = next;
  ui.speed.value = String(next);
}

/** @param {1 | -1} step */
function stepSpeed(step) {
  const next = SPEEDS[SPEEDS.indexOf(speed) + step];
  if (next !== undefined) setSpeed(next);
}

/** @param {number} ms 02:05, or 1:02:05 from an hour on (as src/http/player-page.ts says it) */
function clockTime(ms) {
  const hours = Math.floor(ms / 3_600_000);
  const mmss = new Date(Math.max(0, ms)).toISOString().slice(14, 19);
  return hours > 0 ? `${hours}:${mmss}` : mmss;
}

/** @param {number} at */
function showPosition(at) {
  const rec = recording;
  if (!rec) return;
  document.body.dataset.position = String(Math.round(at));
  ui.currentTime.textContent = clockTime(at);
  if (!scrubbing) {
    ui.seek.value = String(at);
    ui.seek.setAttribute('aria-valuetext', `${clockTime(at)} of ${clockTime(rec.durationMs)}`);
  }
  const stopped = rec.stopped && at >= rec.stopped.atMs ? `Recording stopped here: ${rec.stopped.reason}` : '';
  const text = [rec.complete ? '' : INCOMPLETE, stopped].filter(Boolean).join(' ');
  if (ui.notice.textContent !== text) ui.notice.textContent = text; // role=alert: only real changes
  ui.notice.hidden = text === '';
}

/** @param {State} next */
function setState(next) {
  state = next;
  document.body.dataset.state = next;
  ui.state.textContent = STATE_LABELS[next];
  const pause = next === 'playing' || (next === 'seeking' && wantPlaying);
  ui.play.textContent = pause ? 'Pause' : 'Play';
  ui.play.setAttribute('aria-label', pause ? 'Pause' : 'Play');
}

/**
 * @param {string} message
 * @param {string} detail
 */
function fail(message, detail) {
  stopClock();
  seekTicket++;
  if (current) current.over = true; // nothing more goes to noVNC; its last picture stays
  ui.errorMessage.textContent = message;
  ui.errorDetail.textContent = detail;
  ui.overlay.hidden = false;
  ui.progress.hidden = true;
  for (const control of [ui.play, ui.seek, ui.speed]) control.disabled = true;
  setState('error');
}

/**
 * The file, or why not in words.
 * @returns {Promise<ArrayBuffer | undefined>}
 */
async function download() {
  let response;
  try {
    response = await fetch(ui.download.href, { redirect: 'manual' });
  } catch (err) {
    fail('The recording could not be loaded: the gateway did not answer.', err instanceof Error ? err.message : '');
    return undefined;
  }
  if (response.type === 'opaqueredirect') fail('You are no longer logged in.', 'Log in again to watch this recording.');
  else if (response.status === 401 || response.status === 403) fail('You are not allowed to watch this recording.', `HTTP ${response.status}`);
  else if (response.status === 404) fail('There is no such recording: it may have been deleted.', 'HTTP 404');
  else if (!response.ok) fail('The gateway could not send the recording.', `HTTP ${response.status}`);
  else return response.arrayBuffer().catch(() => void fail('The recording could not be loaded: the download was cut short.', `HTTP ${response.status}`));
  return undefined;
}

async function load() {
  setState('loading');
  const buffer = await download();
  if (!buffer) return;
  try {
    recording = parseRecording(buffer);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err), `${ui.download.href} (${buffer.byteLength} bytes)`);
    return;
  }
  const { header, durationMs } = recording;
  const start = new Date(header.start);
  if (!Number.isNaN(start.getTime())) ui.start.textContent = start.toLocaleString();
  ui.duration.textContent = clockTime(durationMs);
  ui.seek.max = String(durationMs);
  for (const control of [ui.play, ui.seek, ui.speed]) control.disabled = false;
  await seek(0);
}

/** @type {Record<string, () => void>} */
const SHORTCUTS = {
  ' ': togglePlay,
  ArrowLeft: () => skip(-SKIP_MS),
  ArrowRight: () => skip(SKIP_MS),
  Home: () => void seek(0),
  End: () => void seek(recording?.durationMs ?? 0),
  '+': () => stepSpeed(1),
  '=': () => stepSpeed(1),
  '-': () => stepSpeed(-1),
  _: () => stepSpeed(-1),
};

/** @param {KeyboardEvent} event */
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  // Space on a button, link or list is that control's own.
  if (event.key === ' ' && event.target instanceof Element && event.target.closest('button, a, select, summary')) return;
  const shortcut = SHORTCUTS[event.key];
  if (!shortcut) return;
  event.preventDefault(); // the seek bar would move itself too
  shortcut();
}

function start() {
  ui.play.addEventListener('click', togglePlay);
  ui.speed.addEventListener('change', () => setSpeed(Number(ui.speed.value)));
  ui.seek.addEventListener('input', () => {
    scrubbing = true;
    ui.currentTime.textContent = clockTime(Number(ui.seek.value));
  });
  ui.seek.addEventListener('change', () => {
    scrubbing = false;
    void seek(Number(ui.seek.value));
  });
  document.addEventListener('keydown', onKey);
  // A debug hook for people and tests; nothing on the page depends on it.
  Object.defineProperty(window, 'deskgatePlayer', {
    value: {
      get rfb() {
        return current?.rfb;
      },
    },
  });
  void load();
}

start();
