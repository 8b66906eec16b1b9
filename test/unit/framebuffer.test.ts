import { describe, expect, it } from 'vitest';
import { CELL_WIDTH, GLYPH_HEIGHT, GLYPH_WIDTH, glyph } from '../../src/demo/font.js';
import { createPixelEncoder, Framebuffer, NATIVE_PIXEL_FORMAT } from '../../src/demo/framebuffer.js';
import { RfbProtocolError, type PixelFormat } from '../../src/rfb/protocol.js';
import { NOVNC_PIXEL_FORMAT } from '../helpers/rfb-client.js';

/** A glyph as text, '#' for lit pixels, to compare with a drawing. */
function picture(rows: readonly number[]): string[] {
  return rows.map((bits) => [...Array(GLYPH_WIDTH).keys()].map((column) => (bits & (1 << (GLYPH_WIDTH - 1 - column)) ? '#' : '.')).join(''));
}

/** The framebuffer's pixels in `rect` as text, '#' where `colour` is. */
function snapshot(fb: Framebuffer, x: number, y: number, width: number, height: number, colour: number): string[] {
  return Array.from({ length: height }, (_, row) =>
    Array.from({ length: width }, (_, column) => (fb.pixel(x + column, y + row) === colour ? '#' : '.')).join(''),
  );
}

describe('font', () => {
  it('has a distinct glyph for every printable ASCII character but space', () => {
    const seen = new Set<string>();
    for (let code = 33; code <= 126; code++) {
      const rows = glyph(code);
      expect(rows).toHaveLength(GLYPH_HEIGHT);
      expect(rows.every((bits) => bits >= 0 && bits < 1 << GLYPH_WIDTH)).toBe(true);
      expect(
        rows.some((bits) => bits !== 0),
        String.fromCharCode(code),
      ).toBe(true);
      seen.add(rows.join(','));
    }
    expect(seen.size).toBe(94);
    expect(glyph(32).every((bits) => bits === 0)).toBe(true);
  });

  it('draws A and the descender of g as designed', () => {
    expect(picture(glyph('A'.charCodeAt(0)))).toEqual(['.###.', '#...#', '#...#', '#####', '#...#', '#...#', '#...#', '.....', '.....']);
    expect(picture(glyph('g'.charCodeAt(0))).slice(6)).toEqual(['.####', '....#', '.###.']);
  });

  it('draws a box for characters it has no glyph for', () => {
    const box = ['#####', '#...#', '#...#', '#...#', '#...#', '#...#', '#####', '.....', '.....'];
    expect(picture(glyph(0x2014))).toEqual(box);
    expect(picture(glyph(9))).toEqual(box);
  });
});

describe('framebuffer drawing', () => {
  it('fills rectangles clipped to the screen', () => {
    const fb = new Framebuffer(8, 4);
    fb.fillRect({ x: 6, y: -2, width: 10, height: 4 }, 0xff0000);
    expect(snapshot(fb, 0, 0, 8, 4, 0xff0000)).toEqual(['......##', '......##', '........', '........']);
  });

  it('draws text glyph by glyph, scaled, one blank column between characters', () => {
    const fb = new Framebuffer(40, 20);
    fb.drawText(1, 1, 'AA', 0xffffff, 2);
    const scaledA = picture(glyph(65)).flatMap((row) => {
      const wide = [...row].map((pixel) => pixel + pixel).join('');
      return [wide, wide];
    });
    expect(snapshot(fb, 1, 1, GLYPH_WIDTH * 2, GLYPH_HEIGHT * 2, 0xffffff)).toEqual(scaledA);
    expect(snapshot(fb, 1 + CELL_WIDTH * 2, 1, GLYPH_WIDTH * 2, GLYPH_HEIGHT * 2, 0xffffff)).toEqual(scaledA);
    expect(fb.pixel(0, 1 + 6)).toBe(0);
  });

  it('draws a line between two points inclusive, only inside its clip rectangle', () => {
    const fb = new Framebuffer(10, 6);
    fb.drawLine({ x: 0, y: 0 }, { x: 9, y: 5 }, 0x00ff00, 1, { x: 0, y: 0, width: 8, height: 6 });
    expect(snapshot(fb, 0, 0, 10, 6, 0x00ff00)).toEqual(['#.........', '.##.......', '...##.....', '.....##...', '.......#..', '..........']);
  });

  it('copies overlapping areas up and down without smearing', () => {
    const fb = new Framebuffer(4, 4);
    fb.pixels.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    fb.copyRect({ x: 0, y: 1, width: 4, height: 3 }, 0, 0);
    expect([...fb.pixels]).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 13, 14, 15, 16]);
    fb.copyRect({ x: 1, y: 0, width: 2, height: 2 }, 2, 1);
    expect([...fb.pixels]).toEqual([5, 6, 7, 8, 9, 10, 6, 7, 13, 14, 10, 11, 13, 14, 15, 16]);
    expect(() => fb.copyRect({ x: 3, y: 0, width: 2, height: 1 }, 0, 0)).toThrow(RangeError);
  });
});

