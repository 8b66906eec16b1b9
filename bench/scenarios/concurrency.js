/**
 * Scenario 4: many sessions open at once. Each session connects through the relay to an
 * echo target and exchanges one 16-byte message; all stay open until the relay's memory
 * has been read at the plateau. Failures are counted, never thrown.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { openEchoed } from '../client.js';
import { withPeers } from '../peers-control.js';
import { fdCount, treePssBytes, treeRssBytes, waitForNoChildren } from '../processes.js';
import { alternate, withRelays } from '../relays.js';
import { goal, summarize } from '../report.js';
import { MiB } from '../stats.js';

const GOAL_SESSIONS = 10_000;
/**
 * websockify forks a whole Python process per connection: 10,000 of them would measure the
 * machine's process table rather than the relay. It gets a smaller count; compare it per
 * session.
 */
const WEBSOCKIFY_SESSIONS = { quick: 100, full: 200 };
/**
 * Handshakes in flight at once: enough that the client never waits on a single slow one,
 * below the relays' accept backlogs (websockify listens with 100, Node with 511).
 */
const IN_FLIGHT = 100;
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Open `count` sessions, IN_FLIGHT at a time.
 * @param {import('../relays.js').Endpoint} endpoint
 * @param {number} count
 */
async function openMany(endpoint, count) {
  /** @type {import('../client.js').Connection[]} */
  const open = [];
  /** @type {Map<string, number>} */
  const errors = new Map();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        open.push(await openEchoed(endpoint));
      } catch (err) {
        const message = /** @type {Error} */ (err).message;
        errors.set(message, (errors.get(message) ?? 0) + 1);
      }
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { open, seconds, failures: count - open.length, errors };
}

/**
 * Wait until the relay has let go of every session: deskgate back to its idle descriptors,
 * websockify without forked children.
 * @param {number | undefined} pid
 * @param {number} idleFds
 */
async function waitUntilIdle(pid, idleFds) {
  if (pid === undefined) return sleep(500); // direct: give the echo process a moment to close
  const deadline = Date.now() + IDLE_TIMEOUT_MS;
  while (fdCount(pid) > idleFds + 4) {
    if (Date.now() > deadline) throw new Error(`relay ${pid} still holds ${fdCount(pid)} descriptors after its sessions closed`);
    await sleep(50);
  }
  await waitForNoChildren(pid, IDLE_TIMEOUT_MS);
}

/** Highest memory over a second of samples, once the sessions are open. @param {number} pid */
async function plateau(pid) {
  let rss = 0;
  let pss = 0;
  await sleep(500);
  for (let i = 0; i < 5; i++) {
    rss = Math.max(rss, treeRssBytes(pid));
    pss = Math.max(pss, treePssBytes(pid));
    await sleep(200);
  }
  return { rss, pss };
}

/**
 * One round against a freshly started relay: warm up, read its idle memory, open `count`
 * sessions, read the plateau, close them all and read what is left.
 * @param {import('../relays.js').Relay} relay
 * @param {number} count
 */
