/**
 * Scenarios 9-11: deskgate as a cluster. Two nodes share one redis-server (bench/cluster-nodes.js),
 * each node's sessions come from a client process of its own, and the VNC side is an echo peer
 * process per node. Every desktop is on both nodes:
 * - 9, admission with coordination on: sessions opened through both nodes at once on a
 *   `controlled` desktop, each with a presence key (its record, the desktop's lease and the
 *   presence messages all go through Redis), to ServerInit and closed at once;
 * - 10, takeover across nodes: alice's controller session on node a and tom's on node b, both
 *   teachers with their presence channels; one takes control, and the time runs until both
 *   presence channels agree on the new roles; then the other takes it back;
 * - 11, sessions held together: both nodes fill up with sessions on a `shared` desktop each (one
 *   16-byte echo each), kept open past a refresh of their records, then closed.
 * Failures are counted, never thrown; what the nodes log at warn and above goes in the notes.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { connect } from '../client.js';
import { KEY_PREFIX, withCluster } from '../cluster-nodes.js';
import { withPeers } from '../peers-control.js';
import { fdCount, openFileLimits, rssBytes, treeCpuTimes } from '../processes.js';
import { goal, summarize } from '../report.js';
import { MiB, percentile } from '../stats.js';
import { withTimeout } from '../timeout.js';

const NODES = ['a', 'b'];
/** The controlled desktop of scenarios 9 and 10; scenario 11 has a shared desktop per node, `open-a` and `open-b`. */
const CONTROLLED = 'class';
const WORKER = { user: 'worker' };
/** Both may take control (the desktop's takeover rule names the group), so each can take it back. */
const ALICE = { user: 'alice', groups: ['teachers'] };
const TOM = { user: 'tom', groups: ['teachers'] };

const ADMITTED = { quick: 300, full: 3_000 };
const ADMISSION_ROUNDS = { quick: 3, full: 5 };
/** Untimed sessions per node first, so that every node's admission path is past its JIT warm-up. */
const ADMISSION_WARMUP = { quick: 300, full: 1_000 };
const GOAL_RATE = 1_000;
/** Handshakes in flight per node, as in the concurrency scenario. */
const IN_FLIGHT = 100;

const TAKEOVERS = { quick: 30, full: 200 };
const TAKEOVER_WARMUP = 10;
/** Between two takeovers: the notices and presence updates of the last one have gone out. */
const TAKEOVER_PAUSE_MS = 20;
const TAKEOVER_TIMEOUT_MS = 5_000;
const GOAL_TAKEOVER_P99_MS = 50;

const HELD = { quick: 500, full: 9_500 };
const GOAL_HELD = 19_000;
/** Longer than a third of the lease (15 s by default): every record is refreshed once while all are open. */
const HOLD_MS = 6_000;
/** Descriptors a process needs besides those of its sessions, with room to spare. */
const FD_MARGIN = 64;
const IDLE_TIMEOUT_MS = 60_000;
const RECORDS_TIMEOUT_MS = 10_000;

/** @typedef {import('../cluster-nodes.js').Cluster} Cluster */
/** @typedef {Record<string, import('../report.js').Rounds>} Rounds by metric */

/**
 * Sessions per node within the open-files limit: a node holds two descriptors per session (browser
 * and VNC side); its client process and its peers process one each.
 * @param {number} wanted
 * @param {(message: string) => void} log
 */
function sessionsWithinFdLimit(wanted, log) {
  const fit = Math.floor((openFileLimits().soft - FD_MARGIN) / 2);
  if (fit >= wanted) return wanted;
  log(`the open-files limit (${openFileLimits().soft}) lets a node hold ${fit} sessions, not ${wanted}: going on with ${fit}`);
  return fit;
}

// ---------------------------------------------------------------------------------------------
// Between measurements

/**
 * Descriptors of each node when it has no session.
 * @param {Cluster} cluster
 */
function idleFds(cluster) {
  return cluster.members.map(({ node }) => fdCount(node.pid));
}

/** @typedef {Cluster & { idle: number[] }} Idle the cluster, with each node's descriptors when it has no session */

/**
 * Wait until every node has let go of its sessions (back to its idle descriptors), then until
 * Redis has no session record left. Resolves with the records still there after
 * RECORDS_TIMEOUT_MS (0 when all went, as they should).
 * @param {Idle} cluster
 */
