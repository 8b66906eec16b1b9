/**
 * One side of an RFB handshake as the gateway reads it: bytes pushed in by the transport,
 * read out in exact lengths, each read with a deadline. The bytes held are bounded: once a
 * side has sent `limitBytes` more than the handshake asked for, its transport is paused until
 * the handshake reads them, so a hostile peer cannot make the gateway buffer without end, and a
 * server that sends its first framebuffer right after ServerInit is simply read later, by the relay.
 */
import type { GatewayError } from '../errors.js';

/** How a side words what went wrong; `waitingFor` says what the gateway was reading, e.g. "security types". */
export interface ReaderFailures {
  timedOut(waitingFor: string, timeoutMs: number): GatewayError;
  ended(waitingFor: string): GatewayError;
}

/** Stops and restarts the transport's reads: back-pressure on the side that sends too much. */
export interface ReaderFlow {
  pause(): void;
  resume(): void;
}

interface PendingRead {
  length: number;
  waitingFor: string;
  timer: NodeJS.Timeout;
  resolve(bytes: Buffer): void;
  reject(error: GatewayError): void;
}

export class HandshakeReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #pending: PendingRead | undefined;
  #failure: GatewayError | undefined;
  #ended = false;
  #paused = false;
  readonly #limitBytes: number;
  readonly #failures: ReaderFailures;
  readonly #flow: ReaderFlow;

  constructor(failures: ReaderFailures, limitBytes: number, flow: ReaderFlow) {
    this.#failures = failures;
    this.#limitBytes = limitBytes;
    this.#flow = flow;
  }

  /** Bytes from the transport; `chunk` is the reader's from now on. */
  push(chunk: Buffer): void {
    if (this.#failure) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#settle();
    if (!this.#paused && this.#length > this.#limitBytes + (this.#pending?.length ?? 0)) {
      this.#paused = true;
      this.#flow.pause();
    }
  }

  /** The transport closed: a read that cannot complete with what is held fails. */
  end(): void {
    this.#ended = true;
    this.#settle();
  }

  /** Fail the pending read and every later one with `error`. */
  fail(error: GatewayError): void {
    this.#failure ??= error;
    this.#settle();
  }

  /** Exactly `length` bytes, within `timeoutMs`. One read at a time. */
  read(length: number, waitingFor: string, timeoutMs: number): Promise<Buffer> {
    if (this.#pending) throw new Error('HandshakeReader: one read at a time');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(this.#failures.timedOut(waitingFor, timeoutMs)), timeoutMs);
      this.#pending = { length, waitingFor, timer, resolve, reject };
      this.#settle();
      if (this.#paused && this.#length < length) {
        this.#paused = false; // the read needs more than is held: let the transport go on
        this.#flow.resume();
      }
    });
  }

  /** Bytes held that no read has taken yet. */
  get buffered(): number {
    return this.#length;
  }

  /** Whatever came after the handshake's last read: the relay's first bytes. */
  rest(): Buffer {
    const rest = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return rest;
  }

  #settle(): void {
    const pending = this.#pending;
    if (!pending) return;
    let outcome: Buffer | GatewayError | undefined;
    if (this.#failure) outcome = this.#failure;
    else if (this.#length >= pending.length) outcome = this.#take(pending.length);
    else if (this.#ended) outcome = this.#failure = this.#failures.ended(pending.waitingFor);
    if (!outcome) return;
    this.#pending = undefined;
    clearTimeout(pending.timer);
    if (Buffer.isBuffer(outcome)) pending.resolve(outcome);
    else pending.reject(outcome);
  }

  #take(length: number): Buffer {
    const parts: Buffer[] = [];
    for (let missing = length; missing > 0;) {
      const head = this.#chunks[0]!;
      const part = head.length <= missing ? head : head.subarray(0, missing);
      if (part === head) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(missing);
      parts.push(part);
      missing -= part.length;
    }
    this.#length -= length;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
