/**
 * Scenarios 1 and 6: VNC -> browser throughput, and the relay's CPU cost per GiB of it.
 *
 * After the RFB handshake the client sends a FramebufferUpdateRequest, and the source (in the
 * peers process) writes the whole amount as fast as the socket takes it; the client counts
 * bytes from the moment it has ServerInit to the last one. CPU is the relay's utime + stime across the transfer;
 * websockify's forked child is counted through the parent's cutime/cstime once the child
 * has been reaped.
 *
 * Besides the plain deskgate session, the same deskgate process is measured with a view-only
 * session (the filter is on the other direction: this one must not pay for it) and with a
 * desktop whose VNC password the gateway holds (a source requiring VNC authentication; the
 * gateway terminates the handshake, then relays as usual).
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { alternate, AUTH_TWIN, withRelays, ways } from '../relays.js';
import { BENCH_PASSWORD, FRAMEBUFFER_UPDATE_REQUEST } from '../rfb.js';
import { goal, RELAYS, summarize, VARIANT_GOAL } from '../report.js';
import { CLK_TCK, settledCpuTimes, treeCpuTimes } from '../processes.js';
import { GiB, MB, MiB, ratio } from '../stats.js';
import { withTimeout } from '../timeout.js';

const WARMUP_BYTES = 64 * MiB;
/** Slowest rate a transfer may have before it counts as stuck. */
const MIN_RATE = 5 * MB;

