/**
 * The viewer page: one noVNC RFB session for the desktop named in <body data-desktop>,
 * a toolbar around it, and a plain-words message when the session ends.
 *
 * The page opens the WebSocket itself and hands it to noVNC, because noVNC keeps the
 * close code and reason to itself: the gateway explains every refusal in the close
 * frame (README.md, "Close codes"), and this is how the user gets to read it.
 *
 * State for tests: <body data-state="connecting|connected|disconnected">, and
 * data-close-code once the gateway closed with a code; #connection-state holds the state
 * in words and #status-message the reason the session ended.
 */
import RFB from '../novnc/core/rfb.js';

/** Said when the gateway closes without a reason; the gateway normally sends its own words. */
const CLOSE_MESSAGES = {
  1000: 'The session ended.',
  1001: 'The gateway is shutting down.',
  1003: 'The gateway received data it does not accept.',
  1005: 'The connection was closed.',
  1006: 'The connection to the gateway was lost.',
  1009: 'A message was too big for the gateway.',
  1011: 'The gateway ran into an internal error.',
  4400: 'The gateway could not understand the request.',
  4401: 'You need to log in to open this desktop.',
  4403: 'You are not allowed to open this desktop.',
  4404: 'Unknown desktop.',
  4408: 'The session timed out.',
  4409: 'The desktop is in use by another session, or this session was taken over.',
  4429: 'Too many sessions are open. Try again later.',
  4500: "The desktop's VNC server ended the session unexpectedly.",
  4502: 'The gateway could not connect to the desktop.',
  4503: 'The gateway is not ready. Try again in a moment.',
  4504: 'The desktop did not answer in time.',
  4507: 'The session was being recorded, and the recording failed.',
};

const STATE_LABELS = {
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Disconnected',
};

/** @param {string} id */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`viewer page is missing #${id}`);
  return element;
}

const ui = {
  screen: byId('screen'),
  state: byId('connection-state'),
  ctrlAltDel: /** @type {HTMLButtonElement} */ (byId('ctrl-alt-del')),
  clipboardToggle: /** @type {HTMLButtonElement} */ (byId('clipboard-toggle')),
  clipboardPanel: byId('clipboard-panel'),
  clipboardText: /** @type {HTMLTextAreaElement} */ (byId('clipboard-text')),
  clipboardSend: /** @type {HTMLButtonElement} */ (byId('clipboard-send')),
  fullscreen: /** @type {HTMLButtonElement} */ (byId('fullscreen')),
  reconnect: /** @type {HTMLButtonElement} */ (byId('reconnect')),
  overlay: byId('overlay'),
  message: byId('status-message'),
  detail: byId('status-detail'),
  overlayReconnect: /** @type {HTMLButtonElement} */ (byId('overlay-reconnect')),
  credentials: byId('credentials'),
  credentialsForm: /** @type {HTMLFormElement} */ (byId('credentials-form')),
  usernameField: byId('username-field'),
  username: /** @type {HTMLInputElement} */ (byId('credentials-username')),
  password: /** @type {HTMLInputElement} */ (byId('credentials-password')),
  presence: byId('presence'),
  presenceSummary: byId('presence-summary'),
  presencePeople: byId('presence-people'),
  presenceNotice: byId('presence-notice'),
  requestControl: /** @type {HTMLButtonElement} */ (byId('request-control')),
  takeControl: /** @type {HTMLButtonElement} */ (byId('take-control')),
  releaseControl: /** @type {HTMLButtonElement} */ (byId('release-control')),
  controlPrompt: byId('control-prompt'),
  controlPromptText: byId('control-prompt-text'),
  allowControl: /** @type {HTMLButtonElement} */ (byId('allow-control')),
  denyControl: /** @type {HTMLButtonElement} */ (byId('deny-control')),
};