async function settle(cluster) {
  const { idle } = cluster;
  const deadline = Date.now() + IDLE_TIMEOUT_MS;
  for (const [i, { node }] of cluster.members.entries()) {
    while (fdCount(node.pid) > (idle[i] ?? 0) + 4) {
      if (Date.now() > deadline) throw new Error(`node ${node.name} still holds ${fdCount(node.pid)} descriptors after its sessions closed`);
      await sleep(50);
    }
  }
  const recordsDeadline = Date.now() + RECORDS_TIMEOUT_MS;
  let records = Number(await cluster.redis.command('HLEN', `${KEY_PREFIX}s`));
  while (records > 0 && Date.now() < recordsDeadline) {
    await sleep(50);
    records = Number(await cluster.redis.command('HLEN', `${KEY_PREFIX}s`));
  }
  return records;
}

/** User + system CPU seconds of a process so far. @param {number} pid */
function cpuSeconds(pid) {
  const { user, system } = treeCpuTimes(pid);
  return user + system;
}

/**
 * What the nodes logged at warn and above since the last call, for a note.
 * @param {Cluster} cluster
 */
function logNote(cluster) {
  const lines = cluster.members.flatMap(({ node }) => [...node.log.take()].map(([message, n]) => `node ${node.name}: ${n}× ${message}`));
  return `Node logs at warn and above during this part: ${lines.length ? lines.join('; ') : 'none'}.`;
}

/** @param {[string, number][]} errors @returns {string} */
function reasons(errors) {
  return errors.map(([message, n]) => `${n}× ${message}`).join('; ');
}

// ---------------------------------------------------------------------------------------------
// 9. Admission

/**
 * One timed round of admission through `members` at once (every node, or one alone while the
 * others stay in the cluster): each node's rate and CPU per session, the sessions' ends included.
 * @param {Idle} cluster
 * @param {Cluster['members']} members
 * @param {number} perNode
 */
async function admissionRound(cluster, members, perNode) {
  const cpuBefore = [...members.map(({ node }) => cpuSeconds(node.pid)), cpuSeconds(cluster.redis.pid)];
  const results = await Promise.all(members.map(({ node, clients }) => clients.admit(node.endpoint(CONTROLLED, WORKER), perNode, IN_FLIGHT)));
  const left = await settle(cluster); // the sessions' ends are part of their cost
  const cpuAfter = [...members.map(({ node }) => cpuSeconds(node.pid)), cpuSeconds(cluster.redis.pid)];
  const cpuMs = (/** @type {number} */ i, /** @type {number} */ sessions) => (((cpuAfter[i] ?? NaN) - (cpuBefore[i] ?? NaN)) * 1000) / sessions;
  const opened = results.reduce((sum, r) => sum + r.opened, 0);
  return {
    nodes: members.map(({ node }, i) => {
      const r = /** @type {import('../cluster-nodes.js').Opened} */ (results[i]);
      return { name: node.name, rate: r.opened / r.seconds, cpuMs: cpuMs(i, r.opened), errors: r.errors };
    }),
    rate: opened / Math.max(...results.map((r) => r.seconds)),
    failures: perNode * members.length - opened,
    redisCpuMs: cpuMs(members.length, opened),
    left,
  };
}

/**
 * Admission measured two ways, round after round: through every node at once, and through each
 * node alone while the other stays in the cluster (subscribed, told of every change). On this
 * machine's two cores the first shares them among two nodes, their clients, their peers and
 * redis-server; the second gives the admitting node about a core, as a node of its own has.
 * @param {import('../run.js').Context} ctx
 * @param {Idle} cluster
 * @param {number} perNode
 * @returns {Promise<import('../report.js').Section>}
 */