/**
 * Ask the source for its bytes (a FramebufferUpdateRequest, right after ServerInit) and read
 * `bytes`; resolves with the seconds from ServerInit to the last byte.
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
    conn.write(FRAMEBUFFER_UPDATE_REQUEST);
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
  /** @param {string} key @param {import('../report.js').Column} column @param {number} value */
  const record = (key, column, value) => ((m[key] ??= {})[column] ??= []).push(value);

  await withPeers(async (peers) => {
    const targets = {
      source: await peers.listen('source', bytes),
      warmup: await peers.listen('source', WARMUP_BYTES),
      [`source${AUTH_TWIN}`]: { port: await peers.listen('source', bytes, BENCH_PASSWORD), password: BENCH_PASSWORD },
      [`warmup${AUTH_TWIN}`]: { port: await peers.listen('source', WARMUP_BYTES, BENCH_PASSWORD), password: BENCH_PASSWORD },
    };
    await withRelays(RELAYS, targets, ctx, async (relays) => {
      const columns = ways(relays, ['view-only', 'gateway-auth']);
      for (const way of columns) await receive(way.endpoint('warmup'), WARMUP_BYTES);
      await alternate(
        ctx.throughputRounds,
        columns,
        async (way, round) => {
          const pid = way.pid('source');
          const relayBefore = await settledCpuTimes(pid);
          const sourceBefore = treeCpuTimes(peers.pid);
          const clientBefore = process.cpuUsage();
          const seconds = await receive(way.endpoint('source'), bytes);
          const client = process.cpuUsage(clientBefore);
          const source = treeCpuTimes(peers.pid);
          const relayAfter = await settledCpuTimes(pid);
          const relayUser = relayAfter.user - relayBefore.user;
          const relaySystem = relayAfter.system - relayBefore.system;
          const clientSeconds = (client.user + client.system) / 1e6;
          const sourceSeconds = source.user + source.system - sourceBefore.user - sourceBefore.system;
          record('rate', way.column, bytes / seconds / MB);
          record('client', way.column, (100 * clientSeconds) / seconds);
          record('pipeline', way.column, (clientSeconds + sourceSeconds + (pid ? relayUser + relaySystem : 0)) / gib);
          if (pid !== undefined) {
            record('cpu', way.column, (relayUser + relaySystem) / gib);
            record('system', way.column, relaySystem / gib);
          }
          ctx.log(`round ${round + 1} ${way.column}: ${(bytes / seconds / MB).toFixed(0)} MB/s, relay CPU ${(relayUser + relaySystem).toFixed(2)} s`);
        },
        ctx.signal,
      );
    });
  });

  const size = bytes === GiB ? '1 GiB' : `${bytes / MiB} MiB`;
  const setup = `${size} through one session after the RFB handshake, ${ctx.throughputRounds} rounds, median`;
  const throughput = { label: 'MB/s', digits: 0, rounds: m.rate ?? {} };
  const cpu = { label: 'relay CPU s per GiB (user+system)', digits: 2, rounds: m.cpu ?? {} };
  const t = summarize(throughput);
  const c = summarize(cpu);
  /** @type {import('../report.js').Column[]} */
  const columns = ['deskgate', 'deskgate-view-only', 'deskgate-gateway-auth', 'websockify', 'direct'];
  /** @type {[import('../report.js').Column, import('../report.js').Column][]} */
  const ratios = [
    ['deskgate', 'websockify'],
    ['deskgate', 'direct'],
    ['deskgate-view-only', 'deskgate'],
    ['deskgate-gateway-auth', 'deskgate'],
  ];
  const viewOnly = ratio(t['deskgate-view-only'], t.deskgate);
  const gatewayAuth = ratio(t['deskgate-gateway-auth'], t.deskgate);
  return [
    {
      number: 1,
      title: 'Throughput VNC → browser',
      setup,
      columns,
      ratios,
      metrics: [
        throughput,
        { label: 'measuring client CPU (% of a core)', digits: 0, rounds: m.client ?? {}, compare: false },
        { label: 'CPU s per GiB, all processes (source + relay + client)', digits: 2, rounds: m.pipeline ?? {} },
      ],
      goals: [
        goal('VNC → browser throughput ≥ 1.5× websockify', ratio(t.deskgate, t.websockify) >= 1.5, `${ratio(t.deskgate, t.websockify).toFixed(3)}×`),
        goal('VNC → browser throughput ≥ 0.75× direct TCP', ratio(t.deskgate, t.direct) >= 0.75, `${ratio(t.deskgate, t.direct).toFixed(3)}×`),
        goal(
          `VNC → browser throughput of a view-only session ≥ ${VARIANT_GOAL}× the plain session`,
          Number.isFinite(viewOnly) ? viewOnly >= VARIANT_GOAL : undefined,
          `${viewOnly.toFixed(3)}× (${t['deskgate-view-only'].toFixed(0)} vs ${t.deskgate.toFixed(0)} MB/s)`,
        ),
        goal(
          `VNC → browser throughput with the gateway holding the VNC password ≥ ${VARIANT_GOAL}× the plain session`,
          Number.isFinite(gatewayAuth) ? gatewayAuth >= VARIANT_GOAL : undefined,
          `${gatewayAuth.toFixed(3)}× (${t['deskgate-gateway-auth'].toFixed(0)} vs ${t.deskgate.toFixed(0)} MB/s)`,
        ),
      ],
      notes: [
        'The client row shows the measuring client is not the limit while it stays well below 100%.',
        'The all-processes row is the whole pipeline on this machine: when it is CPU-bound, throughput is about cores ÷ that figure.',
        "deskgate view-only and gateway auth are sessions of the same deskgate process as the plain column: a view-only user, and a source that requires VNC authentication with the password in the desktop's vnc.passwordFile (the client sees security None).",
        `The variants' goal: ${VARIANT_GOAL}× allows for round-to-round noise; they do the same work per byte in this direction.`,
      ],
    },
    {
      number: 6,
      title: 'CPU cost of scenario 1',
      setup: `relay process user+system CPU seconds per GiB relayed (websockify: parent + its forked child), ${setup}`,
      columns: ['deskgate', 'deskgate-view-only', 'deskgate-gateway-auth', 'websockify'],
      ratios: [
        ['deskgate', 'websockify'],
        ['deskgate-view-only', 'deskgate'],
        ['deskgate-gateway-auth', 'deskgate'],
      ],
      metrics: [cpu, { label: 'of which system (kernel) s per GiB', digits: 2, rounds: m.system ?? {} }],
      goals: [goal('CPU per GiB ≤ 0.7× websockify', ratio(c.deskgate, c.websockify) <= 0.7, `${ratio(c.deskgate, c.websockify).toFixed(3)}×`)],
      notes: [`Clock-tick resolution is 1/${CLK_TCK} s; direct has no relay process.`],
    },
  ];
}
