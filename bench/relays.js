/**
 * The three ways the client reaches a target: through deskgate, through websockify, or
 * directly over TCP (the ceiling: no relay at all).
 *
 * A relay is started for a set of named targets (name -> a VNC peer on 127.0.0.1, see
 * bench/peers.js) and gives the client an endpoint per target and the pid whose memory and
 * CPU the scenarios measure. A target with a password is a peer that requires VNC
 * authentication: deskgate holds the password (the desktop's `vnc.passwordFile`, so the
 * gateway terminates the handshake and the client sees security None); through websockify and
 * directly the client answers the challenge itself. A target with `record` is a recorded desktop
 * in deskgate (the desktop's `record`, the files in the relay's `recordings` directory); the
 * others relay it as any target.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProcess } from './processes.js';

export const DESKGATE_CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const WEBSOCKIFY = '/usr/bin/websockify';

/** The users the client says it is (auth mode header): full control, and view-only on every desktop. */
const WORKER = 'worker';
const WATCHER = 'watcher';

/**
 * The config deskgate runs with. Authentication by header from a trusted proxy (127.0.0.1):
 * every session says who it is in `x-forwarded-user`, `worker` for full control, `watcher`
 * for a view-only session (every desktop's `viewOnly` names it), so one process serves the
 * plain and the view-only sessions alike. Every benchmark client comes from 127.0.0.1 as one
 * user, so the per-address and per-user session limits (100 and 20 by default) would refuse
 * most of the concurrency scenario: the limits are raised far above what any scenario opens.
 * A target with a password gets `vnc.passwordFile`, one with `record` the desktop's `record`, and
 * then the config `recordings.dir` (RECORDINGS_DIR in `dir`, created here). Everything else keeps
 * its default.
 * @param {Record<string, Target>} targets
 * @param {string} dir where the password files and the recordings go
 * @param {Record<string, unknown>} recordingSettings the rest of `recordings`
 */
function deskgateConfig(targets, dir, recordingSettings) {
  const desktops = Object.entries(targets).map(([name, target]) => {
    const { port, password, record } = typeof target === 'number' ? { port: target, password: undefined, record: undefined } : target;
    /** @type {Record<string, unknown>} */
    const desktop = { name, host: '127.0.0.1', port, viewOnly: { users: [WATCHER] } };
    if (password !== undefined) {
      const passwordFile = join(dir, `${name}.vnc-password`);
      writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
      desktop.vnc = { passwordFile };
    }
    if (record !== undefined) desktop.record = record;
    return desktop;
  });
  const recordings = Object.values(targets).some(records) ? join(dir, RECORDINGS_DIR) : undefined;
  if (recordings) mkdirSync(recordings);
  return `${JSON.stringify({ ...BENCH_ACCESS, ...(recordings && { recordings: { ...recordingSettings, dir: recordings } }), desktops }, null, 2)}\n`; // JSON is YAML
}

/** @param {Target} target */
function records(target) {
  return typeof target !== 'number' && target.record !== undefined;
}

/** deskgate's recordings directory, inside the process's temporary directory. */
const RECORDINGS_DIR = 'recordings';

/** Who every benchmark client is (see deskgateConfig): header auth from 127.0.0.1, limits far above any scenario. */
export const BENCH_ACCESS = {
  auth: { mode: 'header' },
  trustProxy: ['127.0.0.1/32'],
  limits: { maxSessions: 100_000, maxSessionsPerAddress: 100_000, maxSessionsPerUser: 100_000 },
};

/** How often readiness is polled: the start-up scenario times spawn -> ready with it. */
const POLL_INTERVAL_MS = 2;
const START_TIMEOUT_MS = 10_000;

/** @typedef {'deskgate' | 'websockify' | 'direct'} RelayName */
/**
 * A peer's port; with a password it requires VNC authentication; with `record` deskgate records
 * its sessions (the desktop's `record` setting: `true` or `{ onFailure, ... }`).
 * @typedef {number | { port: number, password?: string, record?: true | Record<string, unknown> }} Target
 */
/**
 * How the client reaches a target: `headers` go with the WebSocket request, `password` is
 * what the client answers a VNC authentication challenge with.
 * @typedef {{ kind: 'ws', url: string, headers?: Record<string, string>, password?: string }
 *   | { kind: 'tcp', port: number, password?: string }} Endpoint
 */
