/**
 * A slow disk for the process it is preloaded into: `node --import <file URL of this
 * module>?bytesPerSecond=N ...` (bench/scenarios/recording-slow-disk.js passes it to deskgate).
 * Every FileHandle write and writev (node:fs/promises: what the recorder writes with) waits
 * until a disk of N bytes per second would have taken its bytes, then writes. Writes queue
 * behind each other, as on one disk: a write's turn starts when the one before it is done.
 * Nothing else changes; the rate is in the URL so that nothing here has to be imported.
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

const bytesPerSecond = Number(new URL(import.meta.url).searchParams.get('bytesPerSecond'));
if (!(bytesPerSecond > 0)) throw new Error(`slow-disk.js: expected ?bytesPerSecond=N in its URL, got ${import.meta.url}`);

/** When the simulated disk is free again (performance.now() milliseconds). */
let freeAt = 0;

/** Wait as long as the disk takes `bytes`, after whatever it still has to write. @param {number} bytes */
function diskTime(bytes) {
  freeAt = Math.max(freeAt, performance.now()) + (bytes / bytesPerSecond) * 1000;
  return sleep(freeAt - performance.now());
}

/** @param {unknown} data @param {unknown} offsetOrOptions @param {unknown} length */
function bytesOf(data, offsetOrOptions, length) {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (!ArrayBuffer.isView(data)) return 0;
  if (typeof length === 'number') return length;
  const options = /** @type {{ offset?: number, length?: number } | undefined} */ (typeof offsetOrOptions === 'object' ? offsetOrOptions : undefined);
  return options?.length ?? data.byteLength - (typeof offsetOrOptions === 'number' ? offsetOrOptions : (options?.offset ?? 0));
}

// The FileHandle class is not exported: its prototype is that of an opened handle.
const handle = await open(new URL(import.meta.url), 'r');
const FileHandle = Object.getPrototypeOf(handle);
await handle.close();

const { write, writev } = FileHandle;
/** @this {import('node:fs/promises').FileHandle} @param {unknown} data @param {unknown[]} rest */
FileHandle.write = async function (data, ...rest) {
  await diskTime(bytesOf(data, rest[0], rest[1]));
  return write.call(this, data, ...rest);
};
/** @this {import('node:fs/promises').FileHandle} @param {ArrayBufferView[]} buffers @param {unknown[]} rest */
FileHandle.writev = async function (buffers, ...rest) {
  await diskTime(buffers.reduce((sum, buffer) => sum + buffer.byteLength, 0));
  return writev.call(this, buffers, ...rest);
};
