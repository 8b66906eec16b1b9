/**
 * Scenario 2: browser -> VNC throughput. The client sends 64 KiB binary messages, stopping
 * whenever its own send buffer passes the high-water mark (bufferedAmount for WebSockets,
 * write() === false for TCP); the sink reports over IPC once every byte has arrived.
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { settledCpuTimes } from '../processes.js';
import { alternate, withRelays } from '../relays.js';
import { goal, RELAYS, summarize } from '../report.js';
import { GiB, MB, MiB, ratio } from '../stats.js';

/** A message: far below deskgate's 1 MiB message limit, the size noVNC's large writes reach. */
const MESSAGE = Buffer.alloc(64 * 1024, 0x5a);
const WARMUP_BYTES = 32 * MiB;
/** Slowest rate a transfer may have before it counts as stuck. */
const MIN_RATE = 5 * MB;

/**
 * Send `bytes` to the sink through the endpoint; resolves with the seconds from open until
 * the sink has them all.
 * @param {import('../peers-control.js').Peers} peers
 * @param {number} sinkPort
 * @param {import('../relays.js').Endpoint} endpoint
 * @param {number} bytes
 */
export async function send(peers, sinkPort, endpoint, bytes) {
  await peers.expect(sinkPort, bytes);
  const arrived = peers.sinkDone(sinkPort, 30_000 + (bytes / MIN_RATE) * 1000);
  /** @type {string | undefined} */
  let closed;
  const conn = await connect(endpoint, { onClose: (why) => (closed = why) });
  try {
    let sent = 0;
    const pump = () => {
      while (sent < bytes && closed === undefined) {
        const n = Math.min(MESSAGE.length, bytes - sent);
        sent += n;
        if (!conn.write(n === MESSAGE.length ? MESSAGE : MESSAGE.subarray(0, n))) {
          conn.onDrain(pump);
          return;
        }
      }
    };
    pump();
    const at = await arrived;
    return Number(at - conn.openedAt) / 1e9;
  } catch (err) {
    throw closed ? new Error(`${/** @type {Error} */ (err).message}; the connection had ended: ${closed}`) : err;
  } finally {
    conn.destroy();
  }
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const bytes = ctx.quick ? 64 * MiB : 256 * MiB;
  /** @type {import('../report.js').Rounds} */
  const rates = {};
  /** @type {import('../report.js').Rounds} */
  const cpuPerGiB = {};
  /** @type {import('../report.js').Rounds} */
  const clientBusy = {};

  await withPeers(async (peers) => {
    const sink = await peers.listen('sink');
    await withRelays(RELAYS, { sink }, ctx, async (relays) => {
      for (const relay of relays) await send(peers, sink, relay.endpoint('sink'), WARMUP_BYTES);
      await alternate(
        ctx.throughputRounds,
        relays,
        async (relay, round) => {
          const pid = relay.pid('sink');
          const cpuBefore = await settledCpuTimes(pid);
          const client = process.cpuUsage();
          const seconds = await send(peers, sink, relay.endpoint('sink'), bytes);
          const { user, system } = process.cpuUsage(client);
          const cpuAfter = await settledCpuTimes(pid);
          const cpu = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system;
          (clientBusy[relay.name] ??= []).push((user + system) / 1e4 / seconds);
          (rates[relay.name] ??= []).push(bytes / seconds / MB);
          if (pid !== undefined) (cpuPerGiB[relay.name] ??= []).push(cpu / (bytes / GiB));
          ctx.log(`round ${round + 1} ${relay.name}: ${(bytes / seconds / MB).toFixed(0)} MB/s, ${cpu.toFixed(2)} CPU s`);
        },
        ctx.signal,
      );
    });
  });

  const throughput = { label: 'MB/s', digits: 0, rounds: rates };
  const t = summarize(throughput);
  return [
    {
      number: 2,
      title: 'Throughput browser → VNC',
      setup: `${bytes / MiB} MiB through one session in 64 KiB messages, ${ctx.throughputRounds} rounds, median`,
      metrics: [
        throughput,
        { label: 'CPU s per GiB (user+system)', digits: 2, rounds: cpuPerGiB },
        { label: 'measuring client CPU (% of a core)', digits: 0, rounds: clientBusy, compare: false },
      ],
      goals: [
        goal('browser → VNC throughput ≥ 1.5× websockify', ratio(t.deskgate, t.websockify) >= 1.5, `${ratio(t.deskgate, t.websockify).toFixed(3)}×`),
        goal('browser → VNC throughput ≥ 0.75× direct TCP', ratio(t.deskgate, t.direct) >= 0.75, `${ratio(t.deskgate, t.direct).toFixed(3)}×`),
      ],
      notes: ['The CPU row is for information; the CPU goal is set on scenario 1 (see 6).'],
    },
  ];
}