/** @typedef {{ viewOnly?: boolean }} EndpointOptions viewOnly: a view-only session (deskgate only) */
/**
 * How a relay is started: `nodeArgs` are deskgate's node flags (e.g. --cpu-prof), `recordings`
 * its config's `recordings` settings besides `dir` (used when a target records).
 * @typedef {{ nodeArgs?: string[], recordings?: Record<string, unknown> }} RelayOptions
 */

/**
 * @typedef {object} Relay
 * @property {RelayName} name
 * @property {(target: string, options?: EndpointOptions) => Endpoint} endpoint
 * @property {(target: string) => number | undefined} pid the process relaying that target; none for direct
 * @property {number} startupMs spawn to ready, for the last process started
 * @property {string} [recordings] deskgate's recordings directory, when a target records
 * @property {() => Promise<void>} stop
 */

/** @param {Target} target */
function portOf(target) {
  return typeof target === 'number' ? target : target.port;
}

/** @param {Target} target */
function passwordOf(target) {
  return typeof target === 'number' ? undefined : target.password;
}

/** @param {RelayName} relay @param {string} target @param {EndpointOptions} options */
function noViewOnly(relay, target, options) {
  if (options.viewOnly) throw new Error(`${relay}: no view-only sessions (target ${target})`);
}

/**
 * @param {RelayName} name
 * @param {Record<string, Target>} targets
 * @param {RelayOptions} [options]
 * @returns {Promise<Relay>}
 */
export function startRelay(name, targets, options = {}) {
  if (name === 'deskgate') return startDeskgate(targets, options);
  if (name === 'websockify') return startWebsockify(targets);
  return Promise.resolve(direct(targets));
}

/**
 * One deskgate process serving every target as a desktop of the same name (see deskgateConfig).
 * @param {Record<string, Target>} targets
 * @param {RelayOptions} options
 * @returns {Promise<Relay>}
 */
async function startDeskgate(targets, { nodeArgs = [], recordings = {} }) {
  const config = (/** @type {string} */ configDir) => deskgateConfig(targets, configDir, recordings);
  const { port, proc, stop, startupMs, dir } = await startDeskgateProcess('deskgate', config, nodeArgs, '/healthz');
  return {
    name: 'deskgate',
    startupMs,
    recordings: Object.values(targets).some(records) ? join(dir, RECORDINGS_DIR) : undefined,
    // No password: the gateway holds it and offers the client security None.
    endpoint: (target, options = {}) => ({
      kind: 'ws',
      url: `ws://127.0.0.1:${port}/websockify?desktop=${encodeURIComponent(target)}`,
      headers: { 'x-forwarded-user': options.viewOnly ? WATCHER : WORKER },
    }),
    pid: () => proc.pid,
    stop,
  };
}

/**
 * websockify serves one target per process and port, so one process per target.
 * @param {Record<string, Target>} targets
 * @returns {Promise<Relay>}
 */
