/**
 * Scenario 3: round-trip latency. After the RFB handshake, one 16-byte message at a time
 * through an echo target; the next one leaves when the whole echo is back. Percentiles per
 * round, then the median of each percentile across rounds.
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { alternate, withRelays } from '../relays.js';
import { goal, RELAYS, summarize } from '../report.js';
import { percentile } from '../stats.js';
import { withTimeout } from '../timeout.js';

const MESSAGE = Buffer.alloc(16, 0x42);
/** Untimed round trips first, so that every relay is past its JIT warm-up. */
const WARMUP_TRIPS = 3_000;
/** No single round trip on loopback should take this long; if one does, the relay is stuck. */
const TRIP_TIMEOUT_MS = 5_000;

/**
 * Round trips on one session (the handshake is not timed).
 * @param {import('../relays.js').Endpoint} endpoint
 * @param {number} trips
 * @returns {Promise<Float64Array>} microseconds per round trip
 */
export async function roundTrips(endpoint, trips) {
  let pending = 0;
  /** @type {() => void} */
  let echoed = () => {};
  /** @type {string | undefined} */
  let closed;
  const conn = await connect(endpoint, {
    onData(chunk) {
      pending -= chunk.length;
      if (pending <= 0) echoed();
    },
    onClose: (why) => (closed = why),
  });
  try {
    const samples = new Float64Array(trips);
    for (let i = 0; i < trips; i++) {
      if (closed) throw new Error(`connection ended after ${i} round trips: ${closed}`);
      const back = new Promise((resolve) => (echoed = () => resolve(undefined)));
      const start = process.hrtime.bigint();
      pending = MESSAGE.length;
      conn.write(MESSAGE);
      await withTimeout(back, TRIP_TIMEOUT_MS, `round trip ${i + 1}`);
      samples[i] = Number(process.hrtime.bigint() - start) / 1e3;
    }
    return samples;
  } finally {
    conn.destroy();
  }
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const trips = ctx.quick ? 1_000 : 5_000;
  /** @type {Record<string, import('../report.js').Rounds>} */
  const byPercentile = { p50: {}, p90: {}, p99: {} };

  await withPeers(async (peers) => {
    const echo = await peers.listen('echo');
    await withRelays(RELAYS, { echo }, ctx, async (relays) => {
      for (const relay of relays) await roundTrips(relay.endpoint('echo'), WARMUP_TRIPS);
      await alternate(
        ctx.throughputRounds,
        relays,
        async (relay, round) => {
          const samples = await roundTrips(relay.endpoint('echo'), trips);
          for (const [name, rounds] of Object.entries(byPercentile)) {
            (rounds[relay.name] ??= []).push(percentile(samples, Number(name.slice(1))));
          }
          ctx.log(`round ${round + 1} ${relay.name}: p50 ${percentile(samples, 50).toFixed(0)} µs, p99 ${percentile(samples, 99).toFixed(0)} µs`);
        },
        ctx.signal,
      );
    });
  });

  const metrics = Object.entries(byPercentile).map(([name, rounds]) => ({ label: `${name} µs`, digits: 0, rounds }));
  const [p50, , p99] = metrics.map(summarize);
  return [
    {
      number: 3,
      title: 'Latency (16-byte round trip through an echo target)',
      setup: `${trips.toLocaleString('en-US')} round trips one at a time after ${WARMUP_TRIPS.toLocaleString('en-US')} untimed, ${ctx.throughputRounds} rounds, median of each percentile`,
      metrics,
      goals: [
        goal('latency p50 ≤ websockify', p50 && p50.deskgate <= p50.websockify, `${p50?.deskgate.toFixed(0)} vs ${p50?.websockify.toFixed(0)} µs`),
        goal(
          'latency p99 ≤ 0.75× websockify',
          p99 && p99.deskgate <= 0.75 * p99.websockify,
          `${p99?.deskgate.toFixed(0)} vs ${p99?.websockify.toFixed(0)} µs (${((p99?.deskgate ?? NaN) / (p99?.websockify ?? NaN)).toFixed(2)}×)`,
        ),
      ],
      notes: [],
    },
  ];
}
