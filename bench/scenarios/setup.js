/**
 * Scenario 8: session set-up. The time from starting the WebSocket (direct: the TCP connect)
 * to having ServerInit, one session after the other, each closed as soon as it is ready:
 * - deskgate followed: a plain desktop whose server offers security None; the gateway reads
 *   along as the viewer and the server negotiate through it;
 * - deskgate terminated: a server that requires VNC authentication, the password in the
 *   desktop's vnc.passwordFile; the gateway logs in itself and offers the viewer None, both
 *   halves at once;
 * - websockify and direct: the None server, the same handshake as deskgate followed.
 *
 * The goal is that terminating adds at most one round trip to set-up. The unit is
 * measured in the same scenario: the median 16-byte echo round trip through a plain deskgate
 * session (viewer -> gateway -> server and back), after each round.
 */
import { withPeers } from '../peers-control.js';
import { alternate, AUTH_TWIN, withRelays, ways } from '../relays.js';
import { BENCH_PASSWORD } from '../rfb.js';
import { connect } from '../client.js';
import { goal, RELAYS, summarize } from '../report.js';
import { median, percentile, ratio } from '../stats.js';
import { roundTrips } from './latency.js';

const SESSIONS = { quick: 100, full: 300 };
/** Untimed sessions first, so that every relay's set-up path is past its JIT warm-up. */
const WARMUP_SESSIONS = { quick: 30, full: 50 };
const ROUND_TRIPS = { quick: 300, full: 1_000 };
const WARMUP_TRIPS = 1_000;

/**
 * Open one session and close it as soon as ServerInit is in.
 * @param {import('../relays.js').Endpoint} endpoint
 * @returns {Promise<number>} microseconds from starting the connection to ServerInit
 */