const desktop = document.body.dataset.desktop ?? '';
/** config/names.ts's DESKTOP_NAME. */
const DESKTOP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Whether this user may only watch; on a controlled desktop the gateway may also make them a viewer (see applyRole). */
const viewOnly = document.body.dataset.viewOnly === 'true';
/** Whether the session sends input now: the gateway's presence channel says when that changes. */
let inControl = !viewOnly;
// A ticket link (embedding) opens one WebSocket only: the gateway refuses it a second time.
const ticket = new URLSearchParams(location.search).get('ticket');
const TICKET_USED = 'This link opened one session and cannot open another: ask for a new link.';

/**
 * One attempt to connect. Reconnecting starts a new Session, and events of an old one are
 * ignored, because noVNC reports a torn-down session's end a little later.
 * @typedef {object} Session
 * @property {WebSocket | undefined} socket
 * @property {RFB | undefined} rfb
 * @property {AbortController} listeners removes the listeners this page put on the socket
 * @property {{ code: number, reason: string } | undefined} close what the gateway's close frame said
 * @property {{ status: number, reason: string } | undefined} securityFailure
 * @property {string | undefined} startError set when noVNC could not even start
 * @property {boolean} connected whether the desktop was ever shown
 * @property {boolean} ended
 * @property {string} viewKey this session's presence key: it opens the presence channel
 * @property {WebSocket | undefined} presence
 */

/** @type {Session | undefined} */
let current;

/**
 * Same host and scheme family as the page, so cookies and the Origin check just work.
 * @param {string} path `websockify` or `presence`
 * @param {Record<string, string>} params
 */
function websocketUrl(path, params) {
  const url = new URL(`../${path}`, import.meta.url); // beside static/, wherever the gateway's root is
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.href;
}

/** 128 random bits, base64url: the presence key only this page knows. */
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

function connect() {
  teardown();
  hide(ui.overlay);
  hide(ui.credentials);
  delete document.body.dataset.closeCode;
  setState('connecting');
  /** @type {Session} */
  const session = {
    socket: undefined,
    rfb: undefined,
    listeners: new AbortController(),
    close: undefined,
    securityFailure: undefined,
    startError: undefined,
    connected: false,
    ended: false,
    viewKey: randomKey(),
    presence: undefined,
  };
  current = session;
  try {
    // A token file's desktop may be named with any text; ?token= takes it, ?desktop= only plain names.
    const params = { [DESKTOP_NAME.test(desktop) ? 'desktop' : 'token']: desktop, view: session.viewKey, ...(ticket ? { ticket } : {}) };
    session.socket = new WebSocket(websocketUrl(document.body.dataset.websocketPath ?? 'websockify', params), ['binary']);
    // Added before noVNC adds its own, so the close frame is known when noVNC reports the end.
    session.socket.addEventListener('close', (event) => onSocketClose(session, event), { signal: session.listeners.signal });
    session.rfb = createRfb(session, session.socket);
  } catch (err) {
    session.startError = `The viewer could not start: ${err instanceof Error ? err.message : String(err)}`;
    session.listeners.abort();
    session.socket?.close();
    end(session);
  }
}

/**
 * @param {Session} session
 * @param {WebSocket} socket
 */
function createRfb(session, socket) {
  const rfb = new RFB(ui.screen, socket, { shared: true });
  rfb.scaleViewport = true;
  rfb.viewOnly = !inControl;
  rfb.focusOnClick = inControl;
  rfb.addEventListener(
    'connect',
    whileCurrent(session, () => onConnect(session)),
  );
  rfb.addEventListener(
    'disconnect',
    whileCurrent(session, () => end(session)),
  );
  rfb.addEventListener(
    'securityfailure',
    whileCurrent(session, (event) => {
      session.securityFailure = { status: event.detail.status, reason: event.detail.reason ?? '' };
    }),
  );
  rfb.addEventListener(
    'credentialsrequired',
    whileCurrent(session, (event) => askCredentials(event.detail.types)),
  );
  rfb.addEventListener(
    'clipboard',
    whileCurrent(session, (event) => {
      ui.clipboardText.value = event.detail.text;
    }),
  );
  return rfb;
}

/**
 * noVNC's event target cannot drop listeners by signal, and a torn-down RFB still reports
 * its end a little later: its handlers run only while their session is the current one.
 * @param {Session} session
 * @param {(event: CustomEvent) => void} handler
 */
