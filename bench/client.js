/**
 * The measuring client, one interface over two transports: a WebSocket (npm `ws`,
 * subprotocol "binary" as noVNC asks) for deskgate and websockify, a plain TCP socket for
 * the direct baseline. Scenarios only see `write`/`onDrain`/`pause`/`resume`/`destroy`.
 */
import { connect as tcpConnect } from 'node:net';
import WebSocket from 'ws';

/** WebSocket sends stop when this much is buffered (the browser's bufferedAmount habit). */
export const SEND_HIGH_WATER_BYTES = 1024 * 1024;
const OPEN_TIMEOUT_MS = 10_000;

/**
 * @typedef {object} Connection
 * @property {bigint} openedAt process.hrtime.bigint() when the connection opened
 * @property {(chunk: Buffer) => boolean} write false: wait for `onDrain` before writing more
 * @property {(listener: () => void) => void} onDrain called once when writing may go on
 * @property {() => void} pause stop reading
 * @property {() => void} resume
 * @property {() => void} destroy cut the connection now
 */

/**
 * @typedef {object} Handlers
 * @property {(chunk: Buffer) => void} [onData]
 * @property {(why: string) => void} [onClose] the connection ended (by either side)
 */

/**
 * @param {import('./relays.js').Endpoint} endpoint
 * @param {Handlers} [handlers]
 * @returns {Promise<Connection>}
 */
export function connect(endpoint, handlers = {}) {
  return endpoint.kind === 'ws' ? connectWebSocket(endpoint.url, handlers) : connectTcp(endpoint.port, handlers);
}

/**
 * @param {string} url
 * @param {Handlers} handlers
 * @returns {Promise<Connection>}
 */
function connectWebSocket(url, { onData, onClose }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['binary'], { perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS });
    /** @type {(() => void) | undefined} */
    let drainListener;
    // Called when a send has reached the socket: the moment bufferedAmount can have dropped.
    const sent = () => {
      if (drainListener && ws.bufferedAmount < SEND_HIGH_WATER_BYTES) {
        const listener = drainListener;
        drainListener = undefined;
        listener();
      }
    };
    let open = false;
    ws.on('error', (err) => reject(err)); // before 'open' it says why, e.g. "Unexpected server response: 429"
    ws.on('close', (code, reason) => open && onClose?.(`WebSocket closed with ${code} ${reason.toString()}`.trim()));
    if (onData) ws.on('message', (/** @type {Buffer} */ data) => onData(data));
    ws.once('open', () => {
      open = true;
      resolve({
        openedAt: process.hrtime.bigint(),
        write(chunk) {
          ws.send(chunk, sent);
          return ws.bufferedAmount < SEND_HIGH_WATER_BYTES;
        },
        onDrain(listener) {
          drainListener = listener;
        },
        pause: () => ws.pause(),
        resume: () => ws.resume(),
        destroy: () => ws.terminate(),
      });
    });
  });
}

/**
 * @param {number} port
 * @param {Handlers} handlers
 * @returns {Promise<Connection>}
 */
function connectTcp(port, { onData, onClose }) {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, noDelay: true });
    socket.setTimeout(OPEN_TIMEOUT_MS, () => socket.destroy(new Error(`connect to 127.0.0.1:${port} timed out`)));
    let open = false;
    socket.on('error', (err) => reject(err));
    socket.on('close', () => open && onClose?.('TCP connection closed'));
    if (onData) socket.on('data', onData);
    socket.once('connect', () => {
      open = true;
      socket.setTimeout(0);
      resolve({
        openedAt: process.hrtime.bigint(),
        write: (chunk) => socket.write(chunk),
        onDrain: (listener) => socket.once('drain', listener),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        destroy: () => socket.destroy(),
      });
    });
  });
}