async function setUp(endpoint) {
  const conn = await connect(endpoint);
  conn.destroy();
  if (conn.desktop.name !== 'bench') throw new Error(`ServerInit names the desktop ${JSON.stringify(conn.desktop.name)}, not "bench"`);
  return Number(conn.openedAt - conn.startedAt) / 1e3;
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const sessions = SESSIONS[ctx.quick ? 'quick' : 'full'];
  const warmup = WARMUP_SESSIONS[ctx.quick ? 'quick' : 'full'];
  const trips = ROUND_TRIPS[ctx.quick ? 'quick' : 'full'];
  /** @type {Record<string, import('../report.js').Rounds>} */
  const m = {};
  /** @param {string} key @param {import('../report.js').Column} column @param {number} value */
  const record = (key, column, value) => ((m[key] ??= {})[column] ??= []).push(value);

  await withPeers(async (peers) => {
    const targets = {
      echo: await peers.listen('echo'),
      [`echo${AUTH_TWIN}`]: { port: await peers.listen('echo', 0, BENCH_PASSWORD), password: BENCH_PASSWORD },
    };
    await withRelays(RELAYS, targets, ctx, async (relays) => {
      const columns = ways(relays, ['gateway-auth']);
      const deskgate = relays.find((relay) => relay.name === 'deskgate');
      if (!deskgate) throw new Error('setup: no deskgate relay');
      for (const way of columns) for (let i = 0; i < warmup; i++) await setUp(way.endpoint('echo'));
      await roundTrips(deskgate.endpoint('echo'), WARMUP_TRIPS);
      for (let round = 0; round < ctx.otherRounds; round++) {
        // Each round measures every column once, in an order rotated from round to round (as alternate() does).
        const order = columns.map((_, i) => /** @type {import('../relays.js').Way} */ (columns[(i + round) % columns.length]));
        await alternate(
          1,
          order,
          async (way) => {
            const samples = new Float64Array(sessions);
            for (let i = 0; i < sessions; i++) {
              ctx.signal?.throwIfAborted();
              samples[i] = await setUp(way.endpoint('echo'));
            }
            record('p50', way.column, percentile(samples, 50));
            record('p90', way.column, percentile(samples, 90));
            ctx.log(
              `round ${round + 1} ${way.column}: ServerInit after ${percentile(samples, 50).toFixed(0)} µs (p50), ${percentile(samples, 90).toFixed(0)} µs (p90)`,
            );
          },
          ctx.signal,
        );
        // The unit of the goal, on the machine as it is now.
        const rtt = median(await roundTrips(deskgate.endpoint('echo'), trips));
        record('rtt', 'deskgate', rtt);
        // Terminated − followed within the round (paired: the machine's drift between rounds cancels out).
        const extra = (m.p50?.['deskgate-gateway-auth']?.at(-1) ?? NaN) - (m.p50?.deskgate?.at(-1) ?? NaN);
        record('extra', 'deskgate-gateway-auth', extra);
        record('extraTrips', 'deskgate-gateway-auth', extra / rtt);
        ctx.log(
          `round ${round + 1}: 16-byte round trip through deskgate ${rtt.toFixed(0)} µs (median); terminated − followed ${(extra / rtt).toFixed(2)} round trips`,
        );
      }
    });
  });

  const p50 = { label: 'ServerInit after, p50 µs', digits: 0, rounds: m.p50 ?? {} };
  const p90 = { label: 'ServerInit after, p90 µs', digits: 0, rounds: m.p90 ?? {} };
  const rtt = { label: '16-byte round trip through deskgate, median µs', digits: 0, rounds: m.rtt ?? {}, compare: false };
  const extra = { label: 'p50 − followed p50 in the same round, µs', digits: 0, rounds: m.extra ?? {}, compare: false };
  const extraTrips = { label: 'the same in round trips of that round', digits: 2, rounds: m.extraTrips ?? {}, compare: false };
  const [s90, r, e, t] = [p90, rtt, extra, extraTrips].map(summarize);
  const roundTrip = r?.deskgate ?? NaN;
  const extra90 = (s90?.['deskgate-gateway-auth'] ?? NaN) - (s90?.deskgate ?? NaN);
  const inTrips = t?.['deskgate-gateway-auth'] ?? NaN;
  const signed = (/** @type {number} */ us) => `${us >= 0 ? '+' : '−'}${Math.abs(us).toFixed(0)} µs`;
  return [
    {
      number: 8,
      title: 'Session set-up (start of connection → ServerInit)',
      setup:
        `${sessions} sessions one at a time per relay and round after ${warmup} untimed, ${ctx.otherRounds} rounds, ` +
        `median of each percentile; the round trip: ${trips.toLocaleString('en-US')} 16-byte echoes on a plain deskgate session after each round`,
      columns: ['deskgate', 'deskgate-gateway-auth', 'websockify', 'direct'],
      titles: { deskgate: 'deskgate followed', 'deskgate-gateway-auth': 'deskgate terminated' },
      ratios: [
        ['deskgate', 'websockify'],
        ['deskgate', 'direct'],
        ['deskgate-gateway-auth', 'deskgate'],
      ],
      metrics: [p50, p90, rtt, extra, extraTrips],
      goals: [
        goal(
          'terminating the handshake (gateway-held VNC password) adds ≤ 1 round trip to set-up (p50)',
          Number.isFinite(inTrips) ? inTrips <= 1 : undefined,
          `${signed(e?.['deskgate-gateway-auth'] ?? NaN)} = ${inTrips.toFixed(2)} round trips (median of the rounds' differences; round trip ${roundTrip.toFixed(0)} µs); ` +
            `p90 ${signed(extra90)} = ${ratio(extra90, roundTrip).toFixed(2)}`,
        ),
      ],
      notes: [
        'Followed: deskgate and the server offering None, the viewer negotiating through the gateway. Terminated: the server requires VNC authentication, the gateway answers it with the password in vnc.passwordFile and offers the viewer None.',
        'websockify and direct reach the server offering None: the same handshake as deskgate followed. Every session is closed once ServerInit is in.',
        'The goal compares terminated and followed within each round (both measured seconds apart, the round trip right after) and takes the median over rounds: the machine drifts more between rounds than the difference.',
      ],
    },
  ];
}
