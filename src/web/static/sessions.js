/**
 * The administrators' page: every live session on every node, from GET api/sessions,
 * refreshed every few seconds, with End and role buttons (DELETE and PATCH
 * api/sessions/ID). The gateway checks every action itself; this page only asks.
 */

/** @param {string} id */
function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`sessions page is missing #${id}`);
  return element;
}

const body = byId('sessions-body');
const status = byId('sessions-status');
const api = new URL('../api/sessions', import.meta.url);
const REFRESH_MS = 3000;

/**
 * @typedef {object} LiveSession
 * @property {string} id
 * @property {string} desktop
 * @property {string} user
 * @property {'control' | 'view'} role
 * @property {boolean} switchable whether its role can change
 * @property {'shared' | 'exclusive' | 'controlled'} sharing
 * @property {string} node
 * @property {string} remoteAddress
 * @property {string} since
 * @property {number} bytesToUpstream
 * @property {number} bytesToBrowser
 */

async function refresh() {
  let response;
  try {
    response = await fetch(api, { cache: 'no-store' });
  } catch {
    status.textContent = 'The gateway cannot be reached.';
    return;
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    status.textContent = answer.message ?? `HTTP ${response.status}`;
    return;
  }
  /** @type {LiveSession[]} */
  const sessions = answer.sessions;
  status.textContent = sessions.length === 0 ? 'No sessions are open.' : `${sessions.length} session${sessions.length === 1 ? '' : 's'}.`;
  body.replaceChildren(...sessions.map(row));
}

/** @param {LiveSession} session */
function row(session) {
  const tr = document.createElement('tr');
  tr.dataset.session = session.id;
  const cells = [
    session.desktop,
    session.user,
    session.role === 'control' ? 'control' : 'view only',
    session.node,
    session.remoteAddress,
    new Date(session.since).toLocaleString(),
    bytes(session.bytesToUpstream),
    bytes(session.bytesToBrowser),
  ];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  const actions = document.createElement('td');
  actions.className = 'session-actions';
  const role = session.role === 'control' ? 'view' : 'control';
  // A session that relays its input unparsed cannot change role: the gateway would refuse (409).
  if (session.switchable) {
    actions.append(button(role === 'view' ? 'Make view-only' : 'Give control', `${role}-${session.id}`, () => void act(session, 'PATCH', { role })));
  }
  actions.append(button('End', `end-${session.id}`, () => void act(session, 'DELETE')));
  tr.append(actions);
  return tr;
}

/**
 * @param {string} label
 * @param {string} name
 * @param {() => void} onClick
 */
function button(label, name, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  element.name = name;
  element.addEventListener('click', onClick);
  return element;
}

/**
 * @param {LiveSession} session
 * @param {'PATCH' | 'DELETE'} method
 * @param {object} [change]
 */
async function act(session, method, change) {
  const response = await fetch(new URL(session.id, `${api.href}/`), {
    method,
    headers: change ? { 'Content-Type': 'application/json' } : {},
    body: change ? JSON.stringify(change) : undefined,
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    status.textContent = answer.message ?? `HTTP ${response.status}`;
    return;
  }
  setTimeout(() => void refresh(), 300);
}

/** @param {number} count */
function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KiB`;
  return `${(count / 1024 / 1024).toFixed(1)} MiB`;
}

void refresh();
setInterval(() => void refresh(), REFRESH_MS);