async function admission(ctx, cluster, perNode) {
  const rounds = ADMISSION_ROUNDS[ctx.quick ? 'quick' : 'full'];
  /** @type {Rounds} */
  const m = {};
  const record = (/** @type {string} */ key, /** @type {number} */ value) => ((m[key] ??= {}).deskgate ??= []).push(value);
  /** @type {Map<string, number>} */
  const failures = new Map();
  /** @param {Awaited<ReturnType<typeof admissionRound>>} result @param {string} way */
  const count = (result, way) => {
    for (const node of result.nodes) {
      record(`${way}rate-${node.name}`, node.rate);
      record(`${way}cpu-${node.name}`, node.cpuMs);
      for (const [message, n] of node.errors) failures.set(`node ${node.name}: ${message}`, (failures.get(`node ${node.name}: ${message}`) ?? 0) + n);
    }
    record('failures', result.failures);
    record('left', result.left);
    return result.nodes.map((node) => `node ${node.name} ${node.rate.toFixed(0)}/s at ${node.cpuMs.toFixed(2)} ms CPU each`).join(', ');
  };

  const warmup = ADMISSION_WARMUP[ctx.quick ? 'quick' : 'full'];
  await admissionRound(cluster, cluster.members, warmup);
  for (let round = 0; round < rounds; round++) {
    ctx.signal?.throwIfAborted();
    const together = await admissionRound(cluster, cluster.members, perNode);
    record('rate', together.rate);
    record('cpu-redis', together.redisCpuMs);
    const alone = [];
    for (const member of cluster.members) alone.push(count(await admissionRound(cluster, [member], perNode), 'alone-'));
    ctx.log(`admission round ${round + 1}: together ${count(together, '')}; alone ${alone.join(', ')}`);
  }

  const perNodeMetrics = (/** @type {string} */ way, /** @type {string} */ label) => [
    ...NODES.map((name) => ({ label: `node ${name} ${label}, new sessions per second`, digits: 0, rounds: m[`${way}rate-${name}`] ?? {} })),
    ...NODES.map((name) => ({ label: `node ${name} ${label}, CPU per session (ms)`, digits: 2, rounds: m[`${way}cpu-${name}`] ?? {} })),
  ];
  const metrics = [
    ...perNodeMetrics('alone-', 'alone'),
    ...perNodeMetrics('', 'with the other at once'),
    { label: 'both nodes at once, new sessions per second together', digits: 0, rounds: m.rate ?? {} },
    { label: 'redis-server, CPU per session (ms)', digits: 3, rounds: m['cpu-redis'] ?? {} },
    { label: 'failures', digits: 0, rounds: m.failures ?? {}, summary: /** @type {const} */ ('sum') },
    { label: 'session records left in Redis after a round', digits: 0, rounds: m.left ?? {}, summary: /** @type {const} */ ('max') },
  ];
  const median = (/** @type {string} */ key) => summarize({ label: '', digits: 0, rounds: m[key] ?? {} }).deskgate;
  const aloneRates = NODES.map((name) => median(`alone-rate-${name}`));
  const togetherRates = NODES.map((name) => median(`rate-${name}`));
  const failed = summarize(/** @type {import('../report.js').Metric} */ (metrics.find((metric) => metric.label === 'failures'))).deskgate;
  const perNodeText = (/** @type {number[]} */ rates) => rates.map((rate, i) => `node ${NODES[i]} ${rate.toFixed(0)}/s`).join(', ');
  return {
    number: 9,
    title: 'Cluster admission (new sessions per node, coordination through Redis on)',
    setup:
      `2 nodes and one redis-server; ${perNode.toLocaleString('en-US')} sessions per node and round on a controlled desktop, ` +
      `${IN_FLIGHT} in flight per node, each with a presence key, to ServerInit and closed; each round once through both nodes at once, ` +
      `then through each node alone; ${rounds} rounds after ${warmup.toLocaleString('en-US')} untimed per node, median`,
    columns: ['deskgate'],
    titles: { deskgate: 'deskgate, 2 nodes' },
    ratios: [],
    metrics,
    goals: [
      goal(
        `≥ ${GOAL_RATE.toLocaleString('en-US')} new sessions/s per node with coordination on`,
        failed === 0 && Math.min(...aloneRates) >= GOAL_RATE,
        `each node alone (the other in the cluster): ${perNodeText(aloneRates)}; ${failed} failures; ` +
          `both at once, sharing ${availableParallelism()} cores with their clients: ${perNodeText(togetherRates)}`,
      ),
    ],
    notes: [
      "Each session registers its record (and presence key) in Redis, claims the desktop's lease (the first gets control, the rest view), announces the change to every node, and undoes all three when it closes.",
      `Alone: one node admits while the other stays in the cluster, subscribed to every change; the admitting node, its client process, its echo peers and redis-server share this machine's ${availableParallelism()} cores. ` +
        'At once: both nodes admit together, and two of everything share the same cores. The goal is read from the first, which gives the admitting node about the core it would have on a machine of its own; the second is what this one machine admits in all.',
      "CPU per session: the process's user + system seconds over the round, the sessions' ends included, ÷ the sessions it admitted (redis-server: ÷ all, both nodes at once). " +
        'A node that needs n ms of CPU per session cannot admit more than 1,000 ÷ n sessions per second on a core of its own.',
      ...(failures.size ? [`Failures: ${reasons([...failures])}.`] : []),
      logNote(cluster),
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// 10. Takeover across nodes

/**
 * A person on the desktop as the viewer page is: the RFB session opened with a presence key,
 * then its presence channel, open once its first presence is in; `role` is what its latest presence says.
 * @typedef {object} Viewer
 * @property {string} name who, and on which node
 * @property {() => string | undefined} role
 * @property {(listener: () => void) => () => void} onPresence returns the function that stops
 * @property {(type: string) => void} act sends an action, e.g. take-control
 * @property {() => void} close
 */

/**
 * @param {import('../cluster-nodes.js').Node} node
 * @param {import('../cluster-nodes.js').Person} person
 * @returns {Promise<Viewer>}
 */
async function openViewer(node, person) {
  const name = `${person.user} on node ${node.name}`;
  const key = randomBytes(16).toString('base64url');
  const endpoint = node.endpoint(CONTROLLED, person);
  const rfb = await connect({ ...endpoint, url: `${endpoint.url}&view=${key}` });
  const presence = new WebSocket(`${node.base}/presence?view=${key}`, { headers: endpoint.headers, perMessageDeflate: false });
  /** @type {string | undefined} */
  let role;
  /** @type {Set<() => void>} */
  const listeners = new Set();
  presence.on('error', () => {}); // before 'open' the wait below fails; later the 'close' that follows is enough
  presence.on('message', (data, isBinary) => {
    const message = isBinary ? undefined : JSON.parse(data.toString());
    if (message?.type !== 'presence') return;
    role = message.you.role;
    for (const listener of listeners) listener();
  });
  try {
    // Open once the first presence is in, as the viewer page shows it.
    const first = new Promise((resolve, reject) => {
      listeners.add(() => resolve(undefined));
      presence.once('error', reject);
      presence.once('close', (code) => reject(new Error(`closed with ${code}`)));
    });
    await withTimeout(first, TAKEOVER_TIMEOUT_MS, `${name}: presence channel, its first presence`);
    listeners.clear();
  } catch (err) {
    presence.terminate();
    rfb.destroy();
    throw err;
  }
  return {
    name,
    role: () => role,
    onPresence(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    act: (type) => presence.send(JSON.stringify({ type })),
    close() {
      presence.terminate();
      rfb.destroy();
    },
  };
}

/**
 * Resolves with process.hrtime.bigint() at the presence message after which every viewer has
 * its wanted role.
 * @param {[Viewer, string][]} wanted
 */
function untilRoles(wanted) {
  /** @type {(() => void)[]} */
  const stops = [];
  const settled = new Promise((resolve) => {
    const check = () => {
      if (wanted.every(([viewer, role]) => viewer.role() === role)) resolve(process.hrtime.bigint());
    };
    for (const [viewer] of wanted) stops.push(viewer.onPresence(check));
    check();
  });
  const what = wanted.map(([viewer, role]) => `${viewer.name} ${role}`).join(', ');
  return /** @type {Promise<bigint>} */ (withTimeout(settled, TAKEOVER_TIMEOUT_MS, `presence: ${what}`)).finally(() => {
    for (const stop of stops) stop();
  });
}

/**
 * @param {import('../run.js').Context} ctx
 * @param {Idle} cluster
 * @returns {Promise<import('../report.js').Section>}
 */
async function takeovers(ctx, cluster) {
  const count = TAKEOVERS[ctx.quick ? 'quick' : 'full'];
  const [a, b] = cluster.members.map(({ node }) => node);
  if (!a || !b) throw new Error('cluster: takeovers need two nodes');
  /** @type {Viewer[]} */
  const viewers = [];
  /** @type {Record<'fromA' | 'fromB', number[]>} milliseconds, by whose control was taken */
  const samples = { fromA: [], fromB: [] };
  try {
    const alice = await openViewer(a, ALICE);
    viewers.push(alice);
    // The desktop is free, so the first session with control gets it; should a lease of the last part linger, she takes it.
    if (alice.role() !== 'control') alice.act('take-control');
    await untilRoles([[alice, 'control']]);
    const tom = await openViewer(b, TOM);
    viewers.push(tom);
    await untilRoles([
      [alice, 'control'],
      [tom, 'view'],
    ]);
    for (let i = 0; i < TAKEOVER_WARMUP + count; i++) {
      ctx.signal?.throwIfAborted();
      // Even: tom (node b) takes control from alice (node a); odd: she takes it back.
      const [taker, taken] = i % 2 === 0 ? [tom, alice] : [alice, tom];
      const settled = untilRoles([
        [taker, 'control'],
        [taken, 'view'],
      ]);
      const sent = process.hrtime.bigint();
      taker.act('take-control');
      const ms = Number((await settled) - sent) / 1e6;
      if (i >= TAKEOVER_WARMUP) samples[i % 2 === 0 ? 'fromA' : 'fromB'].push(ms);
      await sleep(TAKEOVER_PAUSE_MS);
    }
  } finally {
    for (const viewer of viewers) viewer.close();
  }
  const all = [...samples.fromA, ...samples.fromB];
  const p99 = percentile(all, 99);
  ctx.log(`takeovers: p50 ${percentile(all, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${all.length}`);
  /** @param {string} label @param {number} value */
  const metric = (label, value) => ({ label, digits: 1, rounds: { deskgate: [value] } });
  return {
    number: 10,
    title: 'Takeover across nodes (take-control sent → both presence channels show the new roles)',
    setup:
      `2 nodes and one redis-server; alice's session on node a and tom's on node b on a controlled desktop, both teachers; ` +
      `${count} takeovers one at a time after ${TAKEOVER_WARMUP} untimed, alternately tom taking control and alice taking it back, ${TAKEOVER_PAUSE_MS} ms apart`,
    columns: ['deskgate'],
    titles: { deskgate: 'deskgate, 2 nodes' },
    ratios: [],
    metrics: [
      metric('tom (node b) takes it from alice (node a), p50 ms', percentile(samples.fromA, 50)),
      metric('tom (node b) takes it from alice (node a), p99 ms', percentile(samples.fromA, 99)),
      metric('alice (node a) takes it back from tom (node b), p50 ms', percentile(samples.fromB, 50)),
      metric('alice (node a) takes it back from tom (node b), p99 ms', percentile(samples.fromB, 99)),
      metric('all takeovers, p50 ms', percentile(all, 50)),
      metric('all takeovers, p99 ms', p99),
    ],
    goals: [
      goal(
        `takeover across nodes, p99 < ${GOAL_TAKEOVER_P99_MS} ms`,
        all.length ? p99 < GOAL_TAKEOVER_P99_MS : undefined,
        `p99 ${p99.toFixed(1)} ms, p50 ${percentile(all, 50).toFixed(1)} ms over ${all.length}`,
      ),
    ],
    notes: [
      'The time runs from sending {"type":"take-control"} on the taker\'s presence channel until the taker\'s presence says you.role control and the other\'s says view, whichever comes last; each sample is one takeover.',
      logNote(cluster),
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// 11. Sessions held together

/**
 * @param {import('../run.js').Context} ctx
 * @param {Idle} cluster
 * @param {number} perNode
 * @returns {Promise<import('../report.js').Section>}
 */
async function heldTogether(ctx, cluster, perNode) {
  /** @type {Rounds} */
  const m = {};
  const record = (/** @type {string} */ key, /** @type {number} */ value) => ((m[key] ??= {}).deskgate ??= []).push(value);
  /** @type {Map<string, number>} */
  const failures = new Map();
  for (let round = 0; round < ctx.otherRounds; round++) {
    ctx.signal?.throwIfAborted();
    const results = await Promise.all(cluster.members.map(({ node, clients }) => clients.hold(node.endpoint(`open-${node.name}`, WORKER), perNode, IN_FLIGHT)));
    try {
      await sleep(HOLD_MS);
      const counts = await Promise.all(cluster.members.map(({ clients }) => clients.count()));
      const open = counts.reduce((sum, c) => sum + c.open, 0);
      record('held', open);
      record('failures', perNode * results.length - results.reduce((sum, r) => sum + r.opened, 0));
      record(
        'lost',
        counts.reduce((sum, c) => sum + c.lost, 0),
      );
      record('seconds', Math.max(...results.map((r) => r.seconds)));
      record('records', Number(await cluster.redis.command('HLEN', `${KEY_PREFIX}s`)));
      for (const [i, { node }] of cluster.members.entries()) {
        record(`held-${node.name}`, counts[i]?.open ?? 0);
        record(`rss-${node.name}`, rssBytes(node.pid) / MiB);
        for (const [message, n] of results[i]?.errors ?? [])
          failures.set(`node ${node.name}: ${message}`, (failures.get(`node ${node.name}: ${message}`) ?? 0) + n);
      }
      record('redis', rssBytes(cluster.redis.pid) / MiB);
      ctx.log(
        `held round ${round + 1}: ${open}/${perNode * results.length} open together after ${HOLD_MS / 1000} s, ` +
          `${m.records?.deskgate?.at(-1)} records in Redis${failures.size ? `, failures: ${reasons([...failures])}` : ''}`,
      );
    } finally {
      await Promise.all(cluster.members.map(({ clients }) => clients.release()));
    }
    record('left', await settle(cluster));
  }

  const total = perNode * NODES.length;
  /** @type {import('../report.js').Metric[]} */
  const metrics = [
    { label: 'sessions held together', digits: 0, rounds: m.held ?? {} },
    ...NODES.map((name) => ({ label: `  of them on node ${name}`, digits: 0, rounds: m[`held-${name}`] ?? {} })),
    { label: 'failures to open', digits: 0, rounds: m.failures ?? {}, summary: 'sum' },
    { label: 'closed by themselves while held', digits: 0, rounds: m.lost ?? {}, summary: 'sum' },
    { label: 'time to open all (s)', digits: 2, rounds: m.seconds ?? {} },
    { label: 'session records in Redis while held', digits: 0, rounds: m.records ?? {} },
    { label: 'session records left in Redis after close', digits: 0, rounds: m.left ?? {}, summary: 'max' },
    ...NODES.map((name) => ({ label: `node ${name} RSS while held (MiB)`, digits: 1, rounds: m[`rss-${name}`] ?? {}, summary: /** @type {const} */ ('max') })),
    { label: 'redis-server RSS while held (MiB)', digits: 1, rounds: m.redis ?? {}, summary: 'max' },
  ];
  const [held, , , failed, lost] = metrics.map((metric) => summarize(metric).deskgate);
  const full = total >= GOAL_HELD;
  const capped = perNode < HELD[ctx.quick ? 'quick' : 'full'] ? ' (capped by the open-files limit)' : '';
  return {
    number: 11,
    title: 'Sessions two nodes hold together (one echo each, records in Redis)',
    setup:
      `2 nodes and one redis-server; ${perNode.toLocaleString('en-US')} sessions per node${capped} opened through both at once on a shared desktop each, ` +
      `${IN_FLIGHT} in flight per node, one 16-byte echo each, held ${HOLD_MS / 1000} s (past a refresh of every record), then closed; ` +
      `${ctx.otherRounds} rounds, failures summed, the rest median`,
    columns: ['deskgate'],
    titles: { deskgate: 'deskgate, 2 nodes' },
    ratios: [],
    metrics,
    goals: [
      goal(
        `${GOAL_HELD.toLocaleString('en-US')} sessions held together by two nodes with zero failures`,
        full ? held !== undefined && held >= GOAL_HELD && failed === 0 && lost === 0 : undefined,
        `${held?.toLocaleString('en-US')} held of ${total.toLocaleString('en-US')}, ${failed} failures, ${lost} closed while held` +
          `${full ? '' : `; ${GOAL_HELD.toLocaleString('en-US')} not tried${capped || ' (--quick)'}`}`,
      ),
    ],
    notes: [
      'Each node has its own client process and its own echo peer process: one process may not hold the sockets of every session (open-files limit).',
      ...(failures.size ? [`Failures: ${reasons([...failures])}.`] : []),
      logNote(cluster),
    ],
  };
}

// ---------------------------------------------------------------------------------------------

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const perNode = sessionsWithinFdLimit(HELD[ctx.quick ? 'quick' : 'full'], ctx.log);
  const admitted = ADMITTED[ctx.quick ? 'quick' : 'full'];
  // One echo peer process per node, for the same reason as the client processes.
  return withPeers((peersA) =>
    withPeers(async (peersB) => {
      const echoA = await peersA.listen('echo');
      const echoB = await peersB.listen('echo');
      const desktops = [
        { name: CONTROLLED, host: '127.0.0.1', port: await peersA.listen('echo'), sharing: 'controlled', takeover: { groups: ['teachers'] } },
        { name: 'open-a', host: '127.0.0.1', port: echoA },
        { name: 'open-b', host: '127.0.0.1', port: echoB },
      ];
      return withCluster({ names: NODES, desktops, nodeArgs: ctx.nodeArgs, signal: ctx.signal }, async (started) => {
        const cluster = { ...started, idle: idleFds(started) };
        const sections = [await admission(ctx, cluster, admitted), await takeovers(ctx, cluster)];
        await settle(cluster);
        sections.push(await heldTogether(ctx, cluster, perNode));
        return sections;
      });
    }),
  );
}