function whileCurrent(session, handler) {
  return (/** @type {CustomEvent} */ event) => {
    if (session === current) handler(event);
  };
}

/**
 * @param {Session} session
 * @param {CloseEvent} event
 */
function onSocketClose(session, event) {
  // A close that follows noVNC giving up on its own is usually our side's echo (1005,
  // 1006): only the gateway's own code or words are worth replacing the message for.
  const fromGateway = event.reason !== '' || event.code >= 4000;
  if (session.ended && !fromGateway) return;
  session.close = { code: event.code, reason: event.reason };
  if (session.ended) showEndMessage(session);
}

/** @param {Session} session */
function onConnect(session) {
  session.connected = true;
  setState('connected');
  hide(ui.credentials);
  if (inControl) session.rfb?.focus({ preventScroll: true });
  openPresence(session);
}

/**
 * The presence channel: who is here, who has control, requests for it. The gateway enforces
 * every role itself (a viewer's input never reaches the desktop); this page only shows it.
 * @param {Session} session
 */
function openPresence(session) {
  const socket = new WebSocket(websocketUrl('presence', { view: session.viewKey }));
  session.presence = socket;
  const { signal } = session.listeners;
  socket.addEventListener(
    'message',
    (event) => {
      if (session !== current || typeof event.data !== 'string') return;
      const message = JSON.parse(event.data);
      if (message.type === 'presence') showPresence(message);
      else if (message.type === 'notice') ui.presenceNotice.textContent = message.text;
    },
    { signal },
  );
}

/**
 * @typedef {{ user: string, role: 'control' | 'view', since: number }} Person
 * @typedef {object} Presence
 * @property {'shared' | 'exclusive' | 'controlled'} sharing
 * @property {{ session: string, user: string, role: 'control' | 'view', mayControl: boolean, mayTakeOver: boolean }} you
 * @property {{ user: string, since: number } | null} controller
 * @property {{ user: string, mine: boolean } | null} request
 * @property {Person[]} people
 */

/** @param {Presence} presence */
function showPresence({ sharing, you, controller, request, people }) {
  applyRole(you.role === 'control');
  const others = people.length - 1;
  ui.presenceSummary.textContent =
    sharing === 'controlled'
      ? controller
        ? controller.user === you.user && you.role === 'control'
          ? 'You have control.'
          : `${controller.user} has control since ${clock(controller.since)}.`
        : 'Nobody has control.'
      : others > 0
        ? `${others} other ${others === 1 ? 'person is' : 'people are'} here.`
        : 'Only you are here.';
  ui.presencePeople.replaceChildren(
    ...people.map((person) => {
      const item = document.createElement('li');
      item.textContent = `${person.user}${person.role === 'control' && sharing === 'controlled' ? ' (control)' : person.role === 'view' ? ' (watching)' : ''}`;
      item.dataset.role = person.role;
      return item;
    }),
  );
  const controlled = sharing === 'controlled';
  const viewer = controlled && you.role === 'view' && you.mayControl;
  ui.requestControl.hidden = !viewer || !controller || you.mayTakeOver || Boolean(request?.mine);
  ui.requestControl.disabled = Boolean(request);
  ui.takeControl.hidden = !viewer || (Boolean(controller) && !you.mayTakeOver);
  ui.releaseControl.hidden = !controlled || you.role !== 'control';
  const asking = controlled && you.role === 'control' && request && !request.mine;
  ui.controlPrompt.hidden = !asking;
  if (asking) ui.controlPromptText.textContent = `${request.user} asks for control.`;
  if (request?.mine) ui.presenceNotice.textContent = `Waiting for ${controller?.user ?? 'the controller'} to answer…`;
  document.body.dataset.role = you.role;
  ui.presence.hidden = false;
}

/**
 * Follow the role the gateway gave this session.
 * @param {boolean} control
 */
function applyRole(control) {
  if (control === inControl) return;
  inControl = control;
  const rfb = current?.rfb;
  if (rfb) {
    rfb.viewOnly = !control;
    rfb.focusOnClick = control;
  }
  setState(/** @type {'connected'} */ (document.body.dataset.state));
}

