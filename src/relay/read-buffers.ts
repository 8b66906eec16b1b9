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

/**
 * Four times Node's 64 KiB: a quarter of the reads, sends and frames when the VNC server
 * floods. 1 GiB VNC -> browser: relay CPU 0.77-1.03 -> 0.59-0.78 s (the 64 KiB median was
 * 0.87 s, 256 KiB 0.61 s), throughput +10-20 %. 1 MiB saved no more CPU and lost throughput.
 */
const READ_BUFFER_SIZE = 256 * 1024;

/** What every upstream socket reads into; valid only during its onread callback. */
export const SHARED_READ_BUFFER = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);

/** Idle buffers kept for reuse, all sessions together: 4 MiB at most. */
const POOL_LIMIT = 16;
const idle: Buffer[] = [];

export function takeReadBuffer(): Buffer {
  return idle.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
}

/** Only call once nothing refers to the buffer any more (its send has completed). */
export function recycleReadBuffer(buffer: Buffer): void {
  if (idle.length < POOL_LIMIT) idle.push(buffer);
}

/**
 * The browser side cannot read into these buffers: ws owns that socket, Node gives it a
 * fresh 64 KiB buffer per read and ws copies each 64 KiB message out of two of them. When
 * a GC frees a batch of those, glibc hands the heap top back to the kernel (it keeps at most
 * 128 KiB free there) and faults it in again on the next reads: 25,000-110,000 page faults
 * per GiB uploaded. glibc raises that limit to twice the largest mmap'd block freed so far
 * (its dynamic mmap threshold), so one 8 MiB block, freed by the next GC, makes it keep up
 * to 16 MiB: ~0 faults per GiB once warm, upload CPU per GiB about -25 %. Other allocators
 * ignore it; MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_ in the environment override it.
 */
Buffer.allocUnsafeSlow(8 * 1024 * 1024);
