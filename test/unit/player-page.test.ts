import { describe, expect, it } from 'vitest';
import { clockTime, renderPlayer, type RecordingSummary } from '../../src/http/player-page.js';

const HOSTILE = `lab"3'<script>alert(1)</script>&x`;
const HOSTILE_ESCAPED = 'lab&quot;3&#39;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x';

const RECORDING: RecordingSummary = {
  id: '0b0c7a52-5f3e-4c1b-9a1e-2d3c4b5a6978',
  desktop: 'lab1',
  user: 'alice',
  start: '2026-11-28T10:02:00.000Z',
  durationMs: 83_400,
  width: 1024,
  height: 768,
  size: 123_456,
  complete: true,
};

function render(recording: Partial<RecordingSummary> = {}, root = '../'): string {
  return renderPlayer({ root, recording: { ...RECORDING, ...recording } });
}

describe('renderPlayer', () => {
  it('escapes hostile desktop and user names wherever they appear', () => {
    const html = render({ desktop: HOSTILE, user: `<img src=x onerror=alert(2)>` });
    expect(html).not.toContain('<script>alert');
    expect(html).not.toContain('<img src=x');
    expect(html).toContain(`<span class="desktop-name">${HOSTILE_ESCAPED}</span>`);
    expect(html).toContain('aria-label="Recorded screen of ' + HOSTILE_ESCAPED + '"');
    expect(html).toContain('&lt;img src=x onerror=alert(2)&gt;');
    expect(html).toContain('<title>Recording of lab&quot;3&#39;&lt;script&gt;alert(1)&lt;/script&gt;&amp;x — deskgate</title>');
  });

  it('links the player script and stylesheet from the root, and nothing inline the CSP would drop', () => {
    const html = render();
    expect(html).toContain('<script type="module" src="../static/player.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="../static/player.css">');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/\sstyle\s*=|<style/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
  });

  it('carries the id, the file and the duration for player.js, and starts in the loading state', () => {
    const html = render();
    expect(html).toContain(`data-recording="${RECORDING.id}"`);
    expect(html).toContain('data-duration-ms="83400"');
    expect(html).toContain('data-state="loading"');
    expect(html).toContain(`<a class="download" id="download" href="../recordings/${RECORDING.id}.dgrec" download>`);
    expect(html).toMatch(/<input type="range" id="seek" [^>]*min="0" max="83400"/);
    expect(html).toContain('<span id="duration">01:23</span>');
  });

  it('encodes an id that is not a plain UUID into the file URL', () => {
    expect(render({ id: 'a/../b"c' })).toContain('href="../recordings/a%2F..%2Fb%22c.dgrec"');
  });

  it('says an incomplete recording is incomplete, and a complete one nothing', () => {
    expect(render({ complete: false })).toContain('incomplete recording (the gateway stopped before the session ended)');
    expect(render({ complete: false })).toContain('data-complete="false"');
    expect(render()).toContain('<section class="notice" id="notice" role="alert" hidden></section>');
  });

  it('labels every control and documents the keyboard shortcuts', () => {
    const html = render();
    expect(html).toContain('<button type="button" id="play" aria-label="Play" disabled>Play</button>');
    expect(html).toContain('<input type="range" id="seek" aria-label="Position in the recording"');
    expect(html).toContain('<p class="connection-state" id="player-state" role="status">');
    for (const speed of ['0.5×', '1×', '2×', '4×', '8×', '16×']) expect(html).toContain(`>${speed}</option>`);
    for (const key of ['Space', '← / →', 'Home / End', '+ / −']) expect(html).toContain(`<kbd>${key}</kbd>`);
  });
});

describe('clockTime', () => {
  it('says minutes and seconds, and hours from an hour on', () => {
    expect(clockTime(0)).toBe('00:00');
    expect(clockTime(5_999)).toBe('00:05');
    expect(clockTime(83_400)).toBe('01:23');
    expect(clockTime(3_600_000 + 62_000)).toBe('1:01:02');
    expect(clockTime(30 * 3_600_000)).toBe('30:00:00');
  });
});
