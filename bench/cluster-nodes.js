/**
 * The cluster that the cluster scenario measures, all on 127.0.0.1: one redis-server, deskgate
 * nodes sharing it (one config, but for the node's name and listen port), and a client process
 * per node that opens and holds sessions through that node.
 *
 * The client processes are there for the open-files limit: the sessions of every node at once
 * need more sockets than one process may have, so each node's clients live in a process of
 * their own. Run as `node bench/cluster-nodes.js` with an IPC channel, this module is one:
 *   { id, cmd: 'admit', endpoint, count, inFlight } -> { id, seconds, opened, errors }
 *       open `count` sessions, `inFlight` at a time, each with a fresh presence key, each
 *       closed as soon as ServerInit is in
 *   { id, cmd: 'hold', endpoint, count, inFlight }  -> { id, seconds, opened, errors }
 *       open `count` sessions that exchange one 16-byte echo each, and keep them open
 *   { id, cmd: 'count' }                            -> { id, open, lost } the held sessions, and those that closed by themselves
 *   { id, cmd: 'release' }                          -> { id, open, lost } the same, then every held session is closed
 * `errors` is [message, how many] for each reason a session failed. It exits when its parent goes away.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, openEchoed } from './client.js';
import { startProcess } from './processes.js';
import { BENCH_ACCESS, freePort, pollUntil, startDeskgateProcess } from './relays.js';
import { withTimeout } from './timeout.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
/** Every key and channel of the benchmark's cluster starts with it (`cluster.keyPrefix`). */
export const KEY_PREFIX = 'bench:';
const CLIENTS_JS = fileURLToPath(import.meta.url);

const REDIS_TIMEOUT_MS = 2_000;
/** An IPC request's deadline: this much, plus a little per session it opens. */
const REQUEST_TIMEOUT_MS = 30_000;
const REQUEST_MS_PER_SESSION = 10;
/** Distinct problems a node's log keeps, with a count each. */
const MAX_PROBLEMS = 20;

/** @typedef {{ user: string, groups?: string[] }} Person who a session says it is (auth mode header, from a trusted proxy) */
/** @typedef {import('./relays.js').Endpoint & { kind: 'ws' }} WsEndpoint */

// ---------------------------------------------------------------------------------------------
// redis-server

/**
 * @typedef {object} RedisServer
 * @property {string} url
 * @property {number} pid
 * @property {(...args: string[]) => Promise<string | number>} command one command, its reply (an integer or a string)
 * @property {() => Promise<void>} stop
 */

/** @returns {Promise<RedisServer>} */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-bench-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const proc = startProcess('redis-server', REDIS_SERVER, args);
  const stop = async () => {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const command = (/** @type {string[]} */ ...words) => redisCommand(port, words);
  try {
    await pollUntil(
      () =>
        command('PING').then(
          (reply) => reply === 'PONG',
          () => false,
        ),
      proc,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis://127.0.0.1:${port}`, pid: proc.pid, command, stop };
}

/**
 * One command over a connection of its own (RESP2): enough for PING, HLEN, EXISTS, INFO.
 * @param {number} port
 * @param {string[]} words
 * @returns {Promise<string | number>}
 */
function redisCommand(port, words) {
  const encoded = `*${words.length}\r\n${words.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`;
  const reply = new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`redis ${words[0]}: connection closed before the reply`)));
    socket.once('connect', () => socket.write(encoded));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const parsed = parseReply(received);
      if (parsed === undefined) return;
      socket.destroy();
      if (parsed instanceof Error) reject(parsed);
      else resolve(parsed);
    });
  });
  return withTimeout(/** @type {Promise<string | number>} */ (reply), REDIS_TIMEOUT_MS, `redis ${words[0]}`);
}

/** A complete simple, error, integer or bulk reply; undefined while more is to come. @param {Buffer} bytes */
function parseReply(bytes) {
  const end = bytes.indexOf('\r\n');
  if (end < 0) return undefined;
  const line = bytes.subarray(1, end).toString('utf8');
  switch (String.fromCharCode(bytes[0] ?? 0)) {
    case '+':
      return line;
    case '-':
      return new Error(`redis: ${line}`);
    case ':':
      return Number(line);
    case '$': {
      const length = Number(line);
      if (length < 0) return '';
      return bytes.length >= end + 2 + length + 2 ? bytes.subarray(end + 2, end + 2 + length).toString('utf8') : undefined;
    }
    default:
      return new Error(`redis: unexpected reply ${JSON.stringify(bytes.subarray(0, 40).toString('latin1'))}`);
  }
}

// ---------------------------------------------------------------------------------------------
// deskgate nodes

/**
 * What a node logged at level warn and above, by message (and error code): the scenario
 * reports it, part by part.
 * @typedef {object} NodeLog
 * @property {() => Map<string, number>} take the problems since the last call, and start counting anew
 */

