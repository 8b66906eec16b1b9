/**
 * The VNC side of the benchmark, run as its own process (see peers-control.js) so that
 * producing and consuming bytes never shares an event loop with the measuring client.
 *
 * TCP servers on 127.0.0.1, created over IPC:
 * - source: writes `bytes` to each connection as fast as the socket takes them, then waits
 *           for the other side to close;
 * - sink:   counts what each connection sends and reports `sink-done` once the amount
 *           announced with `expect` has arrived;
 * - echo:   sends every byte back.
 *
 * Requests:  { id, cmd: 'listen', kind, bytes? } -> { id, port }
 *            { id, cmd: 'expect', port, bytes }   -> { id }
 * Events:    { event: 'sink-done', port, bytes }
 * The process exits when its parent goes away.
 */
import { randomFillSync } from 'node:crypto';
import { createServer } from 'node:net';

/** One write of the source; random so that nothing on the way could compress it. */
const CHUNK = randomFillSync(Buffer.alloc(64 * 1024));

/** @type {Map<number, { expected: number }>} */
const sinks = new Map();

/**
 * @param {import('node:net').Socket} socket
 * @param {number} bytes
 */
function flood(socket, bytes) {
  let left = bytes;
  function writeMore() {
    while (left > 0 && !socket.destroyed) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      // Back-pressure: stop when the socket's buffer is full, go on at 'drain'.
      if (!socket.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        socket.once('drain', writeMore);
        return;
      }
    }
    // No end(): a VNC server does not hang up after a frame, and websockify 0.10 can drop the
    // last few hundred KB it still holds for the browser when its target closes first.
  }
  writeMore();
}

/**
 * @param {import('node:net').Socket} socket
 * @param {number} port
 */
function count(socket, port) {
  const sink = sinks.get(port);
  const expected = sink?.expected ?? Infinity;
  let received = 0;
  socket.on('data', (chunk) => {
    const before = received;
    received += chunk.length;
    if (before < expected && received >= expected) process.send?.({ event: 'sink-done', port, bytes: received });
  });
}

/**
 * @param {'source' | 'sink' | 'echo'} kind
 * @param {number} bytes
 * @returns {Promise<number>}
 */
function listen(kind, bytes) {
  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy()); // the relay went away mid-stream: expected at the end of a run
    const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
    if (kind === 'source') flood(socket, bytes);
    else if (kind === 'sink') count(socket, port);
    else socket.pipe(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A deep accept queue: the concurrency scenario connects thousands of sessions at once.
    server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
      const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
      if (kind === 'sink') sinks.set(port, { expected: Infinity });
      resolve(port);
    });
  });
}

/**
 * What peers-control.js sends.
 * @typedef {{ id: number, cmd: 'listen', kind: 'source' | 'sink' | 'echo', bytes?: number }
 *   | { id: number, cmd: 'expect', port: number, bytes: number }} Request
 */

/**
 * Carries out one request and replies; a failure becomes an `{ id, error }` reply.
 * @param {Request} request
 */
async function answer(request) {
  const { id, cmd } = request;
  try {
    if (cmd === 'listen') process.send?.({ id, port: await listen(request.kind, request.bytes ?? 0) });
    else if (cmd === 'expect') {
      const sink = sinks.get(request.port);
      if (!sink) throw new Error(`no sink on port ${request.port}`);
      sink.expected = request.bytes;
      process.send?.({ id });
    } else throw new Error(`unknown command ${cmd}`);
  } catch (err) {
    process.send?.({ id, error: /** @type {Error} */ (err).message });
  }
}

/** @param {unknown} message */
function onMessage(message) {
  void answer(/** @type {Request} */ (message));
}

process.on('message', onMessage);
process.on('disconnect', () => process.exit(0));
