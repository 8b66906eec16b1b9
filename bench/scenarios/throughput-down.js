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
 * session (the filter is on the other direction: this one must not pay for it), with a
 * desktop whose VNC password the gateway holds (a source requiring VNC authentication; the
 * gateway terminates the handshake, then relays as usual) and with a recorded desktop
 * (`record: true`: the gateway copies every read into the recording's queue and writes it to a
 * file). A recorded round ends when its file is complete, so the relay's CPU includes the
 * writing of the whole file; the file is checked (every byte relayed is in it) and removed.
 */
import { connect } from '../client.js';
import { withPeers } from '../peers-control.js';
import { takeRecordings } from '../recordings.js';
import { alternate, AUTH_TWIN, RECORD_TWIN, withRelays, ways } from '../relays.js';
import { BENCH_PASSWORD, FRAMEBUFFER_UPDATE_REQUEST } from '../rfb.js';
import { goal, RECORDING_GOAL, RELAYS, summarize, VARIANT_GOAL } from '../report.js';
import { CLK_TCK, settledCpuTimes, treeCpuTimes } from '../processes.js';
import { GiB, MB, MiB, ratio } from '../stats.js';
import { withTimeout } from '../timeout.js';

const WARMUP_BYTES = 64 * MiB;
/** Slowest rate a transfer may have before it counts as stuck. */
const MIN_RATE = 5 * MB;
/**
 * recordings.maxQueuedBytes of this scenario's deskgate: the largest the config allows. At the
 * default (8 MiB, some 8 ms of this flood) one slow write into the page cache stops the
 * recording within the first MiB (scenario 12's normal-disk column), and the column would
 * measure an unrecorded session; with this much the file holds every byte, and the column
 * what recording costs.
 */
