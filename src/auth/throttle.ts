/**
 * Failed-login throttling per client address: after `maxFailures` failures within
 * `windowMs`, the address is refused for `blockMs`. Memory is bounded: the table holds
 * at most MAX_ADDRESSES entries and forgets the oldest first.
 */

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
}

interface Entry {
  /** Times of recent failures, oldest first. */
  failures: number[];
  blockedUntil: number;
}

const MAX_ADDRESSES = 100_000;

export class LoginThrottle {
  readonly #entries = new Map<string, Entry>();
  readonly #options: ThrottleOptions;
  readonly #now: () => number;

  constructor(options: ThrottleOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** Seconds until the address may try again, or 0 if it may try now. */
  retryAfter(address: string): number {
    const blockedUntil = this.#entries.get(address)?.blockedUntil ?? 0;
    return Math.max(0, Math.ceil((blockedUntil - this.#now()) / 1000));
  }

  failed(address: string): void {
    const now = this.#now();
    const entry = this.#entries.get(address) ?? { failures: [], blockedUntil: 0 };
    this.#entries.delete(address); // re-inserted last: the Map's order is least recently failed first
    entry.failures = entry.failures.filter((at) => now - at < this.#options.windowMs);
    entry.failures.push(now);
    if (entry.failures.length >= this.#options.maxFailures) {
      entry.blockedUntil = now + this.#options.blockMs;
      entry.failures = [];
    }
    this.#entries.set(address, entry);
    if (this.#entries.size > MAX_ADDRESSES) this.#entries.delete(this.#entries.keys().next().value as string);
  }

  succeeded(address: string): void {
    this.#entries.delete(address);
  }
}
