/**
 * The measuring client, one interface over two transports: a WebSocket (npm `ws`,
 * subprotocol "binary" as noVNC asks) for deskgate and websockify, a plain TCP socket for
 * the direct baseline. Scenarios only see `write`/`onDrain`/`pause`/`resume`/`destroy`.
 *
 * Over every transport the client first does the viewer's side of the RFB 3.8 handshake
 * (bench/rfb.js): version, security None (VNC authentication when the endpoint carries a
 * password and the server asks for it), SecurityResult, ClientInit shared, ServerInit. The
 * connection is handed over once ServerInit is in; from then on `onData` sees the payload
 * and `write` sends it. So deskgate, websockify and direct do the same handshake work before
 * anything is timed.
 */
import { connect as tcpConnect } from 'node:net';
import WebSocket from 'ws';
import { ByteQueue, viewHandshake } from './rfb.js';
import { withTimeout } from './timeout.js';

/** WebSocket sends stop when this much is buffered (the browser's bufferedAmount habit). */
export const SEND_HIGH_WATER_BYTES = 1024 * 1024;
/** Connecting and the whole RFB handshake. */
const OPEN_TIMEOUT_MS = 10_000;

/**
 * @typedef {object} Connection
 * @property {bigint} startedAt process.hrtime.bigint() just before the WebSocket or TCP connection was started
 * @property {bigint} openedAt process.hrtime.bigint() once the RFB handshake is done (ServerInit read): the session
 *   is ready, and every scenario times its payload from here, whichever the transport
 * @property {{ width: number, height: number, name: string }} desktop from ServerInit
 * @property {(chunk: Buffer) => boolean} write false: wait for `onDrain` before writing more
 * @property {(listener: () => void) => void} onDrain called once when writing may go on
 * @property {() => void} pause stop reading
 * @property {() => void} resume
 * @property {() => void} destroy cut the connection now
 */

/**
 * @typedef {object} Handlers
 * @property {(chunk: Buffer) => void} [onData] payload bytes (after ServerInit); the first ones may come before `connect` resolves
 * @property {(why: string) => void} [onClose] the connection ended (by either side) after the handshake
 */

/**
 * @param {import('./relays.js').Endpoint} endpoint
 * @param {Handlers} [handlers]
 * @returns {Promise<Connection>}
 */
export function connect(endpoint, handlers = {}) {
  return endpoint.kind === 'ws' ? connectWebSocket(endpoint, handlers) : connectTcp(endpoint, handlers);
}

/** @typedef {{ desktop: { width: number, height: number, name: string }, at: bigint }} Ready the handshake done, and when */

/**
 * The part both transports share: the bytes that arrive go to the handshake until ServerInit,
 * then (with whatever came after it) to `onData`.
 * @param {(bytes: Buffer) => void} send
 * @param {string | undefined} password
 * @param {Handlers} handlers
 */
function rfbSession(send, password, { onData }) {
  const queue = new ByteQueue();
  let ready = false;
  return {
    /** @param {Buffer} chunk */
    received(chunk) {
      if (ready) onData?.(chunk);
      else queue.push(chunk);
    },
    /** @param {string} why */
    failed(why) {
      queue.fail(new Error(why));
    },
    /** @returns {Promise<Ready>} */
    async handshake() {
      const desktop = await viewHandshake({ read: (n) => queue.read(n), write: send }, password);
      const at = process.hrtime.bigint();
      ready = true;
      const rest = queue.rest(); // payload that came with ServerInit: before any later chunk
      if (rest.length > 0) onData?.(rest);
      return { desktop, at };
    },
    get ready() {
      return ready;
    },
  };
}

/**
 * @param {Extract<import('./relays.js').Endpoint, { kind: 'ws' }>} endpoint
 * @param {Handlers} handlers
 * @returns {Promise<Connection>}
 */
