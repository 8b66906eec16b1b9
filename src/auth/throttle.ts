/**
 * Failed-login throttling per client address: after `maxFailures` failures within
 * `windowMs`, the address is refused for `blockMs`. Attempts still being checked count
 * against the budget too, so a burst of concurrent guesses gets no more checks than a
 * sequence would. One IPv6 /64 counts as one address: a single client can rotate through
 * all of it.
 *
 * Memory is bounded by two tables. Failure counts: at most `maxAddresses`, the least
 * recently seen forgotten first. Blocks: at most `maxBlocked`, never forgotten before they
 * end, so failures from other addresses cannot free a blocked one. Should the blocks table
 * ever be full, the throttle fails closed: every address not already blocked is refused
 * until the oldest block ends and makes room.
 */
import { clientKey } from '../net/cidr.js';

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  /** Addresses whose failures are counted; 100,000 unless set. */
  maxAddresses?: number;
  /** Addresses blocked at once; 100,000 unless set. */
  maxBlocked?: number;
}

interface Counter {
  /** Times of recent failures, oldest first. */
  failures: number[];
  /** Attempts begun and not yet ended. */
  checking: number;
}

const MAX_ADDRESSES = 100_000;
const MAX_BLOCKED = 100_000;

export class LoginThrottle {
  /** Least recently used first. */
  readonly #counters = new Map<string, Counter>();
  /** When each block ends. blockMs is constant, so insertion order is expiry order. */
  readonly #blocked = new Map<string, number>();
  readonly #options: Required<ThrottleOptions>;
  readonly #now: () => number;

  constructor(options: ThrottleOptions, now: () => number = Date.now) {
    this.#options = { maxAddresses: MAX_ADDRESSES, maxBlocked: MAX_BLOCKED, ...options };
    this.#now = now;
  }

  /** Seconds until the address may try again, or 0 if it may try now. */
  retryAfter(address: string): number {
    const now = this.#now();
    this.#sweep(now);
    const own = this.#blocked.get(clientKey(address));
    // Fail closed: with no room for more blocks, the others wait for the oldest to end.
    const until = own ?? (this.#isFull() ? (this.#blocked.values().next().value as number) : 0);
    return Math.max(0, Math.ceil((until - now) / 1000));
  }

  /** Start checking an attempt; false when recent failures and attempts still being checked use up the budget. */
  begin(address: string): boolean {
    const key = clientKey(address);
    const counter = this.#take(key);
    const open = counter.failures.length + counter.checking < this.#options.maxFailures;
    if (open) counter.checking += 1;
    this.#put(key, counter);
    return open;
  }

  /** End an attempt begun with begin(). */
  end(address: string, outcome: 'failed' | 'succeeded'): void {
    const counter = this.#counters.get(clientKey(address));
    if (counter) counter.checking = Math.max(0, counter.checking - 1);
    if (outcome === 'failed') this.failed(address);
  }

  failed(address: string): void {
    const key = clientKey(address);
    const counter = this.#take(key);
    const now = this.#now();
    counter.failures.push(now);
    if (counter.failures.length >= this.#options.maxFailures) {
      // No room for the block: keep the latest failures so the next one blocks; the full table refuses the address meanwhile.
      counter.failures = this.#block(key, now) ? [] : counter.failures.slice(-this.#options.maxFailures);
    }
    this.#put(key, counter);
  }

  /** Block the key from now; false when the blocks table is full. */
  #block(key: string, now: number): boolean {
    this.#sweep(now);
    if (!this.#blocked.has(key) && this.#isFull()) return false;
    this.#blocked.delete(key); // re-inserted last, keeping expiry order
    this.#blocked.set(key, now + this.#options.blockMs);
    return true;
  }

  #isFull(): boolean {
    return this.#blocked.size >= this.#options.maxBlocked;
  }

  /** Drop the blocks that have ended: they are the oldest. */
  #sweep(now: number): void {
    for (const [key, until] of this.#blocked) {
      if (until > now) return;
      this.#blocked.delete(key);
    }
  }

  /** The key's counter with failures older than the window dropped, out of the table until #put. */
  #take(key: string): Counter {
    const now = this.#now();
    const counter = this.#counters.get(key) ?? { failures: [], checking: 0 };
    this.#counters.delete(key); // re-inserted last: the Map's order is least recently used first
    counter.failures = counter.failures.filter((at) => now - at < this.#options.windowMs);
    return counter;
  }

  #put(key: string, counter: Counter): void {
    this.#counters.set(key, counter);
    if (this.#counters.size > this.#options.maxAddresses) this.#counters.delete(this.#counters.keys().next().value as string);
  }
}
