/**
 * The HTML pages the gateway serves: the dashboard (`GET /`), the viewer
 * (`GET /view/:desktop`), the login form and notices. Pure functions from data to markup, no I/O.
 *
 * Every URL in them is relative, written from `root`: the way from the page back to the
 * gateway's root ("./" or "../"). So the pages work wherever the gateway is reached, at the
 * root of its own origin, under a `basePath`, or behind a proxy that strips a prefix.
 *
 * The pages must work under `script-src 'self'; style-src 'self'`, so they carry no
 * inline script, no style attribute and no inline event handler: behaviour lives in
 * /static/viewer.js and looks in /static/*.css. Every value that reaches the markup
 * goes through escapeHtml, because desktop names and descriptions come from operators'
 * config and must never become markup.
 */
import type { RecordingInfo } from '../recording/library.js';
import { clockTime } from './player-page.js';

export interface DesktopCard {
  name: string;
  description?: string;
  status: 'up' | 'down' | 'unknown';
  /** Why the desktop is down (e.g. "connection refused"); shown as text and tooltip. */
  detail?: string;
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Safe in element content and in quoted attribute values alike. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/** The viewer URL of a desktop, relative to the gateway's root: names may hold any character, so the path segment is encoded. */
export function viewerHref(name: string): string {
  return `view/${encodeURIComponent(name)}`;
}

const STATUS_LABELS: Record<DesktopCard['status'], string> = {
  up: 'online',
  down: 'offline',
  unknown: 'unknown',
};

export interface PageInfo {
  /** From the page to the gateway's root: "./" or "../". */
  root: string;
  version: string;
  /** The logged-in user, when there is a login to end (password mode). */
  user?: string | undefined;
  /** Whether the user is an administrator: the dashboard links the sessions page. */
  admin?: boolean | undefined;
  /** Whether the user may list recordings (recording is configured): the dashboard links the recordings page. */
  recordings?: boolean | undefined;
}

export function renderDashboard(desktops: readonly DesktopCard[], info: PageInfo): string {
  const links = [
    info.admin && `<a class="nav" href="${info.root}sessions">Live sessions</a>`,
    info.recordings && `<a class="nav" href="${info.root}recordings">Recordings</a>`,
  ];
  const nav = links.some(Boolean) ? `\n  <nav class="nav" aria-label="Pages">${links.filter(Boolean).join(' ')}</nav>` : '';
  const body = `<header class="site-header">
  <h1>deskgate</h1>${nav}${info.user ? renderLogout(info.root, info.user) : ''}
</header>
<main id="main">
  <h2 id="desktops-heading">Desktops</h2>
  ${desktops.length === 0 ? renderEmptyState() : renderDesktopList(desktops)}
</main>
<footer class="site-footer">
  <p>deskgate <span class="version">${escapeHtml(info.version)}</span></p>
</footer>`;
  return renderDocument({ title: 'deskgate', stylesheet: `${info.root}static/dashboard.css`, body });
}

/** The administrators' page of every live session; /static/sessions.js fills it from /api/sessions. */
export function renderSessions(info: PageInfo): string {
  const body = `<header class="site-header">
  <h1>deskgate</h1>
  <a class="nav" href="${info.root}">Desktops</a>${info.user ? renderLogout(info.root, info.user) : ''}
</header>
<main id="main" class="wide">
  <h2 id="sessions-heading">Live sessions</h2>
  <p class="sessions-status" id="sessions-status" role="status">Loading…</p>
  <table class="sessions" aria-labelledby="sessions-heading">
    <thead><tr><th scope="col">Desktop</th><th scope="col">User</th><th scope="col">Role</th><th scope="col">Node</th><th scope="col">Client</th><th scope="col">Since</th><th scope="col">To desktop</th><th scope="col">To browser</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody id="sessions-body"></tbody>
  </table>
</main>
<footer class="site-footer">
  <p>deskgate <span class="version">${escapeHtml(info.version)}</span></p>
</footer>`;
  return renderDocument({ title: 'Live sessions — deskgate', stylesheet: `${info.root}static/dashboard.css`, script: `${info.root}static/sessions.js`, body });
}

/** The recordings this user may play, newest first: each links its player and its file. */
export function renderRecordings(recordings: readonly RecordingInfo[], info: PageInfo): string {
  const list =
    recordings.length === 0
      ? '<p class="empty" id="empty-state">There are no recordings you can play.</p>'
      : `<table class="sessions recordings" aria-labelledby="recordings-heading">
    <thead><tr><th scope="col">Desktop</th><th scope="col">User</th><th scope="col">Start</th><th scope="col">Duration</th><th scope="col">Size</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>
${recordings.map((r) => renderRecordingRow(r, info.root)).join('\n')}
    </tbody>
  </table>`;
  const body = `<header class="site-header">
  <h1>deskgate</h1>
  <a class="nav" href="${info.root}">Desktops</a>${info.user ? renderLogout(info.root, info.user) : ''}
</header>
<main id="main" class="wide">
  <h2 id="recordings-heading">Recordings</h2>
  ${list}
</main>
<footer class="site-footer"><p>deskgate <span class="version">${escapeHtml(info.version)}</span></p></footer>`;
  return renderDocument({ title: 'Recordings — deskgate', stylesheet: `${info.root}static/dashboard.css`, body });
}

function renderRecordingRow(recording: RecordingInfo, root: string): string {
  const id = encodeURIComponent(recording.id);
  // An incomplete recording says so; one that stopped early says why, as a tooltip.
  const why = recording.stopped ? ` title="${escapeHtml(`Stopped: ${recording.stopped}`)}"` : '';
  const incomplete = recording.complete ? '' : ` <span class="tag"${why}>incomplete</span>`;
  const start = escapeHtml(recording.start);
  return `      <tr data-recording="${escapeHtml(recording.id)}">
        <td>${escapeHtml(recording.desktop)}</td><td>${escapeHtml(recording.user)}</td>
        <td><time datetime="${start}">${escapeHtml(recording.start.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC'))}</time></td>
        <td>${clockTime(recording.durationMs)}${incomplete}</td><td>${formatSize(recording.size)}</td>
        <td class="session-actions"><a href="${root}play/${id}">Play</a> <a href="${root}recordings/${id}.dgrec?download=1">Download</a></td>
      </tr>`;
}

/** 512 B, 3.4 KiB, 12.0 MiB, 1.5 GiB. */
function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const power = Math.min(units.length - 1, Math.floor(Math.log2(Math.max(1, bytes)) / 10));
  return power === 0 ? `${bytes} B` : `${(bytes / 1024 ** power).toFixed(1)} ${units[power]}`;
}

