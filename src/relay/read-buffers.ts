/**
 * Buffers for VNC -> browser traffic.
 *
 * Left to itself, Node allocates a fresh 64 KiB buffer for every TCP read and frees it
 * after a GC. With glibc that churn grows and trims the heap top over and over, and each
 * read then faults in new pages: measured here, 1 GiB through one session took 4.5-6 s
 * instead of 1.5-2.5 s (strace: 4,257 brk calls and 172 us per read, against 349 and
 * 32 us). So every upstream socket reads into one shared buffer (reads are synchronous,
 * one at a time) and each read is copied out into a recycled buffer: idle sessions hold
 * no read memory, busy ones only what they are sending.
 */
const READ_BUFFER_SIZE = 64 * 1024;

/** What every upstream socket reads into; valid only during its onread callback. */
export const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);

/** Idle buffers kept for reuse, all sessions together: 4 MiB at most. */
const POOL_LIMIT = 64;
const idle: Buffer[] = [];

export function takeReadBuffer(): Buffer {
  return idle.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
}

/** Only call once nothing refers to the buffer any more (its send has completed). */
export function recycleReadBuffer(buffer: Buffer): void {
  if (idle.length < POOL_LIMIT) idle.push(buffer);
}