/**
 * @typedef {object} Node
 * @property {string} name its cluster.node
 * @property {number} pid
 * @property {string} base ws://127.0.0.1:PORT
 * @property {NodeLog} log
 * @property {(desktop: string, person: Person) => WsEndpoint} endpoint a session of the desktop, as that person
 * @property {() => Promise<void>} stop
 */

/**
 * The config of every node: authentication by header from a trusted proxy (127.0.0.1) and the
 * session limits raised far above what the scenario opens, as bench/relays.js does for one
 * node, and the cluster on `redisUrl`.
 * @param {string} node
 * @param {string} redisUrl
 * @param {object[]} desktops
 */
function nodeConfig(node, redisUrl, desktops) {
  const config = { ...BENCH_ACCESS, cluster: { redis: redisUrl, node, keyPrefix: KEY_PREFIX }, desktops };
  return `${JSON.stringify(config, null, 2)}\n`; // JSON is YAML
}

/**
 * Start one node and wait until it is ready (GET /readyz: serving, and its Redis reached).
 * @param {string} name
 * @param {string} redisUrl
 * @param {object[]} desktops
 * @param {string[]} nodeArgs
 * @returns {Promise<Node>}
 */
export async function startNode(name, redisUrl, desktops, nodeArgs) {
  const { port, proc, stop } = await startDeskgateProcess(`deskgate ${name}`, () => nodeConfig(name, redisUrl, desktops), nodeArgs, '/readyz');
  const log = watchLog(proc);
  const base = `ws://127.0.0.1:${port}`;
  return {
    name,
    pid: proc.pid,
    base,
    log,
    endpoint: (desktop, { user, groups = [] }) => ({
      kind: 'ws',
      url: `${base}/websockify?desktop=${encodeURIComponent(desktop)}`,
      headers: { 'x-forwarded-user': user, 'x-forwarded-groups': groups.join(',') },
    }),
    stop,
  };
}

/**
 * Count what a node logs at warn and above (pino JSON lines, level ≥ 40); anything else it
 * writes (a stack trace, a crash) counts as well, line by line.
 * @param {import('./processes.js').Proc} proc
 * @returns {NodeLog}
 */
