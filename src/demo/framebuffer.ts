/**
 * A 24-bit RGB framebuffer with the drawing the demo desktop needs (rectangles, text,
 * lines, copies), per-viewer damage tracking, and encoding of rectangles into whatever
 * true-colour pixel format a viewer asked for.
 */
import { endianness } from 'node:os';
import { CELL_WIDTH, GLYPH_HEIGHT, GLYPH_WIDTH, glyph } from './font.js';
import { RfbProtocolError, type PixelFormat, type Rect } from '../rfb/protocol.js';

export interface Point {
  x: number;
  y: number;
}

/** What a tracker reports for an update: an optional CopyRect, then Raw pixels. */
export interface Damage {
  copy?: { rect: Rect; srcX: number; srcY: number };
  raw?: Rect;
}

/** Colours are 0xRRGGBB numbers; every drawing call clips to the framebuffer. */
export class Framebuffer {
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint32Array;
  readonly bounds: Readonly<Rect>;
  readonly #trackers = new Set<DirtyTracker>();
  #pixelsWritten = 0;

  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
    this.pixels = new Uint32Array(width * height);
    this.bounds = Object.freeze({ x: 0, y: 0, width, height });
  }

  /** Pixels written so far, counted again when overwritten: the drawing work done, as bytesWritten is a socket's. */
  get pixelsWritten(): number {
    return this.#pixelsWritten;
  }

  pixel(x: number, y: number): number {
    return this.pixels[y * this.width + x] ?? 0;
  }

  fillRect(rect: Rect, colour: number): void {
    const clipped = this.#plot(rect, colour, this.bounds);
    if (clipped) this.#damage(clipped);
  }

  /** Draw text with a transparent background, each font pixel `scale` pixels square. */
  drawText(x: number, y: number, text: string, colour: number, scale = 1): void {
    for (let i = 0; i < text.length; i++) {
      const rows = glyph(text.charCodeAt(i));
      const left = x + i * CELL_WIDTH * scale;
      rows.forEach((bits, row) => {
        for (let column = 0; column < GLYPH_WIDTH; column++) {
          if (bits & (1 << (GLYPH_WIDTH - 1 - column))) {
            this.#plot({ x: left + column * scale, y: y + row * scale, width: scale, height: scale }, colour, this.bounds);
          }
        }
      });
    }
    const drawn = intersect({ x, y, width: text.length * CELL_WIDTH * scale, height: GLYPH_HEIGHT * scale }, this.bounds);
    if (drawn) this.#damage(drawn);
  }

  /**
   * A line `thickness` pixels wide from `from` to `to`, drawn only inside `clip`. The line
   * is cut to its visible part before it is walked, so it costs no more than one across
   * the clip however far off its ends are (RFB pointers reach 65535), and nothing when
   * none of it shows.
   */
  drawLine(from: Point, to: Point, colour: number, thickness: number, clip: Rect = this.bounds): void {
    const visible = intersect(clip, this.bounds);
    if (!visible) return;
    const offset = Math.floor(thickness / 2); // the pen reaches this far left of and above its centre
    const lead = thickness - 1 - offset; // and this far right and below
    const centres = { x: visible.x - lead, y: visible.y - lead, width: visible.width + thickness - 1, height: visible.height + thickness - 1 };
    const segment = clipSegment(from, to, centres);
    if (!segment) return;
    const { start, end } = segment;
    const dx = Math.abs(end.x - start.x);
    const dy = -Math.abs(end.y - start.y);
    const stepX = start.x < end.x ? 1 : -1;
    const stepY = start.y < end.y ? 1 : -1;
    let { x, y } = start;
    let error = dx + dy;
    for (;;) {
      this.#plot({ x: x - offset, y: y - offset, width: thickness, height: thickness }, colour, visible);
      if (x === end.x && y === end.y) break;
      const doubled = 2 * error; // both tests must see the error from before this step
      if (doubled >= dy) {
        error += dy;
        x += stepX;
      }
      if (doubled <= dx) {
        error += dx;
        y += stepY;
      }
    }
    const box = { x: Math.min(start.x, end.x) - offset, y: Math.min(start.y, end.y) - offset, width: dx + thickness, height: -dy + thickness };
    const drawn = intersect(box, visible);
    if (drawn) this.#damage(drawn);
  }

  /** Move the pixels of `source` to (dstX, dstY); both areas must lie inside the framebuffer. */
  copyRect(source: Rect, dstX: number, dstY: number): void {
    const target = { x: dstX, y: dstY, width: source.width, height: source.height };
    if (!contains(this.bounds, source) || !contains(this.bounds, target)) {
      throw new RangeError(`copyRect outside the ${this.width}x${this.height} framebuffer`);
    }
    // Walk rows away from the overlap so no row is read after it was overwritten.
    const down = dstY > source.y;
    for (let i = 0; i < source.height; i++) {
      const row = down ? source.height - 1 - i : i;
      const from = (source.y + row) * this.width + source.x;
      this.pixels.copyWithin((dstY + row) * this.width + dstX, from, from + source.width);
    }
    this.#pixelsWritten += source.width * source.height;
    for (const tracker of this.#trackers) tracker.noteCopy(target, source.x, source.y);
  }

  /** A new viewer: its tracker starts with the whole screen dirty. */
  track(): DirtyTracker {
    const tracker = new DirtyTracker(this.bounds);
    this.#trackers.add(tracker);
    return tracker;
  }

  untrack(tracker: DirtyTracker): void {
    this.#trackers.delete(tracker);
  }

  /** Fill the part of `rect` inside `clip` (itself inside the bounds) without recording damage. */
  #plot(rect: Rect, colour: number, clip: Rect): Rect | undefined {
    const area = intersect(rect, clip);
    if (!area) return undefined;
    for (let y = area.y; y < area.y + area.height; y++) {
      const start = y * this.width + area.x;
      this.pixels.fill(colour, start, start + area.width);
    }
    this.#pixelsWritten += area.width * area.height;
    return area;
  }

  #damage(rect: Rect): void {
    for (const tracker of this.#trackers) tracker.markDirty(rect);
  }
}