async function measure(relay, count) {
  const pid = relay.pid('echo');
  const idleFds = pid ? fdCount(pid) : 0;
  const warm = await openMany(relay.endpoint('echo'), Math.min(200, count));
  for (const conn of warm.open) conn.destroy();
  await waitUntilIdle(pid, idleFds);
  const idle = pid ? { rss: treeRssBytes(pid), pss: treePssBytes(pid) } : { rss: NaN, pss: NaN };
  const result = await openMany(relay.endpoint('echo'), count);
  let peak;
  try {
    peak = pid ? await plateau(pid) : { rss: NaN, pss: NaN };
  } finally {
    for (const conn of result.open) conn.destroy();
    await waitUntilIdle(pid, idleFds);
  }
  await sleep(1000);
  return { ...result, idle, peak, closedRss: pid ? treeRssBytes(pid) : NaN };
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const counts = { deskgate: ctx.sessions, websockify: WEBSOCKIFY_SESSIONS[ctx.quick ? 'quick' : 'full'], direct: ctx.sessions };
  /** @type {Record<string, import('../report.js').Rounds>} */
  const m = {};
  /** @param {string} key @param {import('../relays.js').RelayName} relay @param {number} value */
  const record = (key, relay, value) => ((m[key] ??= {})[relay] ??= []).push(value);

  await withPeers(async (peers) => {
    const echo = await peers.listen('echo');
    // A fresh relay every round: memory a gateway keeps after earlier rounds would blur the plateau.
    /** @type {import('../relays.js').RelayName[]} */
    const names = ['deskgate', 'websockify', 'direct'];
    await alternate(
      ctx.otherRounds,
      names,
      (name, round) =>
        withRelays([name], { echo }, ctx, async ([relay]) => {
          if (!relay) return;
          const r = await measure(relay, counts[name]);
          const opened = r.open.length;
          record('sessions', name, opened);
          record('failures', name, r.failures);
          record('seconds', name, r.seconds);
          record('rate', name, opened / r.seconds);
          record('idle', name, r.idle.rss / MiB);
          record('rss', name, r.peak.rss / MiB);
          record('rssPer', name, (r.peak.rss - r.idle.rss) / opened / 1024);
          record('pss', name, r.peak.pss / MiB);
          record('pssPer', name, (r.peak.pss - r.idle.pss) / opened / 1024);
          record('closed', name, r.closedRss / MiB);
          const why = [...r.errors].map(([message, n]) => `${n}× ${message}`).join('; ');
          ctx.log(
            `round ${round + 1} ${name}: ${opened}/${counts[name]} open in ${r.seconds.toFixed(2)} s, ` +
              `RSS ${(r.idle.rss / MiB).toFixed(0)} -> ${(r.peak.rss / MiB).toFixed(0)} MiB${why ? `, failures: ${why}` : ''}`,
          );
        }),
      ctx.signal,
    );
  });

  /** @type {import('../report.js').Metric[]} */
  const metrics = [
    { label: 'sessions open at once', digits: 0, rounds: m.sessions ?? {}, compare: false },
    { label: 'failures', digits: 0, rounds: m.failures ?? {}, summary: 'sum', compare: false },
    { label: 'time to open all (s)', digits: 2, rounds: m.seconds ?? {}, compare: false },
    { label: 'sessions per second', digits: 0, rounds: m.rate ?? {} },
    { label: 'relay RSS idle, warmed up (MiB)', digits: 1, rounds: m.idle ?? {} },
    { label: 'relay RSS at plateau (MiB)', digits: 1, rounds: m.rss ?? {}, summary: 'max', compare: false },
    { label: 'RSS per session (KiB)', digits: 1, rounds: m.rssPer ?? {} },
    { label: 'relay PSS at plateau (MiB)', digits: 1, rounds: m.pss ?? {}, summary: 'max', compare: false },
    { label: 'PSS per session (KiB)', digits: 1, rounds: m.pssPer ?? {} },
    { label: 'relay RSS 1 s after all closed (MiB)', digits: 1, rounds: m.closed ?? {} },
  ];
  const [, failures, , rate, , rss, rssPer] = metrics.map(summarize);
  const full = ctx.sessions >= GOAL_SESSIONS;
  // Short of the goal's count (open-files limit): add the missing sessions at the measured cost each.
  const extrapolated = (rss?.deskgate ?? NaN) + ((GOAL_SESSIONS - ctx.sessions) * (rssPer?.deskgate ?? NaN)) / 1024;
  const fdNote = ctx.sessions < ctx.sessionsWanted ? ' (capped by the open-files limit)' : '';
  return [
    {
      number: 4,
      title: 'Concurrency (sessions open at once, one echo each)',
      setup:
        `deskgate and direct ${ctx.sessions.toLocaleString('en-US')} sessions${fdNote}, websockify ${counts.websockify} ` +
        `(one forked process each), ${IN_FLIGHT} handshakes in flight, ${ctx.otherRounds} rounds, a freshly started relay each round; ` +
        'failures summed, plateau memory the highest round, the rest median',
      metrics,
      goals: [
        goal(
          `${GOAL_SESSIONS.toLocaleString('en-US')} concurrent sessions with zero failures`,
          full ? failures?.deskgate === 0 : undefined,
          `${failures?.deskgate} failures at ${ctx.sessions.toLocaleString('en-US')} sessions${full ? '' : `, not ${GOAL_SESSIONS.toLocaleString('en-US')}${fdNote}`}`,
        ),
        goal('≥ 1,000 new sessions/s', (rate?.deskgate ?? 0) >= 1000, `${rate?.deskgate.toFixed(0)} sessions/s`),
        goal(
          'gateway RSS < 300 MB (286 MiB) at the plateau',
          (full ? (rss?.deskgate ?? Infinity) : extrapolated) < 300e6 / MiB,
          full
            ? `${rss?.deskgate.toFixed(1)} MiB`
            : `${rss?.deskgate.toFixed(1)} MiB at ${ctx.sessions}, ≈ ${extrapolated.toFixed(1)} MiB at ${GOAL_SESSIONS} with the measured cost per session`,
        ),
      ],
      notes: [
        'Per-session figures are (plateau − idle) ÷ sessions. websockify RSS sums the parent and every forked child, counting pages they share copy-on-write once per process; PSS shares those pages out and is the fairer comparison.',
      ],
    },
  ];
}