function renderEmptyState(): string {
  // The list holds what this user may open, so "none" may mean "none for you": say both.
  return `<p class="empty" id="empty-state">There are no desktops you can open. An operator adds them with <code>--desktop NAME=HOST:PORT</code> or in the config file.</p>`;
}

function renderDesktopList(desktops: readonly DesktopCard[]): string {
  const items = desktops.map(renderDesktopCard).join('\n');
  return `<ul class="desktops" aria-labelledby="desktops-heading">
${items}
  </ul>`;
}

function renderDesktopCard(desktop: DesktopCard): string {
  const name = escapeHtml(desktop.name);
  const description = desktop.description ? `\n      <p class="description">${escapeHtml(desktop.description)}</p>` : '';
  return `    <li class="desktop" data-desktop="${name}" data-status="${desktop.status}">
      <h3 class="desktop-name"><a href="${escapeHtml(viewerHref(desktop.name))}">${name}</a></h3>${description}
      ${renderStatus(desktop)}
    </li>`;
}

function renderStatus(desktop: DesktopCard): string {
  const label = STATUS_LABELS[desktop.status];
  // The detail only explains a failure; for a desktop that is up it would be noise.
  const detail = desktop.status === 'down' && desktop.detail ? escapeHtml(desktop.detail) : '';
  const title = detail ? ` title="${detail}"` : '';
  const small = detail ? ` <small class="status-detail">${detail}</small>` : '';
  // "Status:" is for screen readers; sighted users read the badge's colour and word.
  return `<p class="status"><span class="visually-hidden">Status: </span><span class="badge badge-${desktop.status}"${title}>${label}</span>${small}</p>`;
}