function connectWebSocket(endpoint, handlers) {
  const startedAt = process.hrtime.bigint();
  const ws = new WebSocket(endpoint.url, ['binary'], { perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS, headers: endpoint.headers });
  const rfb = rfbSession((bytes) => ws.send(bytes), endpoint.password, handlers);
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
  ws.on('message', (/** @type {Buffer} */ data) => rfb.received(data));
  const opened = new Promise((resolve, reject) => {
    ws.on('error', (err) => {
      reject(err); // before 'open' it says why, e.g. "Unexpected server response: 429"
      rfb.failed(err.message);
    });
    ws.once('open', resolve);
  });
  ws.on('close', (code, reason) => {
    const why = `WebSocket closed with ${code} ${reason.toString()}`.trim();
    if (rfb.ready) handlers.onClose?.(why);
    else rfb.failed(`${why} (before ServerInit)`);
  });
  return handOver(
    (async () => {
      await opened;
      return rfb.handshake();
    })(),
    () => ws.terminate(),
    ({ desktop, at }) => ({
      startedAt,
      openedAt: at,
      desktop,
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
    }),
    endpoint.url,
  );
}

/**
 * @param {Extract<import('./relays.js').Endpoint, { kind: 'tcp' }>} endpoint
 * @param {Handlers} handlers
 * @returns {Promise<Connection>}
 */
function connectTcp(endpoint, handlers) {
  const startedAt = process.hrtime.bigint();
  const socket = tcpConnect({ host: '127.0.0.1', port: endpoint.port, noDelay: true });
  const rfb = rfbSession((bytes) => socket.write(bytes), endpoint.password, handlers);
  socket.on('data', (chunk) => rfb.received(chunk));
  const opened = new Promise((resolve, reject) => {
    socket.on('error', (err) => {
      reject(err);
      rfb.failed(err.message);
    });
    socket.once('connect', resolve);
  });
  socket.on('close', () => {
    if (rfb.ready) handlers.onClose?.('TCP connection closed');
    else rfb.failed('TCP connection closed before ServerInit');
  });
  return handOver(
    (async () => {
      await opened;
      return rfb.handshake();
    })(),
    () => socket.destroy(),
    ({ desktop, at }) => ({
      startedAt,
      openedAt: at,
      desktop,
      write: (chunk) => socket.write(chunk),
      onDrain: (listener) => socket.once('drain', listener),
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      destroy: () => socket.destroy(),
    }),
    `127.0.0.1:${endpoint.port}`,
  );
}

/**
 * Wait for the handshake under the open deadline; on failure cut the connection.
 * @param {Promise<Ready>} handshake
 * @param {() => void} destroy
 * @param {(ready: Ready) => Connection} connection
 * @param {string} where
 * @returns {Promise<Connection>}
 */
async function handOver(handshake, destroy, connection, where) {
  try {
    return connection(await withTimeout(handshake, OPEN_TIMEOUT_MS, `connect to ${where} and RFB handshake`));
  } catch (err) {
    destroy();
    throw err;
  }
}

/** The message openEchoed exchanges: 16 bytes, as small as an RFB event. */
const ECHO_MESSAGE = Buffer.alloc(16, 0x43);
/** Opening a session and its echo, when many open at once. */
const ECHO_TIMEOUT_MS = 15_000;

/**
 * Open a session to an echo target and exchange one 16-byte message: the session works end to
 * end. Resolves with the open connection; `onClose` hears of its end, whenever that comes.
 * @param {import('./relays.js').Endpoint} endpoint
 * @param {(why: string) => void} [onClose]
 * @returns {Promise<Connection>}
 */
export async function openEchoed(endpoint, onClose = () => {}) {
  /** @type {Connection | undefined} */
  let conn;
  try {
    return await withTimeout(
      new Promise((resolve, reject) => {
        let echoed = 0;
        connect(endpoint, {
          onData(chunk) {
            echoed += chunk.length;
            if (echoed === ECHO_MESSAGE.length) resolve(/** @type {Connection} */ (conn));
          },
          onClose(why) {
            onClose(why);
            reject(new Error(why));
          },
        }).then((opened) => {
          conn = opened;
          conn.write(ECHO_MESSAGE);
        }, reject);
      }),
      ECHO_TIMEOUT_MS,
      'session open + echo',
    );
  } catch (err) {
    conn?.destroy();
    throw err;
  }
}