/** @param {{ type: string, allow?: boolean }} action */
function sendAction(action) {
  const socket = current?.presence;
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(action));
  if (action.type === 'answer') hide(ui.controlPrompt);
}

/** @param {number} ms */
function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** @param {Session} session */
function end(session) {
  session.ended = true;
  session.presence?.close();
  hide(ui.presence);
  setState('disconnected');
  hide(ui.credentials);
  showEndMessage(session);
  show(ui.overlay);
  if (!ticket) ui.overlayReconnect.focus();
  if (!session.connected && !session.close?.reason) void explainRefusal(session);
}

/**
 * A refused upgrade reaches a page only as "connection lost" (1006): browsers hide the
 * HTTP answer. The page itself is behind the same checks, so ask for it again and say what
 * the gateway says there: the login has ended, the ticket is used up, access was taken away.
 * @param {Session} session
 */
async function explainRefusal(session) {
  let response;
  try {
    response = await fetch(location.href, { redirect: 'manual', cache: 'no-store' });
  } catch {
    return; // the gateway is unreachable: "connection lost" is the truth
  }
  if (session !== current) return;
  const gatewayOrigin = document.body.dataset.gatewayOrigin;
  if (response.ok && gatewayOrigin && gatewayOrigin !== location.origin) {
    // The page loads, the WebSocket does not: the gateway refused this page's Origin, which it
    // compares with its own origin as the Host (or a proxy's X-Forwarded-*) headers tell it.
    ui.message.textContent = `The gateway refused this page's origin, ${location.origin}: it takes itself for ${gatewayOrigin}.`;
    ui.detail.textContent = 'The reverse proxy in front of it must pass the Host header (or X-Forwarded-Host and X-Forwarded-Proto).';
  } else if (response.type === 'opaqueredirect') {
    ui.message.textContent = 'You are no longer logged in.';
    ui.detail.textContent = 'Log in again to open this desktop.';
  } else if (!response.ok) {
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    if (session !== current) return;
    ui.message.textContent = page.getElementById('notice-message')?.textContent ?? messageForCode(4000 + response.status);
    ui.detail.textContent = `HTTP ${response.status}`;
  }
}

/** @param {Session} session */
function showEndMessage(session) {
  const { message, detail } = describeEnd(session);
  ui.message.textContent = message;
  // Reconnecting would only be refused: say what to do instead.
  ui.detail.textContent = ticket ? [detail, TICKET_USED].filter(Boolean).join('. ') : detail;
  if (session.close?.code) document.body.dataset.closeCode = String(session.close.code);
}

/**
 * The gateway's words first: it knows why (e.g. "Desktop 'lab3' is not reachable
 * (connection refused)"). Then the VNC server's, then a sentence per close code.
 * @param {Session} session
 * @returns {{ message: string, detail: string }}
 */
function describeEnd({ close, securityFailure, startError }) {
  if (startError) return { message: startError, detail: '' };
  const codeDetail = close?.code ? `Close code ${close.code}` : '';
  if (close?.reason) return { message: close.reason, detail: codeDetail };
  if (securityFailure) {
    return {
      message: securityFailure.reason || 'The desktop refused the login.',
      detail: `Security failure (status ${securityFailure.status})`,
    };
  }
  if (close) return { message: messageForCode(close.code), detail: codeDetail };
  return { message: 'The connection to the desktop failed.', detail: '' };
}

/** @param {number} code */
function messageForCode(code) {
  const known = /** @type {Record<number, string>} */ (CLOSE_MESSAGES)[code];
  if (known) return known;
  return code >= 4000 ? 'The gateway closed the session.' : 'The connection closed unexpectedly.';
}

/** Ends the current session for good, quietly: its late events must not touch the page. */
function teardown() {
  const session = current;
  current = undefined;
  if (!session) return;
  session.listeners.abort();
  session.presence?.close();
  if (session.rfb && !session.ended) session.rfb.disconnect();
  else if (session.socket && session.socket.readyState < WebSocket.CLOSING) session.socket.close();
}

