/**
 * The recording player's page (`GET /play/:id`): a toolbar saying whose session it was, the
 * screen, and the playback controls. /static/player.js fetches the file, feeds it to noVNC
 * and drives the controls; this module only renders markup, like pages.ts, and under the
 * same CSP (no inline script or style).
 */
import { escapeHtml, renderDocument } from './pages.js';

export interface RecordingSummary {
  id: string;
  desktop: string;
  user: string;
  /** ISO 8601, UTC. */
  start: string;
  durationMs: number;
  width: number;
  height: number;
  /** The file's size in bytes. */
  size: number;
  /** Whether the file has its End record: the gateway saw the session end. */
  complete: boolean;
}

/** The speeds the player offers, 1× selected. */
const SPEEDS = [0.5, 1, 2, 4, 8, 16];

/** What the keys do; player.js implements the same list. */
const SHORTCUTS: [keys: string, action: string][] = [
  ['Space', 'play or pause'],
  ['← / →', 'back or forward 10 seconds'],
  ['Home / End', 'the start or the end'],
  ['+ / −', 'faster or slower'],
];

/** A duration as a player shows it: 02:05, or 1:02:05 from an hour on (player.js says it the same way). */
export function clockTime(ms: number): string {
  const hours = Math.floor(ms / 3_600_000);
  const mmss = new Date(Math.max(0, ms)).toISOString().slice(14, 19);
  return hours > 0 ? `${hours}:${mmss}` : mmss;
}

export function renderPlayer(options: { root: string; recording: RecordingSummary }): string {
  const { root, recording } = options;
  const desktop = escapeHtml(recording.desktop);
  const file = escapeHtml(`${root}recordings/${encodeURIComponent(recording.id)}.dgrec`);
  const duration = clockTime(recording.durationMs);
  const body = `<header class="toolbar">
  <a class="back" href="${root}recordings" aria-label="Back to all recordings"><span aria-hidden="true">←</span> Recordings</a>
  <h1 class="desktop-title"><span class="desktop-name">${desktop}</span><span class="desktop-description">recording</span></h1>
  <p class="recording-facts">
    <span class="recording-user">${escapeHtml(recording.user)}</span>
    <time class="recording-start" id="recording-start" datetime="${escapeHtml(recording.start)}">${escapeHtml(recording.start)}</time>
    <span class="recording-duration">${duration}</span>
  </p>
  <p class="connection-state" id="player-state" role="status">Loading the recording…</p>
  <div class="actions">
    <a class="download" id="download" href="${file}" download>Download</a>
  </div>
</header>
<main class="screen" id="screen" aria-label="Recorded screen of ${desktop}"></main>
<section class="notice" id="notice" role="alert"${recording.complete ? ' hidden' : ''}>${recording.complete ? '' : 'This is an incomplete recording (the gateway stopped before the session ended).'}</section>
${renderControls(duration, recording.durationMs)}
<section class="overlay" id="overlay" aria-labelledby="error-message" hidden>
  <div class="overlay-box">
    <p class="status-message" id="error-message" role="alert"></p>
    <p class="status-detail" id="error-detail"></p>
    <div class="overlay-actions"><a href="${root}recordings">Back to all recordings</a></div>
  </div>
</section>
<noscript><p class="noscript">The player needs JavaScript to show the recording.</p></noscript>`;
  return renderDocument({
    title: `Recording of ${recording.desktop} — deskgate`,
    stylesheet: `${root}static/player.css`,
    script: `${root}static/player.js`,
    bodyAttributes:
      ` data-state="loading" data-position="0" data-recording="${escapeHtml(recording.id)}"` +
      ` data-duration-ms="${recording.durationMs}" data-complete="${String(recording.complete)}"`,
    body,
  });
}

function renderControls(duration: string, durationMs: number): string {
  const speeds = SPEEDS.map((speed) => `<option value="${speed}"${speed === 1 ? ' selected' : ''}>${speed}×</option>`).join('');
  const shortcuts = SHORTCUTS.map(([keys, action]) => `<dt><kbd>${keys}</kbd></dt><dd>${action}</dd>`).join('');
  return `<section class="toolbar controls" aria-label="Playback">
  <button type="button" id="play" aria-label="Play" disabled>Play</button>
  <input type="range" id="seek" aria-label="Position in the recording" min="0" max="${durationMs}" step="1" value="0" aria-valuetext="00:00 of ${duration}" disabled>
  <p class="time"><span id="current-time">00:00</span> / <span id="duration">${duration}</span></p>
  <label class="speed">Speed <select id="speed" disabled>${speeds}</select></label>
  <progress id="seek-progress" max="1" value="0" aria-label="Seeking" hidden></progress>
  <details class="shortcuts">
    <summary>Keyboard shortcuts</summary>
    <dl>${shortcuts}</dl>
  </details>
</section>`;
}
