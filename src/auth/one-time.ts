/**
 * Ids that may be used once until they expire: ticket ids (replay protection) and the ids
 * of logged-out login cookies. Entries live only until their expiry, so the set holds at
 * most what was issued within one ticket or cookie lifetime.
 *
 * A store remembers only from `since` on. A ticket or login issued before then may have
 * been used or revoked where this store could not see it, so it is refused: a revoked login
 * or a used ticket never works again, whatever the store forgot.
 */
export interface OneTimeStore {
  /** When the store's memory begins (ms since the epoch). */
  readonly since: number;
  /** Mark the id used until `expiresAt` (ms); false if it was already used. */
  claim(id: string, expiresAt: number): Promise<boolean>;
  has(id: string): Promise<boolean>;
}

/** A store in this process's memory: it begins when the process does, so a restart voids every earlier login and ticket. */
export class MemoryOneTimeStore implements OneTimeStore {
  readonly since = Date.now();
  readonly #ids = new Map<string, number>();
  #nextSweep = 0;

  async claim(id: string, expiresAt: number): Promise<boolean> {
    this.#sweep();
    if (this.#ids.has(id)) return false;
    this.#ids.set(id, expiresAt);
    return true;
  }

  async has(id: string): Promise<boolean> {
    const expiresAt = this.#ids.get(id);
    return expiresAt !== undefined && expiresAt > Date.now();
  }

  /** Drop expired ids, at most once a second: claims stay O(1) on average. */
  #sweep(): void {
    const now = Date.now();
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + 1000;
    for (const [id, expiresAt] of this.#ids) if (expiresAt <= now) this.#ids.delete(id);
  }
}
