/**
 * The three ways the client reaches a target: through deskgate, through websockify, or
 * directly over TCP (the ceiling: no relay at all).
 *
 * A relay is started for a set of named targets (name -> port on 127.0.0.1) and gives the
 * client an endpoint per target and the pid whose memory and CPU the scenarios measure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProcess } from './processes.js';

export const DESKGATE_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const WEBSOCKIFY = '/usr/bin/websockify';

/**
 * The config file deskgate runs with. Every benchmark client comes from 127.0.0.1, so the
 * per-address session limit (100 by default) would refuse most of the concurrency scenario;
 * the limits are raised far above what any scenario opens. Everything else keeps its default.
 */
const DESKGATE_CONFIG = `limits:
  maxSessions: 100000
  maxSessionsPerAddress: 100000
`;

/** How often readiness is polled: the start-up scenario times spawn -> ready with it. */
const POLL_INTERVAL_MS = 2;
const START_TIMEOUT_MS = 10_000;

/** @typedef {'deskgate' | 'websockify' | 'direct'} RelayName */
/** @typedef {{ kind: 'ws', url: string } | { kind: 'tcp', port: number }} Endpoint */

/**
 * @typedef {object} Relay
 * @property {RelayName} name
 * @property {(target: string) => Endpoint} endpoint
 * @property {(target: string) => number | undefined} pid the process relaying that target; none for direct
 * @property {number} startupMs spawn to ready, for the last process started
 * @property {() => Promise<void>} stop
 */

/**
 * @param {RelayName} name
 * @param {Record<string, number>} targets
 * @param {{ nodeArgs?: string[] }} [options]
 * @returns {Promise<Relay>}
 */
export function startRelay(name, targets, options = {}) {
  if (name === 'deskgate') return startDeskgate(targets, options.nodeArgs ?? []);
  if (name === 'websockify') return startWebsockify(targets);
  return Promise.resolve(direct(targets));
}

/**
 * One deskgate process serving every target as a desktop of the same name.
 * @param {Record<string, number>} targets
 * @param {string[]} nodeArgs e.g. --cpu-prof
 * @returns {Promise<Relay>}
 */
async function startDeskgate(targets, nodeArgs) {
  const port = await freePort();
  const desktops = Object.entries(targets).flatMap(([name, target]) => ['--desktop', `${name}=127.0.0.1:${target}`]);
  const configDir = mkdtempSync(join(tmpdir(), 'deskgate-bench-'));
  const config = join(configDir, 'deskgate.yaml');
  writeFileSync(config, DESKGATE_CONFIG);
  const started = process.hrtime.bigint();
  const proc = startProcess('deskgate', process.execPath, [
    ...nodeArgs,
    DESKGATE_CLI,
    '--config',
    config,
    '--listen',
    `127.0.0.1:${port}`,
    ...desktops,
    '--log-level',
    'warn',
  ]);
  const stop = async () => {
    await proc.stop();
    rmSync(configDir, { recursive: true, force: true });
  };
  try {
    await pollUntil(() => healthy(port), proc);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: 'deskgate',
    startupMs: Number(process.hrtime.bigint() - started) / 1e6,
    endpoint: (target) => ({ kind: 'ws', url: `ws://127.0.0.1:${port}/websockify?desktop=${encodeURIComponent(target)}` }),
    pid: () => proc.pid,
    stop,
  };
}

/**
 * websockify serves one target per process and port, so one process per target.
 * @param {Record<string, number>} targets
 * @returns {Promise<Relay>}
 */
async function startWebsockify(targets) {
  /** @type {Map<string, { port: number, proc: import('./processes.js').Proc }>} */
  const byTarget = new Map();
  let startupMs = NaN;
  const stop = () => Promise.all([...byTarget.values()].map(({ proc }) => proc.stop())).then(() => {});
  try {
    for (const [name, target] of Object.entries(targets)) {
      const port = await freePort();
      const started = process.hrtime.bigint();
      const proc = startProcess('websockify', WEBSOCKIFY, [`127.0.0.1:${port}`, `127.0.0.1:${target}`]);
      byTarget.set(name, { port, proc });
      await pollUntil(() => accepts(port), proc);
      startupMs = Number(process.hrtime.bigint() - started) / 1e6;
    }
  } catch (err) {
    await stop();
    throw err;
  }
  /** @param {string} target */
  const entry = (target) => {
    const found = byTarget.get(target);
    if (!found) throw new Error(`websockify: no process for target ${target}`);
    return found;
  };
  return {
    name: 'websockify',
    startupMs,
    endpoint: (target) => ({ kind: 'ws', url: `ws://127.0.0.1:${entry(target).port}/` }),
    pid: (target) => entry(target).proc.pid,
    stop,
  };
}

/**
 * @param {Record<string, number>} targets
 * @returns {Relay}
 */
function direct(targets) {
  return {
    name: 'direct',
    startupMs: NaN,
    endpoint: (target) => {
      const port = targets[target];
      if (port === undefined) throw new Error(`direct: unknown target ${target}`);
      return { kind: 'tcp', port };
    },
    pid: () => undefined,
    stop: async () => {},
  };
}

/**
 * Poll every POLL_INTERVAL_MS until `ready()` resolves true; fail if the process exits or
 * START_TIMEOUT_MS passes.
 * @param {() => Promise<boolean>} ready
 * @param {import('./processes.js').Proc} proc
 */
async function pollUntil(ready, proc) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await ready())) {
    if (!proc.running()) throw new Error(`${proc.name} exited during start-up (${await proc.exited}): ${proc.outputTail()}`);
    if (Date.now() > deadline) throw new Error(`${proc.name} not ready after ${START_TIMEOUT_MS} ms: ${proc.outputTail()}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** GET /healthz answers 200. @param {number} port @returns {Promise<boolean>} */
function healthy(port) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The port accepts a TCP connection. @param {number} port @returns {Promise<boolean>} */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A port on 127.0.0.1 that was free a moment ago (the relay is told to listen on it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Start the named relays for the targets, hand them to `use`, and stop them whatever happens.
 * @template T
 * @param {RelayName[]} names
 * @param {Record<string, number>} targets
 * @param {{ nodeArgs?: string[], signal?: AbortSignal }} options
 * @param {(relays: Relay[]) => Promise<T>} use
 * @returns {Promise<T>}
 */
export async function withRelays(names, targets, options, use) {
  /** @type {Relay[]} */
  const relays = [];
  try {
    for (const name of names) {
      options.signal?.throwIfAborted(); // the scenario timed out: start nothing new
      relays.push(await startRelay(name, targets, options));
    }
    return await use(relays);
  } finally {
    await Promise.all(relays.map((relay) => relay.stop()));
  }
}

/**
 * Run `rounds` rounds, each measuring every relay once. The order rotates from round to
 * round so that no relay always runs first (on a warm or a cold machine).
 * @template T a relay, or a relay's name when each round starts its own
 * @param {number} rounds
 * @param {T[]} relays
 * @param {(relay: T, round: number) => Promise<void>} measure
 * @param {AbortSignal} [signal] stops the rounds when the scenario has timed out
 */
export async function alternate(rounds, relays, measure, signal) {
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < relays.length; i++) {
      signal?.throwIfAborted();
      await measure(/** @type {T} */ (relays[(i + round) % relays.length]), round);
    }
  }
}