/** @param {'connecting' | 'connected' | 'disconnected'} state */
function setState(state) {
  document.body.dataset.state = state;
  ui.state.textContent = STATE_LABELS[state];
  const canSend = state === 'connected' && inControl;
  ui.ctrlAltDel.disabled = !canSend;
  ui.clipboardSend.disabled = !canSend;
}

/** @param {string[]} types what noVNC asks for, e.g. ['username', 'password'] */
function askCredentials(types) {
  ui.usernameField.hidden = !types.includes('username');
  show(ui.credentials);
  (ui.usernameField.hidden ? ui.password : ui.username).focus();
}

/** @param {SubmitEvent} event */
function sendCredentials(event) {
  event.preventDefault();
  current?.rfb?.sendCredentials({ username: ui.username.value, password: ui.password.value });
  ui.password.value = '';
  hide(ui.credentials);
}

function toggleClipboard() {
  const open = ui.clipboardPanel.hidden;
  ui.clipboardPanel.hidden = !open;
  ui.clipboardToggle.setAttribute('aria-expanded', String(open));
  if (open) ui.clipboardText.focus();
}

/** @param {KeyboardEvent} event */
function closeClipboardOnEscape(event) {
  if (event.key !== 'Escape') return;
  toggleClipboard();
  ui.clipboardToggle.focus();
}

function sendClipboard() {
  const rfb = current?.rfb;
  if (!rfb) return;
  rfb.clipboardPasteFrom(ui.clipboardText.value);
  // The usual next step is pasting on the desktop, so give it the keyboard.
  rfb.focus({ preventScroll: true });
}

function sendCtrlAltDel() {
  current?.rfb?.sendCtrlAltDel();
  current?.rfb?.focus({ preventScroll: true });
}

function toggleFullscreen() {
  const request = document.fullscreenElement ? document.exitFullscreen() : document.documentElement.requestFullscreen();
  // Refused when not triggered by the user or blocked by a policy: nothing to undo.
  request.catch(() => {});
}

function onFullscreenChange() {
  ui.fullscreen.setAttribute('aria-pressed', String(document.fullscreenElement !== null));
}

/** @param {HTMLElement} element */
function show(element) {
  element.hidden = false;
}

/** @param {HTMLElement} element */
function hide(element) {
  element.hidden = true;
}

function start() {
  ui.ctrlAltDel.hidden = viewOnly;
  ui.clipboardSend.hidden = viewOnly;
  ui.fullscreen.hidden = !document.fullscreenEnabled;
  ui.reconnect.hidden = ticket !== null;
  ui.overlayReconnect.hidden = ticket !== null;
  ui.ctrlAltDel.addEventListener('click', sendCtrlAltDel);
  ui.clipboardToggle.addEventListener('click', toggleClipboard);
  ui.clipboardPanel.addEventListener('keydown', closeClipboardOnEscape);
  ui.clipboardSend.addEventListener('click', sendClipboard);
  ui.fullscreen.addEventListener('click', toggleFullscreen);
  document.addEventListener('fullscreenchange', onFullscreenChange);
  ui.reconnect.addEventListener('click', connect);
  ui.overlayReconnect.addEventListener('click', connect);
  ui.credentialsForm.addEventListener('submit', sendCredentials);
  ui.requestControl.addEventListener('click', () => sendAction({ type: 'request-control' }));
  ui.takeControl.addEventListener('click', () => sendAction({ type: 'take-control' }));
  ui.releaseControl.addEventListener('click', () => sendAction({ type: 'release-control' }));
  ui.allowControl.addEventListener('click', () => sendAction({ type: 'answer', allow: true }));
  ui.denyControl.addEventListener('click', () => sendAction({ type: 'answer', allow: false }));
  // A debug hook for people and tests; nothing on the page depends on it.
  Object.defineProperty(window, 'deskgateViewer', {
    value: {
      get rfb() {
        return current?.rfb;
      },
    },
  });
  connect();
}

start();