const RECORDING_QUEUE_BYTES = 256 * MiB;

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

  /** @type {{ share: number, why: string }[]} the recorded rounds whose file does not hold the whole stream */
  const incomplete = [];

  await withPeers(async (peers) => {
    const source = await peers.listen('source', bytes);
    const warmup = await peers.listen('source', WARMUP_BYTES);
    const targets = {
      source,
      warmup,
      [`source${AUTH_TWIN}`]: { port: await peers.listen('source', bytes, BENCH_PASSWORD), password: BENCH_PASSWORD },
      [`warmup${AUTH_TWIN}`]: { port: await peers.listen('source', WARMUP_BYTES, BENCH_PASSWORD), password: BENCH_PASSWORD },
      // The same sources, on desktops that record.
      [`source${RECORD_TWIN}`]: { port: source, record: /** @type {const} */ (true) },
      [`warmup${RECORD_TWIN}`]: { port: warmup, record: /** @type {const} */ (true) },
    };
    await withRelays(RELAYS, targets, { ...ctx, recordings: { maxQueuedBytes: RECORDING_QUEUE_BYTES } }, async (relays) => {
      const columns = ways(relays, ['view-only', 'gateway-auth', 'recorded']);
      for (const way of columns) await receive(way.endpoint('warmup'), WARMUP_BYTES);
      const dir = relays.find((relay) => relay.recordings)?.recordings;
      if (dir) await takeRecordings(dir);
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
          const sourceAfter = treeCpuTimes(peers.pid);
          // The writer may still be at the file's end: the whole file is the recorded session's work.
          const recordings = dir && way.column === 'deskgate-recorded' ? await takeRecordings(dir) : undefined;
          const relayAfter = await settledCpuTimes(pid);
          if (recordings) {
            const [file] = recordings;
            const held = file?.screenBytes ?? 0;
            record('recorded', way.column, (100 * held) / bytes);
            // The records' times say how fast the part of the session that was recorded went.
            if (file && file.screenMs > 0) record('whileRecording', way.column, held / (file.screenMs / 1000) / MB);
            if (recordings.length !== 1 || !file?.ended || held !== bytes) {
              incomplete.push({ share: held / bytes, why: file?.stopped ?? `${recordings.length} files, no End record` });
            }
          }
          const relayUser = relayAfter.user - relayBefore.user;
          const relaySystem = relayAfter.system - relayBefore.system;
          const clientSeconds = (client.user + client.system) / 1e6;
          const sourceSeconds = sourceAfter.user + sourceAfter.system - sourceBefore.user - sourceBefore.system;
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
  const columns = ['deskgate', 'deskgate-view-only', 'deskgate-gateway-auth', 'deskgate-recorded', 'websockify', 'direct'];
  /** @type {[import('../report.js').Column, import('../report.js').Column][]} */
  const variantRatios = [
    ['deskgate-view-only', 'deskgate'],
    ['deskgate-gateway-auth', 'deskgate'],
    ['deskgate-recorded', 'deskgate'],
  ];
  const viewOnly = ratio(t['deskgate-view-only'], t.deskgate);
  const gatewayAuth = ratio(t['deskgate-gateway-auth'], t.deskgate);
  const recorded = ratio(t['deskgate-recorded'], t.deskgate);
  const recordedRounds = m.recorded?.['deskgate-recorded']?.length ?? 0;
  const whileRecordingRate = {
    label: "MB/s while recording (the file's bytes ÷ its last record's time)",
    digits: 0,
    rounds: m.whileRecording ?? {},
    compare: false,
  };
  const whileRecording = summarize(whileRecordingRate)['deskgate-recorded'];
  const shares = incomplete.map(({ share }) => `${(100 * share).toFixed(0)} %`);
  return [
    {
      number: 1,
      title: 'Throughput VNC → browser',
      setup,
      columns,
      ratios: [['deskgate', 'websockify'], ['deskgate', 'direct'], ...variantRatios],
      metrics: [
        throughput,
        { label: 'measuring client CPU (% of a core)', digits: 0, rounds: m.client ?? {}, compare: false },
        { label: 'CPU s per GiB, all processes (source + relay + client)', digits: 2, rounds: m.pipeline ?? {} },
        { label: 'bytes relayed that are in the recording (%)', digits: 1, rounds: m.recorded ?? {}, summary: /** @type {const} */ ('min'), compare: false },
        whileRecordingRate,
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
        goal(
          `VNC → browser throughput of a recorded session ≥ ${RECORDING_GOAL}× the plain session`,
          // A recording that stopped early is no recorded session: the goal needs the whole file.
          Number.isFinite(recorded) && recordedRounds > 0 ? recorded >= RECORDING_GOAL && incomplete.length === 0 : undefined,
          incomplete.length === 0
            ? `${recorded.toFixed(3)}× (${t['deskgate-recorded'].toFixed(0)} vs ${t.deskgate.toFixed(0)} MB/s); every byte in the file in all ${recordedRounds} rounds`
            : `the recording stopped in ${incomplete.length} of ${recordedRounds} rounds, after ${shares.join(', ')} of the stream ("${incomplete[0]?.why}"); ` +
                `while it recorded ${ratio(whileRecording, t.deskgate).toFixed(3)}× (${whileRecording.toFixed(0)} vs ${t.deskgate.toFixed(0)} MB/s), the whole session ${recorded.toFixed(3)}×`,
        ),
      ],
      notes: [
        'The client row shows the measuring client is not the limit while it stays well below 100%.',
        'The all-processes row is the whole pipeline on this machine: when it is CPU-bound, throughput is about cores ÷ that figure.',
        "deskgate view-only and gateway auth are sessions of the same deskgate process as the plain column: a view-only user, and a source that requires VNC authentication with the password in the desktop's vnc.passwordFile (the client sees security None).",
        `The variants' goal: ${VARIANT_GOAL}× allows for round-to-round noise; they do the same work per byte in this direction.`,
        `deskgate recorded is a desktop of the same process with record: true (recordings.dir in the bench's temporary directory, on this machine's disk; recordings.maxQueuedBytes ${RECORDING_QUEUE_BYTES / MiB} MiB, so that the recording keeps every byte of the flood): every read is copied into the recording's queue and written to the file. Its round ends once the file is complete (End record), so its CPU includes writing the whole file; the file is then checked and removed. Issue 14's goal: at most 15 % slower.`,
      ],
    },
    {
      number: 6,
      title: 'CPU cost of scenario 1',
      setup: `relay process user+system CPU seconds per GiB relayed (websockify: parent + its forked child), ${setup}`,
      columns: ['deskgate', 'deskgate-view-only', 'deskgate-gateway-auth', 'deskgate-recorded', 'websockify'],
      ratios: [['deskgate', 'websockify'], ...variantRatios],
      metrics: [cpu, { label: 'of which system (kernel) s per GiB', digits: 2, rounds: m.system ?? {} }],
      goals: [goal('CPU per GiB ≤ 0.7× websockify', ratio(c.deskgate, c.websockify) <= 0.7, `${ratio(c.deskgate, c.websockify).toFixed(3)}×`)],
      notes: [
        `Clock-tick resolution is 1/${CLK_TCK} s; direct has no relay process.`,
        "deskgate recorded includes the copy into the recording's queue and the write system calls into the page cache; the kernel's writeback to the disk runs in its own threads, counted in no process here.",
      ],
    },
  ];
}
