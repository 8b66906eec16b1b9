/**
 * The VNC side of the benchmark, run as its own process (see peers-control.js) so that
 * producing and consuming bytes never shares an event loop with the measuring client.
 *
 * TCP servers on 127.0.0.1, created over IPC. Each is a VNC server as far as the handshake
 * goes: it speaks the server side of RFB 3.8 first (bench/rfb.js; security None, or only VNC
 * authentication when created with `password`), and only the bytes after ServerInit
 * (towards the viewer) or after ClientInit (from it) are the payload below:
 * - source: once the viewer has sent its first message (a FramebufferUpdateRequest: a VNC
 *           server sends nothing unasked), writes `bytes` to each connection as fast as the
 *           socket takes them, then waits for the other side to close;
 * - sink:   counts what each connection sends and reports `sink-done` once the amount
 *           announced with `expect` has arrived;
 * - echo:   sends every byte back.
 * A connection whose handshake fails (wrong password, not a viewer) is closed.
 *
 * Requests:  { id, cmd: 'listen', kind, bytes?, password? } -> { id, port }
 *            { id, cmd: 'expect', port, bytes }   -> { id }
 * Events:    { event: 'sink-done', port, bytes }
 * The process exits when its parent goes away.
 */
import { randomFillSync } from 'node:crypto';
import { createServer } from 'node:net';
import { ByteQueue, serveHandshake } from './rfb.js';

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
 * @param {Buffer} first what arrived with the end of the handshake
 */
function count(socket, port, first) {
  const sink = sinks.get(port);
  const expected = sink?.expected ?? Infinity;
  let received = 0;
  /** @param {Buffer} chunk */
  const counted = (chunk) => {
    const before = received;
    received += chunk.length;
    if (before < expected && received >= expected) process.send?.({ event: 'sink-done', port, bytes: received });
  };
  counted(first);
  socket.on('data', counted);
}

/**
 * The RFB handshake on a new connection; resolves with the payload bytes that came with its
 * end. Until then the connection's bytes go to the handshake alone.
 * @param {import('node:net').Socket} socket
 * @param {string | undefined} password
 */
async function handshake(socket, password) {
  const queue = new ByteQueue();
  /** @param {Buffer} chunk */
  const onData = (chunk) => queue.push(chunk);
  const onClose = () => queue.fail(new Error('closed during the RFB handshake'));
  socket.on('data', onData);
  socket.once('close', onClose);
  try {
    await serveHandshake({ read: (n) => queue.read(n), write: (bytes) => socket.write(bytes) }, password);
  } finally {
    // No I/O event runs between here and the caller's own listener: nothing is lost between them.
    socket.off('data', onData);
    socket.off('close', onClose);
  }
  return queue.rest();
}

/**
 * @param {'source' | 'sink' | 'echo'} kind
 * @param {number} bytes
 * @param {string | undefined} password
 * @returns {Promise<number>}
 */
function listen(kind, bytes, password) {
  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy()); // the relay went away mid-stream: expected at the end of a run
    const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
    handshake(socket, password).then(
      (first) => {
        if (kind === 'source') {
          let asked = false;
          const start = () => {
            if (!asked) flood(socket, bytes);
            asked = true;
          };
          socket.on('data', start); // later client messages are read and ignored
          if (first.length > 0) start();
        } else if (kind === 'sink') count(socket, port, first);
        else {
          if (first.length > 0) socket.write(first);
          socket.pipe(socket);
        }
      },
      () => socket.end(), // a readiness probe, a wrong password: the reason (if any) is written, then close
    );
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
 * @typedef {{ id: number, cmd: 'listen', kind: 'source' | 'sink' | 'echo', bytes?: number, password?: string }
 *   | { id: number, cmd: 'expect', port: number, bytes: number }} Request
 */

/**
 * Carries out one request and replies; a failure becomes an `{ id, error }` reply.
 * @param {Request} request
 */
async function answer(request) {
  const { id, cmd } = request;
  try {
    if (cmd === 'listen') process.send?.({ id, port: await listen(request.kind, request.bytes ?? 0, request.password) });
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