/**
 * What one viewer has not seen yet: one bounding rectangle of changed pixels, plus at most
 * one pending copy when the viewer accepts CopyRect. A copy is only kept while the viewer's
 * copy of its source area is current, so replaying it on the viewer gives the right pixels.
 */
export class DirtyTracker {
  /** Set by the owner once the viewer announced the CopyRect encoding. */
  acceptsCopyRect = false;
  #dirty: Rect | undefined;
  #copy: Damage['copy'];

  constructor(initial: Rect) {
    this.#dirty = initial;
  }

  markDirty(rect: Rect): void {
    this.#dirty = this.#dirty ? union(this.#dirty, rect) : rect;
  }

  noteCopy(rect: Rect, srcX: number, srcY: number): void {
    const source = { ...rect, x: srcX, y: srcY };
    const sourceIsCurrent = !this.#dirty || !intersect(this.#dirty, source);
    if (this.acceptsCopyRect && !this.#copy && sourceIsCurrent) this.#copy = { rect, srcX, srcY };
    else this.markDirty(rect);
  }

  /**
   * What to send for a request. Incremental requests get only what changed inside the
   * request (undefined: nothing, hold the request); others get the whole request. What
   * is sent counts as seen; dirt outside a partial request stays for the next one.
   */
  take(request: Rect, incremental: boolean): Damage | undefined {
    if (this.#copy && !(incremental && copyFits(this.#copy, request))) {
      // Raw pixels are about to overwrite what the copy would read, or it is out of scope.
      this.markDirty(this.#copy.rect);
      this.#copy = undefined;
    }
    const copy = this.#copy;
    const raw = incremental ? intersect(request, this.#dirty) : request;
    if (!copy && !raw) return undefined;
    this.#copy = undefined;
    if (this.#dirty && contains(request, this.#dirty)) this.#dirty = undefined;
    return { copy, raw };
  }
}

function copyFits(copy: NonNullable<Damage['copy']>, request: Rect): boolean {
  return contains(request, copy.rect) && contains(request, { ...copy.rect, x: copy.srcX, y: copy.srcY });
}

/**
 * The part of the segment whose points lie in `rect` (Liang-Barsky), its ends rounded to
 * whole pixels; undefined when no part does. Ends inside `rect` stay exactly as they are;
 * a cut end may put the walk a pixel off where the uncut walk would have gone.
 */
function clipSegment(from: Point, to: Point, rect: Rect): { start: Point; end: Point } | undefined {
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  // Each edge as `along * t <= room`; the points from + t * (dx, dy) inside are a range of t.
  const edges = [
    [-dx, from.x - rect.x],
    [dx, rect.x + rect.width - 1 - from.x],
    [-dy, from.y - rect.y],
    [dy, rect.y + rect.height - 1 - from.y],
  ] as const;
  let enter = 0;
  let leave = 1;
  for (const [along, room] of edges) {
    if (along === 0) {
      if (room < 0) return undefined; // parallel to this edge, and outside it
    } else if (along < 0) {
      enter = Math.max(enter, room / along);
    } else {
      leave = Math.min(leave, room / along);
    }
  }
  if (enter > leave) return undefined;
  const at = (t: number): Point => ({ x: Math.round(from.x + t * dx), y: Math.round(from.y + t * dy) });
  return { start: at(enter), end: at(leave) };
}

function intersect(a: Rect, b: Rect | undefined): Rect | undefined {
  if (!b) return undefined;
  const x = Math.max(a.x, b.x);
  const y = Math.max(a.y, b.y);
  const width = Math.min(a.x + a.width, b.x + b.width) - x;
  const height = Math.min(a.y + a.height, b.y + b.height) - y;
  return width > 0 && height > 0 ? { x, y, width, height } : undefined;
}

export function union(a: Rect, b: Rect): Rect {
  const x = Math.min(a.x, b.x);
  const y = Math.min(a.y, b.y);
  return { x, y, width: Math.max(a.x + a.width, b.x + b.width) - x, height: Math.max(a.y + a.height, b.y + b.height) - y };
}

function contains(outer: Rect, inner: Rect): boolean {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height;
}

/** The framebuffer's own layout: 0x00RRGGBB in 32-bit little-endian words. */
export const NATIVE_PIXEL_FORMAT: Readonly<PixelFormat> = Object.freeze({
  bitsPerPixel: 32,
  depth: 24,
  bigEndian: false,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
});

/** Turns a rectangle of the framebuffer (inside its bounds) into Raw-encoded pixels. */
export type PixelEncoder = (framebuffer: Framebuffer, rect: Rect) => Buffer;

const HOST_BIG_ENDIAN = endianness() === 'BE';
const PIXEL_ARRAY = { 8: Uint8Array, 16: Uint16Array, 32: Uint32Array } as const;

/** Throws RfbProtocolError for colour-map formats and sizes other than 8, 16 or 32 bits. */
export function createPixelEncoder(format: PixelFormat): PixelEncoder {
  const bits = format.bitsPerPixel;
  if (!format.trueColour) throw unsupported('colour-map pixel formats are not supported, only true colour');
  if (!isPixelSize(bits)) throw unsupported(`${bits} bits per pixel is not supported, only 8, 16 or 32`);
  const shifts = [format.redShift, format.greenShift, format.blueShift];
  if (shifts.some((shift) => shift >= bits)) throw unsupported(`colour shifts ${shifts.join('/')} do not fit in ${bits} bits`);

  // One lookup per channel, already shifted and byte-swapped: a pixel is then three ORs.
  const swap = bits > 8 && format.bigEndian !== HOST_BIG_ENDIAN;
  const red = channelTable(format.redMax, format.redShift, bits, swap);
  const green = channelTable(format.greenMax, format.greenShift, bits, swap);
  const blue = channelTable(format.blueMax, format.blueShift, bits, swap);
  const PixelArray = PIXEL_ARRAY[bits];

  return function encodePixels(framebuffer, rect) {
    const out = new PixelArray(rect.width * rect.height);
    const { pixels, width } = framebuffer;
    let o = 0;
    for (let y = rect.y; y < rect.y + rect.height; y++) {
      const end = y * width + rect.x + rect.width;
      for (let i = y * width + rect.x; i < end; i++) {
        const p = pixels[i]!;
        out[o++] = red[(p >>> 16) & 0xff]! | green[(p >>> 8) & 0xff]! | blue[p & 0xff]!;
      }
    }
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  };
}

function isPixelSize(bits: number): bits is keyof typeof PIXEL_ARRAY {
  return bits === 8 || bits === 16 || bits === 32;
}

function channelTable(max: number, shift: number, bits: number, swap: boolean): Uint32Array {
  const table = new Uint32Array(256);
  for (let level = 0; level < 256; level++) {
    const value = (Math.round((level * max) / 255) << shift) >>> 0;
    table[level] = swap ? swapBytes(value, bits) : value;
  }
  return table;
}

function swapBytes(value: number, bits: number): number {
  if (bits === 16) return ((value & 0xff) << 8) | ((value >>> 8) & 0xff);
  return (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24)) >>> 0;
}

function unsupported(message: string): RfbProtocolError {
  return new RfbProtocolError('RFB_ERR_UNSUPPORTED_PIXEL_FORMAT', message);
}
