/**
 * Failed-login throttling per client address: after `maxFailures` failures within
 * `windowMs`, the address is refused for `blockMs`. Attempts still being checked count
 * against the budget too, so a burst of concurrent guesses gets no more checks than a
 * sequence would. One IPv6 /64 counts as one address: a single client can rotate through
 * all of it. Memory is bounded: the table holds at most MAX_ADDRESSES entries and forgets
 * the oldest first.
 */
import { isIP } from 'node:net';
import { normalizeAddress } from '../desktops/targets.js';

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  blockMs: number;
}

interface Entry {
  /** Times of recent failures, oldest first. */
  failures: number[];
  blockedUntil: number;
  /** Attempts begun and not yet ended. */
  checking: number;
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
    const blockedUntil = this.#entries.get(throttleKey(address))?.blockedUntil ?? 0;
    return Math.max(0, Math.ceil((blockedUntil - this.#now()) / 1000));
  }

  /** Start checking an attempt; false when recent failures and attempts still being checked use up the budget. */
  begin(address: string): boolean {
    const key = throttleKey(address);
    const entry = this.#take(key);
    const open = entry.failures.length + entry.checking < this.#options.maxFailures;
    if (open) entry.checking += 1;
    this.#put(key, entry);
    return open;
  }

  /** End an attempt begun with begin(). */
  end(address: string, outcome: 'failed' | 'succeeded'): void {
    const entry = this.#entries.get(throttleKey(address));
    if (entry) entry.checking = Math.max(0, entry.checking - 1);
    if (outcome === 'failed') this.failed(address);
  }

  failed(address: string): void {
    const key = throttleKey(address);
    const entry = this.#take(key);
    const now = this.#now();
    entry.failures.push(now);
    if (entry.failures.length >= this.#options.maxFailures) {
      entry.blockedUntil = now + this.#options.blockMs;
      entry.failures = [];
    }
    this.#put(key, entry);
  }

  /** The key's entry with failures older than the window dropped, out of the table until #put. */
  #take(key: string): Entry {
    const now = this.#now();
    const entry = this.#entries.get(key) ?? { failures: [], blockedUntil: 0, checking: 0 };
    this.#entries.delete(key); // re-inserted last: the Map's order is least recently used first
    entry.failures = entry.failures.filter((at) => now - at < this.#options.windowMs);
    return entry;
  }

  #put(key: string, entry: Entry): void {
    this.#entries.set(key, entry);
    if (this.#entries.size > MAX_ADDRESSES) this.#entries.delete(this.#entries.keys().next().value as string);
  }
}

/** What the throttle counts by: an IPv4 address (IPv4-mapped ones too), or an IPv6 address's /64. */
export function throttleKey(address: string): string {
  const ip = normalizeAddress(address.split('%', 1)[0] as string);
  if (isIP(ip) !== 6) return ip;
  // The URL parser writes IPv6 in canonical form: lower case, hex only, one `::` at most.
  const [head = '', tail] = new URL(`http://[${ip}]`).hostname.slice(1, -1).split('::');
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${groups.slice(0, 4).join(':')}::/64`;
}