function watchLog(proc) {
  /** @type {Map<string, number>} */
  let problems = new Map();
  let partial = '';
  /** @param {string} line */
  const count = (line) => {
    if (!line.trim()) return;
    let key;
    try {
      const entry = JSON.parse(line);
      if (entry.level < 40) return;
      key = [entry.msg, entry.error, entry.err?.message].filter(Boolean).join(': ');
    } catch {
      key = line.slice(0, 200);
    }
    if (problems.has(key) || problems.size < MAX_PROBLEMS) problems.set(key, (problems.get(key) ?? 0) + 1);
  };
  /** @param {Buffer} chunk */
  const onOutput = (chunk) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) count(line);
  };
  proc.child.stdout?.on('data', onOutput);
  proc.child.stderr?.on('data', onOutput);
  return {
    take() {
      const taken = problems;
      problems = new Map();
      return taken;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The whole cluster

/**
 * @typedef {object} Cluster
 * @property {RedisServer} redis
 * @property {{ node: Node, clients: Clients }[]} members each node, and the client process that reaches it
 */

/**
 * Start redis-server, a node per name (all with the same desktops) and a client process per
 * node; hand them to `use`, and stop them all whatever happens.
 * @template T
 * @param {{ names: string[], desktops: object[], nodeArgs: string[], signal?: AbortSignal }} options
 * @param {(cluster: Cluster) => Promise<T>} use
 * @returns {Promise<T>}
 */
export async function withCluster({ names, desktops, nodeArgs, signal }, use) {
  /** @type {(() => Promise<void>)[][]} stopped last group first: clients, nodes, redis-server */
  const groups = [];
  try {
    signal?.throwIfAborted(); // the scenario timed out: start nothing new
    const redis = await startRedis();
    groups.push([redis.stop]);
    signal?.throwIfAborted();
    const started = await Promise.allSettled(names.map((name) => startNode(name, redis.url, desktops, nodeArgs)));
    const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    groups.push(nodes.map((node) => node.stop));
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    signal?.throwIfAborted();
    const members = nodes.map((node) => ({ node, clients: startClients(`clients of node ${node.name}`) }));
    groups.push(members.map(({ clients }) => clients.stop));
    return await use({ redis, members });
  } finally {
    for (const stops of groups.reverse()) await Promise.all(stops.map((stop) => stop()));
  }
}

// ---------------------------------------------------------------------------------------------
// The client processes, parent side

/** @typedef {{ seconds: number, opened: number, errors: [string, number][] }} Opened */
/** @typedef {{ open: number, lost: number }} Held */

/**
 * @typedef {object} Clients
 * @property {number} pid
 * @property {(endpoint: WsEndpoint, count: number, inFlight: number) => Promise<Opened>} admit
 * @property {(endpoint: WsEndpoint, count: number, inFlight: number) => Promise<Opened>} hold
 * @property {() => Promise<Held>} count
 * @property {() => Promise<Held>} release
 * @property {() => Promise<void>} stop
 */

/**
 * Start a client process (this module, run on its own).
 * @param {string} name
 * @returns {Clients}
 */
export function startClients(name) {
  const proc = startProcess(name, process.execPath, [CLIENTS_JS], { ipc: true });
  let nextId = 1;
  /** @type {Map<number, { resolve: (value: any) => void, reject: (err: Error) => void }>} */
  const pending = new Map();
  proc.child.on('message', (/** @type {any} */ message) => {
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiting?.reject(new Error(`${name}: ${message.error}`));
    else waiting?.resolve(message);
  });
  void proc.exited.then((how) => {
    for (const waiting of pending.values()) waiting.reject(new Error(`${name} exited (${how}): ${proc.outputTail()}`));
    pending.clear();
  });

  /** @param {object} req @param {number} sessions how many it opens, for its deadline */
  function call(req, sessions = 0) {
    const id = nextId++;
    const reply = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    proc.child.send({ id, ...req });
    return withTimeout(reply, REQUEST_TIMEOUT_MS + sessions * REQUEST_MS_PER_SESSION, `${name}: ${JSON.stringify(req)}`);
  }

  return {
    pid: proc.pid,
    admit: (endpoint, count, inFlight) => call({ cmd: 'admit', endpoint, count, inFlight }, count),
    hold: (endpoint, count, inFlight) => call({ cmd: 'hold', endpoint, count, inFlight }, count),
    count: () => call({ cmd: 'count' }),
    release: () => call({ cmd: 'release' }),
    stop: () => proc.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// The client process itself

/** @type {import('./client.js').Connection[]} */
const held = [];
/** Closed on purpose (release): their closing is not a loss. */
const released = new WeakSet();
/** Held sessions that closed without being released. */
let lost = 0;

/**
 * Run `open` `count` times, `inFlight` at a time; count the failures by reason.
 * @param {number} count
 * @param {number} inFlight
 * @param {() => Promise<void>} open
 * @returns {Promise<Omit<Opened, 'id'>>}
 */
async function openMany(count, inFlight, open) {
  /** @type {Map<string, number>} */
  const errors = new Map();
  let opened = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        await open();
        opened++;
      } catch (err) {
        const message = /** @type {Error} */ (err).message;
        errors.set(message, (errors.get(message) ?? 0) + 1);
      }
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, opened, errors: [...errors] };
}

/** As the viewer page opens a session: with a fresh presence key. @param {WsEndpoint} endpoint */
async function admitOne(endpoint) {
  const conn = await connect({ ...endpoint, url: `${endpoint.url}&view=${randomBytes(16).toString('base64url')}` });
  conn.destroy();
}

/**
 * Open one session, exchange one message, and keep it among the held ones; one that closes by
 * itself while held is counted lost.
 * @param {WsEndpoint} endpoint
 */
async function holdOne(endpoint) {
  /** @type {import('./client.js').Connection | undefined} */
  let conn;
  conn = await openEchoed(endpoint, () => {
    if (conn && !released.has(conn)) lost++;
  });
  held.push(conn);
}

/** @typedef {{ id: number, cmd: 'admit' | 'hold', endpoint: WsEndpoint, count: number, inFlight: number } | { id: number, cmd: 'count' | 'release' }} Request */

/** @param {Request} req */
async function answer(req) {
  try {
    if (req.cmd === 'admit') process.send?.({ id: req.id, ...(await openMany(req.count, req.inFlight, () => admitOne(req.endpoint))) });
    else if (req.cmd === 'hold') process.send?.({ id: req.id, ...(await openMany(req.count, req.inFlight, () => holdOne(req.endpoint))) });
    else if (req.cmd === 'count') process.send?.({ id: req.id, open: held.length - lost, lost });
    else if (req.cmd === 'release') {
      process.send?.({ id: req.id, open: held.length - lost, lost });
      for (const conn of held.splice(0)) {
        released.add(conn);
        conn.destroy();
      }
      lost = 0;
    } else throw new Error(`unknown command ${/** @type {{ cmd: string }} */ (req).cmd}`);
  } catch (err) {
    process.send?.({ id: req.id, error: /** @type {Error} */ (err).message });
  }
}

if (process.argv[1] === CLIENTS_JS) {
  process.on('message', (/** @type {unknown} */ message) => void answer(/** @type {Request} */ (message)));
  process.on('disconnect', () => process.exit(0));
}