describe('damage tracking', () => {
  it('starts with the whole screen dirty, then reports nothing until something changes', () => {
    const fb = new Framebuffer(100, 50);
    const tracker = fb.track();
    expect(tracker.take(fb.bounds, true)).toEqual({ raw: fb.bounds });
    expect(tracker.take(fb.bounds, true)).toBeUndefined();
    fb.fillRect({ x: 10, y: 10, width: 5, height: 5 }, 1);
    fb.drawText(50, 20, 'x', 1);
    expect(tracker.take(fb.bounds, true)).toEqual({ raw: { x: 10, y: 10, width: 46, height: 19 } });
  });

  it('answers a partial request with the overlap and keeps the rest for later', () => {
    const fb = new Framebuffer(100, 50);
    const tracker = fb.track();
    tracker.take(fb.bounds, false);
    fb.fillRect({ x: 0, y: 0, width: 100, height: 10 }, 1);
    expect(tracker.take({ x: 0, y: 0, width: 50, height: 50 }, true)).toEqual({ raw: { x: 0, y: 0, width: 50, height: 10 } });
    expect(tracker.take(fb.bounds, true)).toEqual({ raw: { x: 0, y: 0, width: 100, height: 10 } });
  });

  it('keeps each viewer apart, and forgets a viewer that stopped tracking', () => {
    const fb = new Framebuffer(10, 10);
    const [a, b] = [fb.track(), fb.track()];
    a.take(fb.bounds, true);
    b.take(fb.bounds, true);
    fb.untrack(b);
    fb.fillRect({ x: 1, y: 1, width: 1, height: 1 }, 1);
    expect(a.take(fb.bounds, true)).toEqual({ raw: { x: 1, y: 1, width: 1, height: 1 } });
    expect(b.take(fb.bounds, true)).toBeUndefined();
  });

  it('passes a copy on to a viewer that accepts CopyRect and whose source pixels are current', () => {
    const fb = new Framebuffer(10, 10);
    const [copier, other] = [fb.track(), fb.track()];
    copier.acceptsCopyRect = true;
    copier.take(fb.bounds, true);
    other.take(fb.bounds, true);
    fb.copyRect({ x: 0, y: 2, width: 10, height: 8 }, 0, 0);
    fb.fillRect({ x: 0, y: 8, width: 10, height: 2 }, 1);
    expect(copier.take(fb.bounds, true)).toEqual({
      copy: { rect: { x: 0, y: 0, width: 10, height: 8 }, srcX: 0, srcY: 2 },
      raw: { x: 0, y: 8, width: 10, height: 2 },
    });
    expect(other.take(fb.bounds, true)).toEqual({ raw: { x: 0, y: 0, width: 10, height: 10 } });
  });

  it('turns a copy into raw pixels when the viewer has not seen its source yet, or asks for everything', () => {
    const fb = new Framebuffer(10, 10);
    const tracker = fb.track();
    tracker.acceptsCopyRect = true;
    tracker.take(fb.bounds, true);
    fb.fillRect({ x: 0, y: 5, width: 1, height: 1 }, 1);
    fb.copyRect({ x: 0, y: 2, width: 10, height: 8 }, 0, 0);
    expect(tracker.take(fb.bounds, true)).toEqual({ raw: { x: 0, y: 0, width: 10, height: 8 } });
    fb.copyRect({ x: 0, y: 2, width: 10, height: 8 }, 0, 0);
    expect(tracker.take(fb.bounds, false)).toEqual({ raw: fb.bounds });
  });
});

describe('pixel encoding', () => {
  const fb = new Framebuffer(2, 1);
  fb.pixels.set([0x123456, 0xff8000]);
  const rect = { x: 0, y: 0, width: 2, height: 1 };
  const encode = (format: Partial<PixelFormat>): Buffer => createPixelEncoder({ ...NATIVE_PIXEL_FORMAT, ...format })(fb, rect);

  it('writes the native format as little-endian 0x00RRGGBB words', () => {
    expect([...encode({})]).toEqual([0x56, 0x34, 0x12, 0, 0x00, 0x80, 0xff, 0]);
  });

  it("writes noVNC's format, red in the lowest byte", () => {
    expect([...createPixelEncoder(NOVNC_PIXEL_FORMAT)(fb, rect)]).toEqual([0x12, 0x34, 0x56, 0, 0xff, 0x80, 0x00, 0]);
  });

  it('writes 32-bit big-endian', () => {
    expect([...encode({ bigEndian: true })]).toEqual([0, 0x12, 0x34, 0x56, 0, 0xff, 0x80, 0x00]);
  });

  it('scales channels to 16-bit RGB565 in either byte order', () => {
    // 0x123456 -> r 2, g 13, b 10 -> 0x11aa; 0xff8000 -> r 31, g 32, b 0 -> 0xfc00
    const rgb565 = { bitsPerPixel: 16, depth: 16, redMax: 31, greenMax: 63, blueMax: 31, redShift: 11, greenShift: 5, blueShift: 0 };
    expect([...encode(rgb565)]).toEqual([0xaa, 0x11, 0x00, 0xfc]);
    expect([...encode({ ...rgb565, bigEndian: true })]).toEqual([0x11, 0xaa, 0xfc, 0x00]);
  });

  it('scales channels to 8-bit BGR233', () => {
    const bgr233 = { bitsPerPixel: 8, depth: 8, redMax: 7, greenMax: 7, blueMax: 3, redShift: 0, greenShift: 3, blueShift: 6 };
    // 0x123456 -> r 0, g 1, b 1 -> 0x48; 0xff8000 -> r 7, g 4, b 0 -> 0x27
    expect([...encode(bgr233)]).toEqual([0x48, 0x27]);
  });

  it('refuses colour maps, odd pixel sizes and shifts past the pixel', () => {
    for (const format of [{ trueColour: false }, { bitsPerPixel: 24 }, { bitsPerPixel: 16, redShift: 16 }]) {
      expect(() => encode(format)).toThrow(RfbProtocolError);
    }
    expect(() => encode({ trueColour: false })).toThrow(/colour-map/);
  });
});
