/**
 * What the demo desktop shows: a title bar with a clock, a text box viewers type into,
 * and a white area they draw on. Pure drawing on a Framebuffer; the RFB side is in
 * server.ts.
 */
import { CELL_HEIGHT, CELL_WIDTH, GLYPH_HEIGHT } from './font.js';
import { Framebuffer, type Point } from './framebuffer.js';
import { Keysym, type Rect } from '../rfb/protocol.js';

const COLOUR = {
  background: 0x2a6f97,
  header: 0x102a43,
  title: 0xffffff,
  subtitle: 0x9fb3c8,
  clock: 0xffd166,
  border: 0x829ab1,
  textBox: 0xf0f4f8,
  text: 0x102a43,
  canvas: 0xffffff,
  pen: 0xd62839,
} as const;

const MARGIN = 16;
const HEADER_HEIGHT = 64;
const TEXT_SCALE = 2;
const LINE_HEIGHT = CELL_HEIGHT * TEXT_SCALE;
const TEXT_ROWS = 6;
const TEXT_PADDING = 8;
const BORDER = 2;
const CLOCK_SCALE = 3;
const PEN_WIDTH = 3;
const CARET = '_';

/** The screen's content and layout; every change is reported through `onChange`. */
export class DemoScene {
  readonly framebuffer: Framebuffer;
  readonly #onChange: () => void;
  readonly #textArea: Rect;
  readonly #canvas: Rect;
  readonly #clock: Rect;
  readonly #columns: number;
  #lines = [''];

  constructor(width: number, height: number, onChange: () => void) {
    this.framebuffer = new Framebuffer(width, height);
    this.#onChange = onChange;
    const boxTop = HEADER_HEIGHT + MARGIN;
    const box = { x: MARGIN, y: boxTop, width: width - 2 * MARGIN, height: TEXT_ROWS * LINE_HEIGHT + 2 * TEXT_PADDING };
    const inner = { x: box.x + TEXT_PADDING, y: box.y + TEXT_PADDING, width: box.width - 2 * TEXT_PADDING };
    this.#textArea = { ...inner, height: TEXT_ROWS * LINE_HEIGHT };
    this.#columns = Math.max(1, Math.floor(this.#textArea.width / (CELL_WIDTH * TEXT_SCALE)));
    const canvasTop = box.y + box.height + MARGIN;
    this.#canvas = { x: MARGIN, y: canvasTop, width: width - 2 * MARGIN, height: height - canvasTop - MARGIN };
    const clockWidth = 8 * CELL_WIDTH * CLOCK_SCALE;
    this.#clock = { x: width - MARGIN - clockWidth, y: 10, width: clockWidth, height: GLYPH_HEIGHT * CLOCK_SCALE };
    this.#drawStatic(box);
  }

  get text(): string {
    return this.#lines.join('\n');
  }

  /** Keys that edit; printable keysyms (Latin-1 equals ASCII there) type themselves. */
  key(keysym: number): void {
    if (keysym === Keysym.Return || keysym === Keysym.KeypadEnter) this.type('\n');
    else if (keysym === Keysym.BackSpace) this.#backspace();
    else if (keysym >= 0x20 && keysym <= 0x7e) this.type(String.fromCharCode(keysym));
  }

  /**
   * Type text: printable ASCII and newlines (nothing else has a glyph worth showing).
   * Lines are edited first and drawn once, so pasting a long text costs one redraw.
   */
  type(text: string): void {
    let firstChanged = this.#lines.length - 1; // the caret moves, so its row changes
    let scrolled = 0;
    for (const char of text) {
      if (char !== '\n' && !isPrintable(char)) continue;
      if (char === '\n' || this.#lines[this.#lines.length - 1]!.length >= this.#columns) {
        this.#lines.push('');
        if (this.#lines.length > TEXT_ROWS) {
          this.#lines.shift();
          scrolled += 1;
          firstChanged -= 1;
        }
      }
      if (char !== '\n') this.#lines[this.#lines.length - 1] += char;
    }
    // Rows that merely moved up are copied, not redrawn, so CopyRect viewers get them cheaply.
    if (scrolled > 0 && firstChanged > 0) this.#scrollUp(scrolled);
    this.#renderLines(Math.max(0, firstChanged));
  }

  /** One stroke of the pen, clipped to the drawing area. */
  stroke(from: Point, to: Point): void {
    this.framebuffer.drawLine(from, to, COLOUR.pen, PEN_WIDTH, this.#canvas);
    this.#onChange();
  }

  clearCanvas(): void {
    this.framebuffer.fillRect(this.#canvas, COLOUR.canvas);
    this.#onChange();
  }

  showTime(now: Date): void {
    const time = [now.getHours(), now.getMinutes(), now.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
    this.framebuffer.fillRect(this.#clock, COLOUR.header);
    this.framebuffer.drawText(this.#clock.x, this.#clock.y, time, COLOUR.clock, CLOCK_SCALE);
    this.#onChange();
  }

  #drawStatic(box: Rect): void {
    const fb = this.framebuffer;
    fb.fillRect(fb.bounds, COLOUR.background);
    fb.fillRect({ x: 0, y: 0, width: fb.width, height: HEADER_HEIGHT }, COLOUR.header);
    fb.drawText(MARGIN, 10, 'deskgate demo desktop', COLOUR.title, 3);
    fb.drawText(MARGIN, 42, 'draw with the mouse, type on the keyboard', COLOUR.subtitle, 2);
    fb.fillRect(box, COLOUR.border);
    fb.fillRect({ x: box.x + BORDER, y: box.y + BORDER, width: box.width - 2 * BORDER, height: box.height - 2 * BORDER }, COLOUR.textBox);
    fb.fillRect(this.#canvas, COLOUR.canvas);
    this.#renderLines(0);
  }

  #scrollUp(rows: number): void {
    const area = this.#textArea;
    const shift = rows * LINE_HEIGHT;
    this.framebuffer.copyRect({ ...area, y: area.y + shift, height: area.height - shift }, area.x, area.y);
  }

  #backspace(): void {
    const last = this.#lines.length - 1;
    if (this.#lines[last]) {
      this.#lines[last] = this.#lines[last]!.slice(0, -1);
      this.#renderLines(last);
    } else if (last > 0) {
      this.#lines.pop();
      this.#renderLines(last - 1, last);
    }
  }

  /** Redraw text rows `first` to `last`, with the caret after the last line's text. */
  #renderLines(first: number, last = this.#lines.length - 1): void {
    const area = this.#textArea;
    for (let row = first; row <= last; row++) {
      const y = area.y + row * LINE_HEIGHT;
      const line = this.#lines[row] ?? '';
      const caret = row === this.#lines.length - 1 && line.length < this.#columns ? CARET : ''; // a full line wraps first
      this.framebuffer.fillRect({ ...area, y, height: LINE_HEIGHT }, COLOUR.textBox);
      this.framebuffer.drawText(area.x, y, line + caret, COLOUR.text, TEXT_SCALE);
    }
    this.#onChange();
  }
}

function isPrintable(char: string): boolean {
  return char >= ' ' && char <= '~';
}
