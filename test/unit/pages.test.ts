import { describe, expect, it } from 'vitest';
import { escapeHtml, renderDashboard, renderViewer, type DesktopCard } from '../../src/http/pages.js';

const HOSTILE = `lab"3'<script>alert(1)</script>&x`;
const HOSTILE_ESCAPED = 'lab&quot;3&#39;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x';

/** The CSP the pages must live under forbids these; any of them would be silently dropped. */
function expectCspFriendly(html: string): void {
  expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
  expect(html).not.toMatch(/\sstyle\s*=/i);
  expect(html).not.toMatch(/<style/i);
  expect(html).not.toMatch(/\son[a-z]+\s*=/i);
}

describe('escapeHtml', () => {
  it('escapes the five characters that can break out of text or a quoted attribute', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('leaves other text, including non-ASCII, as it is', () => {
    expect(escapeHtml('lab-3 — Ünïcode ✓')).toBe('lab-3 — Ünïcode ✓');
  });
});

describe('renderDashboard', () => {
  const desktops: DesktopCard[] = [
    { name: 'lab1', description: 'Build box', status: 'up' },
    { name: 'lab2', status: 'down', detail: 'connection refused' },
    { name: 'lab3', status: 'unknown' },
  ];

  it('is a complete English page titled deskgate with its stylesheet', () => {
    const html = renderDashboard(desktops, { root: './', version: '1.2.3' });
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<html lang="en">');
    expect(html).toContain('<title>deskgate</title>');
    expect(html).toContain('<link rel="stylesheet" href="./static/dashboard.css">');
    expect(html).toMatch(/<main[\s>]/);
    expectCspFriendly(html);
  });

  it('links each desktop to its viewer', () => {
    const html = renderDashboard(desktops, { root: './', version: '1.2.3' });
    expect(html).toContain('<a href="view/lab1">lab1</a>');
    expect(html).toContain('<p class="description">Build box</p>');
  });

  it('encodes the name in the link and escapes it in the text', () => {
    const html = renderDashboard([{ name: HOSTILE, status: 'up' }], { root: './', version: '1' });
    expect(html).not.toContain('<script>');
    expect(html).toContain(`href="view/${escapeHtml(encodeURIComponent(HOSTILE))}"`);
    expect(html).toContain(`>${HOSTILE_ESCAPED}</a>`);
    expect(html).toContain(`data-desktop="${HOSTILE_ESCAPED}"`);
  });

  it('escapes descriptions and failure details', () => {
    const html = renderDashboard([{ name: 'x', description: '<img src=x onerror=alert(1)>', status: 'down', detail: '"><script>' }], {
      root: './',
      version: '1',
    });
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('title="&quot;&gt;&lt;script&gt;"');
  });

  it('shows each status as a worded badge, with the reason an offline desktop is down', () => {
    const html = renderDashboard(desktops, { root: './', version: '1' });
    expect(html).toContain('data-status="up"');
    expect(html).toContain('<span class="badge badge-up">online</span>');
    expect(html).toContain('<span class="badge badge-down" title="connection refused">offline</span>');
    expect(html).toContain('<small class="status-detail">connection refused</small>');
    expect(html).toContain('<span class="badge badge-unknown">unknown</span>');
  });

  it('does not show a detail for a desktop that is up', () => {
    const html = renderDashboard([{ name: 'a', status: 'up', detail: 'RFB 003.008' }], { root: './', version: '1' });
    expect(html).not.toContain('RFB 003.008');
  });

  it('says so when there are no desktops, instead of an empty list', () => {
    const html = renderDashboard([], { root: './', version: '1' });
    expect(html).toContain('id="empty-state"');
    expect(html).toContain('There are no desktops you can open.');
    expect(html).not.toContain('<ul');
  });

  it('puts the version in the footer, escaped', () => {
    const html = renderDashboard([], { root: './', version: '1.0.0-<beta>' });
    expect(html).toMatch(/<footer[^>]*>[\s\S]*1\.0\.0-&lt;beta&gt;[\s\S]*<\/footer>/);
  });
});

describe('renderViewer', () => {
  it('carries the desktop and view-only flag on <body> for viewer.js', () => {
    expect(renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' })).toContain(
      '<body data-desktop="lab1" data-view-only="false" data-websocket-path="websockify">',
    );
    expect(renderViewer({ name: 'lab1' }, { root: '../', viewOnly: true, websocketPath: '/websockify' })).toContain(
      '<body data-desktop="lab1" data-view-only="true" data-websocket-path="websockify">',
    );
  });

  it('loads its stylesheet and module script from static/, relative to the page, and nothing inline', () => {
    const html = renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' });
    expect(html).toContain('<link rel="stylesheet" href="../static/viewer.css">');
    expect(html).toContain('<script type="module" src="../static/viewer.js"></script>');
    expectCspFriendly(html);
  });

  it('is titled after the desktop', () => {
    expect(renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' })).toContain('<title>lab1 — deskgate</title>');
  });

  it('escapes a hostile name everywhere it appears', () => {
    const html = renderViewer({ name: HOSTILE, description: '<b>bold</b>' }, { root: '../', viewOnly: false, websocketPath: '/websockify' });
    expect(html).not.toContain('<script>');
    expect(html).not.toContain('<b>');
    expect(html).toContain(`data-desktop="${HOSTILE_ESCAPED}"`);
    expect(html).toContain(`<title>${HOSTILE_ESCAPED} — deskgate</title>`);
    expect(html).toContain('&lt;b&gt;bold&lt;/b&gt;');
  });

  it('has the elements viewer.js and the browser tests rely on', () => {
    const html = renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' });
    for (const id of [
      'screen',
      'connection-state',
      'status-message',
      'overlay',
      'overlay-reconnect',
      'reconnect',
      'ctrl-alt-del',
      'fullscreen',
      'clipboard-toggle',
      'clipboard-panel',
      'clipboard-text',
      'clipboard-send',
    ]) {
      expect(html).toContain(`id="${id}"`);
    }
    expect(html).toContain('<a class="back" href="../"');
  });

  it('labels every button for assistive technology or by its text', () => {
    const html = renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' });
    const buttons = html.match(/<button[^>]*>[^<]*<\/button>/g) ?? [];
    expect(buttons.length).toBeGreaterThan(4);
    for (const button of buttons) expect(button).toMatch(/aria-label="[^"]+"|>[^<\s][^<]*</);
  });

  it('marks a view-only session visibly', () => {
    expect(renderViewer({ name: 'lab1' }, { root: '../', viewOnly: true, websocketPath: '/websockify' })).toContain('View only');
    expect(renderViewer({ name: 'lab1' }, { root: '../', viewOnly: false, websocketPath: '/websockify' })).not.toContain('View only');
  });
});
