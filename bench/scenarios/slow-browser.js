/**
 * Scenario 5: a slow browser. After the RFB handshake and the client's first
 * FramebufferUpdateRequest, the VNC side floods (1 GiB, far more than will be read) while
 * the client reads at about 2 MB/s: every tick it resumes if it is behind that schedule and
 * pauses as soon as it is ahead. The relay's resident memory is sampled before the session
 * opens and every 100 ms during it; its growth must stay bounded by the back-pressure.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { treeRssBytes, waitForNoChildren } from '../processes.js';
import { alternate, withRelays } from '../relays.js';
import { goal, summarize } from '../report.js';
import { GiB, MB, MiB } from '../stats.js';
import { FRAMEBUFFER_UPDATE_REQUEST } from '../rfb.js';

const READ_RATE = 2 * MB; // bytes per second
const TICK_MS = 20;
const SAMPLE_MS = 100;

/**
 * @param {import('../relays.js').Relay} relay
 * @param {number} seconds
 */
async function slowSession(relay, seconds) {
  const pid = /** @type {number} */ (relay.pid('flood'));
  await waitForNoChildren(pid, 10_000);
  const before = treeRssBytes(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, treeRssBytes(pid))), SAMPLE_MS);
  let received = 0;
  /** @type {string | undefined} */
  let closed;
  let paused = false;
  let start = Date.now();
  const allowed = () => ((Date.now() - start) / 1000) * READ_RATE;
  /** @type {import('../client.js').Connection | undefined} */
  let conn;
  try {
    conn = await connect(relay.endpoint('flood'), {
      onData(chunk) {
        received += chunk.length;
        // Bytes may arrive before `conn` is set; the loop below pauses then.
        if (conn && !paused && received >= allowed()) {
          paused = true;
          conn.pause();
        }
      },
      onClose: (why) => (closed = why),
    });
    conn.write(FRAMEBUFFER_UPDATE_REQUEST); // the source floods once asked
    start = Date.now();
    try {
      while (Date.now() - start < seconds * 1000) {
        if (closed) throw new Error(`the session ended early after ${received} bytes: ${closed}`);
        const ahead = received >= allowed();
        if (ahead !== paused) {
          paused = ahead;
          if (ahead) conn.pause();
          else conn.resume();
        }
        await sleep(TICK_MS);
      }
    } finally {
      conn.destroy();
    }
    return { growth: peak - before, rate: received / seconds };
  } finally {
    clearInterval(sampler);
  }
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const seconds = ctx.quick ? 5 : 20;
  /** @type {import('../report.js').Rounds} */
  const growth = {};
  /** @type {import('../report.js').Rounds} */
  const rate = {};

  await withPeers(async (peers) => {
    const flood = await peers.listen('source', GiB);
    // No direct row: without a relay there is no process in between whose memory could grow.
    await withRelays(['deskgate', 'websockify'], { flood }, ctx, async (relays) => {
      await alternate(
        ctx.otherRounds,
        relays,
        async (relay, round) => {
          const result = await slowSession(relay, seconds);
          (growth[relay.name] ??= []).push(result.growth / MiB);
          (rate[relay.name] ??= []).push(result.rate / MB);
          ctx.log(`round ${round + 1} ${relay.name}: RSS +${(result.growth / MiB).toFixed(1)} MiB, read ${(result.rate / MB).toFixed(2)} MB/s`);
        },
        ctx.signal,
      );
    });
  });

  const metrics = [
    { label: 'RSS growth (MiB)', digits: 1, rounds: growth, summary: /** @type {const} */ ('max') },
    { label: 'RSS growth, median (MiB)', digits: 1, rounds: growth },
    { label: 'client read rate (MB/s)', digits: 2, rounds: rate, compare: false },
  ];
  const [worst] = metrics.map(summarize);
  return [
    {
      number: 5,
      title: 'Slow browser (VNC floods, browser reads ~2 MB/s)',
      setup: `1 GiB offered, ${seconds} s read at ~2 MB/s by pausing and resuming the client, RSS sampled every ${SAMPLE_MS} ms, ${ctx.otherRounds} rounds`,
      metrics,
      goals: [goal('slow browser: gateway RSS growth < 8 MiB (worst round)', (worst?.deskgate ?? Infinity) < 8, `${worst?.deskgate.toFixed(1)} MiB`)],
      notes: [
        'Growth is the highest sample minus the sample before the session opened. For websockify that includes the whole forked child process (RSS, shared pages counted).',
      ],
    },
  ];
}