export function renderViewer(
  desktop: { name: string; description?: string },
  options: {
    root: string;
    viewOnly: boolean;
    /** The gateway's own origin as this request showed it, for viewer.js to compare. */ gatewayOrigin?: string | undefined;
    /** Where sessions' WebSockets open, below the gateway's root (config websocketPath). */
    websocketPath: string;
  },
): string {
  const { root } = options;
  const name = escapeHtml(desktop.name);
  const description = desktop.description ? `<span class="desktop-description">${escapeHtml(desktop.description)}</span>` : '';
  const viewOnlyTag = options.viewOnly ? '<span class="tag" id="view-only-tag">View only</span>' : '';
  const body = `<header class="toolbar">
  <a class="back" href="${root}" aria-label="Back to all desktops"><span aria-hidden="true">←</span> Desktops</a>
  <h1 class="desktop-title"><span class="desktop-name">${name}</span>${description}</h1>
  ${viewOnlyTag}
  <p class="connection-state" id="connection-state" role="status">Connecting…</p>
  <div class="actions">
    <button type="button" id="ctrl-alt-del" aria-label="Send Ctrl+Alt+Del to the desktop" disabled>Ctrl+Alt+Del</button>
    <button type="button" id="clipboard-toggle" aria-label="Clipboard" aria-expanded="false" aria-controls="clipboard-panel">Clipboard</button>
    <button type="button" id="fullscreen" aria-label="Full screen" aria-pressed="false">Full screen</button>
    <button type="button" id="reconnect" aria-label="Reconnect to the desktop">Reconnect</button>
  </div>
  <section class="clipboard-panel" id="clipboard-panel" aria-label="Clipboard" hidden>
    <label for="clipboard-text">Clipboard text (the desktop's clipboard appears here)</label>
    <textarea id="clipboard-text" rows="4" spellcheck="false"></textarea>
    <button type="button" id="clipboard-send" disabled>Send to desktop</button>
  </section>
</header>
<main class="screen" id="screen" aria-label="Remote screen of ${name}"></main>
${renderPresence()}
${renderCredentialsForm()}
<section class="overlay" id="overlay" aria-labelledby="status-message" hidden>
  <div class="overlay-box">
    <p class="status-message" id="status-message" role="alert"></p>
    <p class="status-detail" id="status-detail"></p>
    <div class="overlay-actions">
      <button type="button" id="overlay-reconnect">Reconnect</button>
      <a href="${root}">Back to all desktops</a>
    </div>
  </div>
</section>
<noscript><p class="noscript">The viewer needs JavaScript to show the remote desktop.</p></noscript>`;
  return renderDocument({
    title: `${desktop.name} — deskgate`,
    stylesheet: `${root}static/viewer.css`,
    script: `${root}static/viewer.js`,
    bodyAttributes:
      ` data-desktop="${name}" data-view-only="${options.viewOnly ? 'true' : 'false'}"` +
      ` data-websocket-path="${escapeHtml(options.websocketPath === '*' ? 'websockify' : options.websocketPath.slice(1))}"` +
      (options.gatewayOrigin ? ` data-gateway-origin="${escapeHtml(options.gatewayOrigin)}"` : ''),
    body,
  });
}

function renderLogout(root: string, user: string): string {
  return `
  <form class="logout" method="post" action="${root}logout">
    <span class="user">${escapeHtml(user)}</span> <button type="submit">Log out</button>
  </form>`;
}

/**
 * Where to go after logging in, relative to the gateway's root (`view/lab1`, or "" for the
 * dashboard): a page of this gateway only, never another site. So no scheme, no leading
 * slash or backslash, no dot segments, and no control characters: browsers drop tabs and line
 * breaks from a Location, so `\t//evil` would become `//evil`, another site.
 */
