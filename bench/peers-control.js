/**
 * The parent's handle on bench/peers.js: start the process, create sources, sinks and echo
 * servers in it (each an RFB 3.8 server up to ServerInit), and wait for its `sink-done` reports.
 */
import { fileURLToPath } from 'node:url';
import { startProcess } from './processes.js';
import { withTimeout } from './timeout.js';

const PEERS_JS = fileURLToPath(new URL('./peers.js', import.meta.url));
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * @typedef {object} Peers
 * @property {number} pid
 * @property {(kind: 'source' | 'sink' | 'echo', bytes?: number, password?: string) => Promise<number>} listen the new
 *   server's port; with a password it requires VNC authentication with it (bench/rfb.js)
 * @property {(port: number, bytes: number) => Promise<void>} expect the sink on `port` reports once this much arrived
 * @property {(port: number, timeoutMs: number) => Promise<bigint>} sinkDone resolves with process.hrtime.bigint() at the report
 * @property {() => Promise<void>} stop
 */

/** @returns {Peers} */
export function startPeers() {
  const proc = startProcess('peers', process.execPath, [PEERS_JS], { ipc: true });
  let nextId = 1;
  /** @type {Map<number, { resolve: (value: any) => void, reject: (err: Error) => void }>} */
  const pending = new Map();
  /** @type {Map<number, (at: bigint) => void>} */
  const sinkWaiters = new Map();

  proc.child.on('message', (/** @type {any} */ message) => {
    if (message.event === 'sink-done') {
      const at = process.hrtime.bigint();
      sinkWaiters.get(message.port)?.(at);
      sinkWaiters.delete(message.port);
      return;
    }
    const request = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) request?.reject(new Error(`peers: ${message.error}`));
    else request?.resolve(message);
  });
  void proc.exited.then((how) => {
    for (const request of pending.values()) request.reject(new Error(`peers exited (${how}): ${proc.outputTail()}`));
    pending.clear();
  });

  /** @param {object} request @returns {Promise<any>} */
  function call(request) {
    const id = nextId++;
    const reply = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    proc.child.send({ id, ...request });
    return withTimeout(reply, REQUEST_TIMEOUT_MS, `peers: ${JSON.stringify(request)}`);
  }

  return {
    pid: proc.pid,
    listen: async (kind, bytes = 0, password = undefined) => (await call({ cmd: 'listen', kind, bytes, password })).port,
    expect: async (port, bytes) => {
      await call({ cmd: 'expect', port, bytes });
    },
    sinkDone: (port, timeoutMs) =>
      withTimeout(new Promise((resolve) => sinkWaiters.set(port, resolve)), timeoutMs, `sink on port ${port}: waiting for all bytes`),
    stop: () => proc.stop(),
  };
}

/**
 * Start the peers process, hand it to `use`, and stop it whatever happens.
 * @template T
 * @param {(peers: Peers) => Promise<T>} use
 * @returns {Promise<T>}
 */
export async function withPeers(use) {
  const peers = startPeers();
  try {
    return await use(peers);
  } finally {
    await peers.stop();
  }
}
