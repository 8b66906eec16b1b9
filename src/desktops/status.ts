/**
 * Dashboard status of each desktop: an RFB probe, cached so a busy dashboard does not
 * knock on every VNC server for every page view, and shared while in flight.
 */
import { addressOf, formatAddress } from '../net/address.js';
import { probeRfb, type ProbeResult } from '../rfb/probe.js';
import type { Desktop } from './directory.js';

interface Entry {
  result: Promise<ProbeResult>;
  /** When the probe finished; undefined while it runs. */
  doneAt: number | undefined;
}

export class DesktopStatus {
  readonly #cache = new Map<string, Entry>();
  readonly #timeoutMs: number;
  readonly #cacheMs: number;

  constructor(options: { timeoutMs: number; cacheMs: number }) {
    this.#timeoutMs = options.timeoutMs;
    this.#cacheMs = options.cacheMs;
  }

  check(desktop: Desktop): Promise<ProbeResult> {
    const tls = desktop.vnc?.tls === 'tls-first';
    const key = `${tls ? 'tls:' : ''}${formatAddress(desktop)}`;
    const cached = this.#cache.get(key);
    if (cached && (cached.doneAt === undefined || Date.now() - cached.doneAt < this.#cacheMs)) return cached.result;
    const entry: Entry = { result: probeRfb(addressOf(desktop), this.#timeoutMs, tls), doneAt: undefined };
    void entry.result.then(() => (entry.doneAt = Date.now()));
    this.#cache.set(key, entry);
    return entry.result;
  }
}