export function safeNext(next: string | null | undefined): string {
  if (!next || /[\p{Cc}\\]/u.test(next) || /^[^/?#]*:/.test(next)) return '';
  const dots = next.replace(/%2e/gi, '.'); // browsers read %2e as a dot in a dot segment
  if (/^[/.]/.test(dots) || /(^|\/)\.\.?([/?#]|$)/.test(dots)) return '';
  return next;
}

export function renderLogin(options: { root: string; next: string; error?: string | undefined; user?: string | undefined }): string {
  const error = options.error ? `\n    <p class="form-error" id="login-error" role="alert">${escapeHtml(options.error)}</p>` : '';
  const body = `<header class="site-header">
  <h1>deskgate</h1>
</header>
<main id="main" class="narrow">
  <form class="card login" method="post" action="${options.root}login">
    <h2>Log in</h2>${error}
    <input type="hidden" name="next" value="${escapeHtml(safeNext(options.next))}">
    <p class="field"><label for="login-user">User name</label>
      <input id="login-user" name="user" autocomplete="username" required value="${escapeHtml(options.user ?? '')}"></p>
    <p class="field"><label for="login-password">Password</label>
      <input id="login-password" name="password" type="password" autocomplete="current-password" required></p>
    <p><button type="submit">Log in</button></p>
  </form>
</main>`;
  return renderDocument({ title: 'Log in — deskgate', stylesheet: `${options.root}static/dashboard.css`, body });
}

/** A page that says why something cannot be done, and where to go instead. */
export function renderNotice(root: string, title: string, message: string): string {
  const body = `<header class="site-header">
  <h1>deskgate</h1>
</header>
<main id="main" class="narrow">
  <section class="card notice">
    <h2>${escapeHtml(title)}</h2>
    <p id="notice-message">${escapeHtml(message)}</p>
    <p><a href="${root}">All desktops</a></p>
  </section>
</main>`;
  return renderDocument({ title: `${title} — deskgate`, stylesheet: `${root}static/dashboard.css`, body });
}

/** Who is on the desktop and who controls it; filled and shown by viewer.js once the presence channel is open. */
function renderPresence(): string {
  return `<aside class="presence" id="presence" aria-labelledby="presence-heading" hidden>
  <h2 id="presence-heading">On this desktop</h2>
  <p class="presence-summary" id="presence-summary" role="status"></p>
  <ul class="presence-people" id="presence-people"></ul>
  <div class="presence-actions">
    <button type="button" id="request-control" hidden>Request control</button>
    <button type="button" id="take-control" hidden>Take control</button>
    <button type="button" id="release-control" hidden>Give up control</button>
  </div>
  <div class="control-prompt" id="control-prompt" role="alertdialog" aria-labelledby="control-prompt-text" hidden>
    <p id="control-prompt-text"></p>
    <button type="button" id="allow-control">Allow</button>
    <button type="button" id="deny-control">Deny</button>
  </div>
  <p class="presence-notice" id="presence-notice" role="alert"></p>
</aside>`;
}

/** Shown only when the VNC server itself asks for a password (the gateway may supply it instead). */
function renderCredentialsForm(): string {
  return `<section class="overlay" id="credentials" aria-labelledby="credentials-heading" hidden>
  <form class="overlay-box" id="credentials-form">
    <h2 id="credentials-heading">The desktop asks for credentials</h2>
    <p class="field" id="username-field" hidden><label for="credentials-username">Username</label>
      <input id="credentials-username" name="username" autocomplete="username"></p>
    <p class="field"><label for="credentials-password">Password</label>
      <input id="credentials-password" name="password" type="password" autocomplete="current-password"></p>
    <div class="overlay-actions"><button type="submit">Log in</button></div>
  </form>
</section>`;
}

interface DocumentParts {
  /** Plain text; escaped here. */
  title: string;
  stylesheet: string;
  script?: string;
  /** Already-escaped attributes for <body>, each with a leading space. */
  bodyAttributes?: string;
  body: string;
}

/** Every page names its icon (beside its stylesheet, in static/): browsers then never ask for /favicon.ico. */
export function renderDocument(parts: DocumentParts): string {
  // A module script is deferred by nature, so loading it in <head> does not block parsing.
  const script = parts.script ? `\n<script type="module" src="${parts.script}"></script>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(parts.title)}</title>
<link rel="stylesheet" href="${parts.stylesheet}">
<link rel="icon" href="${parts.stylesheet.replace(/[^/]*$/, 'favicon.svg')}" type="image/svg+xml">${script}
</head>
<body${parts.bodyAttributes ?? ''}>
${parts.body}
</body>
</html>
`;
}
