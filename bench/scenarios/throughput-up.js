/**
 * Scenario 2: browser -> VNC throughput. After the RFB handshake the client sends 64 KiB
 * binary messages, each one RFB SetEncodings message, stopping whenever its own send buffer
 * passes the high-water mark (bufferedAmount for WebSockets, write() === false for TCP); the
 * sink reports over IPC once every byte has arrived.
 *
 * SetEncodings is one of the messages deskgate's view-only filter keeps, so the same stream
 * reaches the sink through a view-only session too: its column measures the filter, against
 * the plain session (no filter) of the same deskgate process.
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { settledCpuTimes } from '../processes.js';
import { alternate, withRelays, ways } from '../relays.js';
import { goal, RELAYS, summarize, VARIANT_GOAL } from '../report.js';
import { GiB, MB, MiB, ratio } from '../stats.js';

/**
 * A message: far below deskgate's 1 MiB message limit, the size noVNC's large writes reach.
 * RFB SetEncodings (type 2, padding, u16 count) with 16,383 s32 encodings: 4 + 4 × 16,383 =
 * 65,536 bytes. The encodings are arbitrary numbers; nothing on the way reads them.
 */
const MESSAGE = (() => {
  const count = (64 * 1024 - 4) / 4;
  const message = Buffer.alloc(4 + 4 * count);
  message.writeUInt8(2, 0);
  message.writeUInt16BE(count, 2);
  for (let i = 0; i < count; i++) message.writeInt32BE(i - 300, 4 + 4 * i);
  return message;
})();
const WARMUP_BYTES = 32 * MiB;
/** Slowest rate a transfer may have before it counts as stuck. */
const MIN_RATE = 5 * MB;

/**
 * Send `bytes` (whole messages) to the sink through the endpoint; resolves with the seconds
 * from ServerInit until the sink has them all.
 * @param {import('../peers-control.js').Peers} peers
 * @param {number} sinkPort
 * @param {import('../relays.js').Endpoint} endpoint
 * @param {number} bytes
 */
export async function send(peers, sinkPort, endpoint, bytes) {
  if (bytes % MESSAGE.length !== 0) throw new Error(`send: ${bytes} bytes are not whole ${MESSAGE.length}-byte messages`);
  await peers.expect(sinkPort, bytes);
  const arrived = peers.sinkDone(sinkPort, 30_000 + (bytes / MIN_RATE) * 1000);
  /** @type {string | undefined} */
  let closed;
  const conn = await connect(endpoint, { onClose: (why) => (closed = why) });
  try {
    let sent = 0;
    const pump = () => {
      while (sent < bytes && closed === undefined) {
        sent += MESSAGE.length;
        if (!conn.write(MESSAGE)) {
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
      const columns = ways(relays, ['view-only']);
      for (const way of columns) await send(peers, sink, way.endpoint('sink'), WARMUP_BYTES);
      await alternate(
        ctx.throughputRounds,
        columns,
        async (way, round) => {
          const pid = way.pid('sink');
          const cpuBefore = await settledCpuTimes(pid);
          const client = process.cpuUsage();
          const seconds = await send(peers, sink, way.endpoint('sink'), bytes);
          const { user, system } = process.cpuUsage(client);
          const cpuAfter = await settledCpuTimes(pid);
          const cpu = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system;
          (clientBusy[way.column] ??= []).push((user + system) / 1e4 / seconds);
          (rates[way.column] ??= []).push(bytes / seconds / MB);
          if (pid !== undefined) (cpuPerGiB[way.column] ??= []).push(cpu / (bytes / GiB));
          ctx.log(`round ${round + 1} ${way.column}: ${(bytes / seconds / MB).toFixed(0)} MB/s, ${cpu.toFixed(2)} CPU s`);
        },
        ctx.signal,
      );
    });
  });

  const throughput = { label: 'MB/s', digits: 0, rounds: rates };
  const t = summarize(throughput);
  const filtered = ratio(t['deskgate-view-only'], t.deskgate);
  return [
    {
      number: 2,
      title: 'Throughput browser → VNC',
      setup: `${bytes / MiB} MiB through one session after the RFB handshake, in 64 KiB messages (each one RFB SetEncodings), ${ctx.throughputRounds} rounds, median`,
      columns: ['deskgate', 'deskgate-view-only', 'websockify', 'direct'],
      ratios: [
        ['deskgate', 'websockify'],
        ['deskgate', 'direct'],
        ['deskgate-view-only', 'deskgate'],
      ],
      metrics: [
        throughput,
        { label: 'CPU s per GiB (user+system)', digits: 2, rounds: cpuPerGiB },
        { label: 'measuring client CPU (% of a core)', digits: 0, rounds: clientBusy, compare: false },
      ],
      goals: [
        goal('browser → VNC throughput ≥ 1.5× websockify', ratio(t.deskgate, t.websockify) >= 1.5, `${ratio(t.deskgate, t.websockify).toFixed(3)}×`),
        goal('browser → VNC throughput ≥ 0.75× direct TCP', ratio(t.deskgate, t.direct) >= 0.75, `${ratio(t.deskgate, t.direct).toFixed(3)}×`),
        goal(
          `browser → VNC throughput through the view-only filter ≥ ${VARIANT_GOAL}× the plain session`,
          Number.isFinite(filtered) ? filtered >= VARIANT_GOAL : undefined,
          `${filtered.toFixed(3)}× (${t['deskgate-view-only'].toFixed(0)} vs ${t.deskgate.toFixed(0)} MB/s)`,
        ),
      ],
      notes: [
        'The CPU row is for information; the CPU goal is set on scenario 1 (see 6).',
        'deskgate view-only is a view-only session of the same deskgate process: its filter reads one 4-byte header per 64 KiB message and keeps every message (SetEncodings), so the sink gets the same bytes.',
        `The filter's goal: ${VARIANT_GOAL}× allows for round-to-round noise; the filter's work is a few header bytes per 64 KiB.`,
      ],
    },
  ];
}
