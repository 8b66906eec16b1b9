/**
 * Scenarios 1 and 6: VNC -> browser throughput, and the relay's CPU cost per GiB of it.
 *
 * The source (in the peers process) writes the whole amount as fast as the socket takes
 * it; the client counts bytes from the moment the connection is open to the last one.
 * CPU is the relay's utime + stime across the transfer; websockify's forked child is
 * counted through the parent's cutime/cstime once the child has been reaped.
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { alternate, withRelays } from '../relays.js';
import { goal, RELAYS, summarize } from '../report.js';
import { CLK_TCK, settledCpuTimes, treeCpuTimes } from '../processes.js';
import { GiB, MB, MiB, ratio } from '../stats.js';
import { withTimeout } from '../timeout.js';

const WARMUP_BYTES = 64 * MiB;
/** Slowest rate a transfer may have before it counts as stuck. */
const MIN_RATE = 5 * MB;

/**
 * Read `bytes` from the endpoint; resolves with the seconds from open to the last byte.
 * @param {import('../relays.js').Endpoint} endpoint
 * @param {number} bytes
 * @returns {Promise<number>}
 */
export async function receive(endpoint, bytes) {
  let received = 0;
  /** @type {(at: bigint) => void} */
  let done = () => {};
  /** @type {(err: Error) => void} */
  let fail = () => {};
  /** @type {Promise<bigint>} */
  const finished = new Promise((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const conn = await connect(endpoint, {
    onData(chunk) {
      received += chunk.length;
      if (received >= bytes) done(process.hrtime.bigint());
    },
    onClose(why) {
      if (received < bytes) fail(new Error(`connection ended after ${received} of ${bytes} bytes: ${why}`));
    },
  });
  try {
    const at = await withTimeout(finished, 30_000 + (bytes / MIN_RATE) * 1000, `receiving ${bytes / MiB} MiB`);
    return Number(at - conn.openedAt) / 1e9;
  } finally {
    conn.destroy();
  }
}

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const bytes = ctx.quick ? 256 * MiB : GiB;
  const gib = bytes / GiB;
  /** @type {Record<string, import('../report.js').Rounds>} */
  const m = {};
  /** @param {string} key @param {import('../relays.js').RelayName} relay @param {number} value */
  const record = (key, relay, value) => ((m[key] ??= {})[relay] ??= []).push(value);

  await withPeers(async (peers) => {
    const targets = { source: await peers.listen('source', bytes), warmup: await peers.listen('source', WARMUP_BYTES) };
    await withRelays(RELAYS, targets, ctx, async (relays) => {
      for (const relay of relays) await receive(relay.endpoint('warmup'), WARMUP_BYTES);
      await alternate(
        ctx.throughputRounds,
        relays,
        async (relay, round) => {
          const pid = relay.pid('source');
          const relayBefore = await settledCpuTimes(pid);
          const sourceBefore = treeCpuTimes(peers.pid);
          const clientBefore = process.cpuUsage();
          const seconds = await receive(relay.endpoint('source'), bytes);
          const client = process.cpuUsage(clientBefore);
          const source = treeCpuTimes(peers.pid);
          const relayAfter = await settledCpuTimes(pid);
          const relayUser = relayAfter.user - relayBefore.user;
          const relaySystem = relayAfter.system - relayBefore.system;
          const clientSeconds = (client.user + client.system) / 1e6;
          const sourceSeconds = source.user + source.system - sourceBefore.user - sourceBefore.system;
          record('rate', relay.name, bytes / seconds / MB);
          record('client', relay.name, (100 * clientSeconds) / seconds);
          record('pipeline', relay.name, (clientSeconds + sourceSeconds + (pid ? relayUser + relaySystem : 0)) / gib);
          if (pid !== undefined) {
            record('cpu', relay.name, (relayUser + relaySystem) / gib);
            record('system', relay.name, relaySystem / gib);
          }
          ctx.log(`round ${round + 1} ${relay.name}: ${(bytes / seconds / MB).toFixed(0)} MB/s, relay CPU ${(relayUser + relaySystem).toFixed(2)} s`);
        },
        ctx.signal,
      );
    });
  });

  const size = bytes === GiB ? '1 GiB' : `${bytes / MiB} MiB`;
  const setup = `${size} through one session, ${ctx.throughputRounds} rounds, median`;
  const throughput = { label: 'MB/s', digits: 0, rounds: m.rate ?? {} };
  const cpu = { label: 'relay CPU s per GiB (user+system)', digits: 2, rounds: m.cpu ?? {} };
  const t = summarize(throughput);
  const c = summarize(cpu);
  return [
    {
      number: 1,
      title: 'Throughput VNC → browser',
      setup,
      metrics: [
        throughput,
        { label: 'measuring client CPU (% of a core)', digits: 0, rounds: m.client ?? {}, compare: false },
        { label: 'CPU s per GiB, all processes (source + relay + client)', digits: 2, rounds: m.pipeline ?? {} },
      ],
      goals: [
        goal('VNC → browser throughput ≥ 1.5× websockify', ratio(t.deskgate, t.websockify) >= 1.5, `${ratio(t.deskgate, t.websockify).toFixed(3)}×`),
        goal('VNC → browser throughput ≥ 0.75× direct TCP', ratio(t.deskgate, t.direct) >= 0.75, `${ratio(t.deskgate, t.direct).toFixed(3)}×`),
      ],
      notes: [
        'The client row shows the measuring client is not the limit while it stays well below 100%.',
        'The all-processes row is the whole pipeline on this machine: when it is CPU-bound, throughput is about cores ÷ that figure.',
      ],
    },
    {
      number: 6,
      title: 'CPU cost of scenario 1',
      setup: `relay process user+system CPU seconds per GiB relayed (websockify: parent + its forked child), ${setup}`,
      metrics: [cpu, { label: 'of which system (kernel) s per GiB', digits: 2, rounds: m.system ?? {} }],
      goals: [goal('CPU per GiB ≤ 0.7× websockify', ratio(c.deskgate, c.websockify) <= 0.7, `${ratio(c.deskgate, c.websockify).toFixed(3)}×`)],
      notes: [`Clock-tick resolution is 1/${CLK_TCK} s; direct has no relay process.`],
    },
  ];
}