async function startWebsockify(targets) {
  /** @type {Map<string, { port: number, password: string | undefined, proc: import('./processes.js').Proc }>} */
  const byTarget = new Map();
  let startupMs = NaN;
  const stop = () => Promise.all([...byTarget.values()].map(({ proc }) => proc.stop())).then(() => {});
  try {
    for (const [name, target] of Object.entries(targets)) {
      const port = await freePort();
      const started = process.hrtime.bigint();
      const proc = startProcess('websockify', WEBSOCKIFY, [`127.0.0.1:${port}`, `127.0.0.1:${portOf(target)}`]);
      byTarget.set(name, { port, password: passwordOf(target), proc });
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
    endpoint: (target, options = {}) => {
      noViewOnly('websockify', target, options);
      const { port, password } = entry(target);
      return { kind: 'ws', url: `ws://127.0.0.1:${port}/`, password };
    },
    pid: (target) => entry(target).proc.pid,
    stop,
  };
}

/**
 * @param {Record<string, Target>} targets
 * @returns {Relay}
 */
function direct(targets) {
  return {
    name: 'direct',
    startupMs: NaN,
    endpoint: (target, options = {}) => {
      noViewOnly('direct', target, options);
      const found = targets[target];
      if (found === undefined) throw new Error(`direct: unknown target ${target}`);
      return { kind: 'tcp', port: portOf(found), password: passwordOf(found) };
    },
    pid: () => undefined,
    stop: async () => {},
  };
}

/**
 * Start `node dist/cli.js` with the config `configText(dir)` writes (its files go in `dir`), on a
 * free port, logging at warn, and wait until `readyPath` answers 200; stop() also removes `dir`
 * (returned as `dir`).
 * @param {string} label the process's name in the run's output
 * @param {(dir: string) => string} configText
 * @param {string[]} nodeArgs e.g. --cpu-prof
 * @param {'/healthz' | '/readyz'} readyPath
 */
export async function startDeskgateProcess(label, configText, nodeArgs, readyPath) {
  const port = await freePort();
  const configDir = mkdtempSync(join(tmpdir(), 'deskgate-bench-'));
  const config = join(configDir, 'deskgate.yaml');
  writeFileSync(config, configText(configDir));
  const started = process.hrtime.bigint();
  const args = [...nodeArgs, DESKGATE_CLI, '--config', config, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'];
  const proc = startProcess(label, process.execPath, args);
  const stop = async () => {
    await proc.stop();
    rmSync(configDir, { recursive: true, force: true });
  };
  try {
    await pollUntil(() => answersOk(port, readyPath), proc);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, proc, stop, dir: configDir, startupMs: Number(process.hrtime.bigint() - started) / 1e6 };
}

/**
 * Poll every POLL_INTERVAL_MS until `ready()` resolves true; fail if the process exits or
 * START_TIMEOUT_MS passes.
 * @param {() => Promise<boolean>} ready
 * @param {import('./processes.js').Proc} proc
 */
export async function pollUntil(ready, proc) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await ready())) {
    if (!proc.running()) throw new Error(`${proc.name} exited during start-up (${await proc.exited}): ${proc.outputTail()}`);
    if (Date.now() > deadline) throw new Error(`${proc.name} not ready after ${START_TIMEOUT_MS} ms: ${proc.outputTail()}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** GET `path` answers 200. @param {number} port @param {string} path @returns {Promise<boolean>} */
function answersOk(port, path) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 1000 }, (res) => {
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
 * @param {Record<string, Target>} targets
 * @param {RelayOptions & { signal?: AbortSignal }} options
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

/** A target's twin that requires VNC authentication (same kind and size) is named `${target}${AUTH_TWIN}`. */
export const AUTH_TWIN = '-auth';
/** A target's twin that deskgate records (`record: true`, same peer) is named `${target}${RECORD_TWIN}`. */
export const RECORD_TWIN = '-rec';

/**
 * One column of a report: a relay, reached one way.
 * @typedef {object} Way
 * @property {import('./report.js').Column} column
 * @property {Relay} relay
 * @property {(target: string) => Endpoint} endpoint
 * @property {(target: string) => number | undefined} pid the process relaying that target
 */

/**
 * The columns a scenario measures: every relay as a plain session, and deskgate also in the
 * variants asked for, all in the same deskgate process:
 * - view-only: a session of the user whom the desktop's `viewOnly` names (the gateway filters
 *   browser -> VNC messages);
 * - gateway-auth: the target's AUTH_TWIN, a peer requiring VNC authentication whose password
 *   deskgate holds (the gateway terminates the handshake); the scenario must create the twin;
 * - recorded: the target's RECORD_TWIN, a desktop with `record: true` (the files go to the
 *   relay's `recordings` directory); the scenario must create the twin and remove the files.
 * @param {Relay[]} relays
 * @param {('view-only' | 'gateway-auth' | 'recorded')[]} variants
 * @returns {Way[]}
 */
export function ways(relays, variants) {
  return relays.flatMap((relay) => {
    /** @type {Way[]} */
    const all = [{ column: relay.name, relay, endpoint: (target) => relay.endpoint(target), pid: (target) => relay.pid(target) }];
    if (relay.name !== 'deskgate') return all;
    if (variants.includes('view-only')) {
      all.push({
        column: 'deskgate-view-only',
        relay,
        endpoint: (target) => relay.endpoint(target, { viewOnly: true }),
        pid: (target) => relay.pid(target),
      });
    }
    /** @type {[typeof variants[number], import('./report.js').Column, string][]} */
    const twins = [
      ['gateway-auth', 'deskgate-gateway-auth', AUTH_TWIN],
      ['recorded', 'deskgate-recorded', RECORD_TWIN],
    ];
    for (const [variant, column, twin] of twins) {
      if (!variants.includes(variant)) continue;
      all.push({ column, relay, endpoint: (target) => relay.endpoint(`${target}${twin}`), pid: (target) => relay.pid(`${target}${twin}`) });
    }
    return all;
  });
}
