/**
 * Scenario 12: recording to a disk slower than the session (issue 14). A deskgate process is
 * started with bench/slow-disk.js preloaded, which holds every FileHandle write to a fixed
 * rate (DISK_RATE), far below what one session relays. Through it, a recorded session
 * (`record: { onFailure: 'continue' }`) takes a flood from the source as in scenario 1: the
 * recording's queue passes recordings.maxQueuedBytes (8 MiB by default), the recording stops
 * with a Stopped record and the session goes on unrecorded. The gateway's resident memory
 * (VmRSS) is sampled before the session and every SAMPLE_MS until its recording is finished;
 * growth is the peak minus the sample before. The same is measured for a plain session of the
 * same process, and for a recorded session of a second deskgate process with the normal disk.
 * Once at the end, a recorded desktop with `onFailure: 'end'` on the slow disk: its session
 * must be closed with 4507.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { withPeers } from '../peers-control.js';
import { rssBytes } from '../processes.js';
import { takeRecordings } from '../recordings.js';
import { alternate, RECORD_TWIN, withRelays, ways } from '../relays.js';
import { goal, summarize } from '../report.js';
import { MB, MiB } from '../stats.js';
import { receive } from './throughput-down.js';

const SLOW_DISK = fileURLToPath(new URL('../slow-disk.js', import.meta.url));
/** The slow disk's rate, bytes per second. */
const DISK_RATE = 20 * MB;
const SAMPLE_MS = 50;
/** Before the baseline sample: the last session's teardown is over. */
const SETTLE_MS = 200;
const GOAL_GROWTH_MIB = 8;
/** The desktop whose recording ends its session when it fails (policy `end`). */
const ENDING = `${RECORD_TWIN}-end`;

/**
 * Resident memory of `pid` before `work` and at its peak while it runs (sampled every SAMPLE_MS).
 * @template T
 * @param {number} pid
 * @param {() => Promise<T>} work
 */
async function rssAround(pid, work) {
  await sleep(SETTLE_MS);
  const before = rssBytes(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), SAMPLE_MS);
  try {
    const result = await work();
    return { result, before, peak: Math.max(peak, rssBytes(pid)) };
  } finally {
    clearInterval(sampler);
  }
}

/** @param {number} bytes */
const mib = (bytes) => `${(bytes / MiB).toFixed(2)} MiB`;

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  const bytes = (ctx.quick ? 128 : 512) * MiB;
  /** @type {Record<string, import('../report.js').Rounds>} */
  const m = {};
  /** @param {string} key @param {import('../report.js').Column} column @param {number} value */
  const record = (key, column, value) => ((m[key] ??= {})[column] ??= []).push(value);
  /** @type {Map<import('../report.js').Column, { why: string, bytes: number }[]>} the recordings that stopped, by column */
  const stopped = new Map();
  /** @type {string[]} */
  const notes = [];

  await withPeers(async (peers) => {
    const source = await peers.listen('source', bytes);
    const onFailure = (/** @type {'continue' | 'end'} */ policy) => ({ record: { onFailure: policy } });
    const targets = {
      source,
      [`source${RECORD_TWIN}`]: { port: source, ...onFailure('continue') },
    };
    const slowDisk = [...ctx.nodeArgs, '--import', `${pathToFileURL(SLOW_DISK)}?bytesPerSecond=${DISK_RATE}`];
    const slowTargets = { ...targets, [`source${ENDING}`]: { port: source, ...onFailure('end') } };
    await withRelays(['deskgate'], slowTargets, { ...ctx, nodeArgs: slowDisk }, ([slow]) =>
      withRelays(['deskgate'], targets, ctx, async ([normal]) => {
        if (!slow?.recordings || !normal?.recordings) throw new Error('deskgate started without a recordings directory');
        const [plain, slowRecorded] = ways([slow], ['recorded']);
        const [, normalRecorded] = ways([normal], ['recorded']);
        if (!plain || !slowRecorded || !normalRecorded) throw new Error('missing deskgate columns');
        const columns = [plain, { ...slowRecorded, column: /** @type {const} */ ('deskgate-recorded-slow-disk') }, normalRecorded];
        // An untimed session of the full size each: the heaps have grown to what such a session needs.
        for (const way of columns) await receive(way.endpoint('source'), bytes);
        await takeRecordings(slow.recordings);
        await takeRecordings(normal.recordings);

        await alternate(
          ctx.throughputRounds,
          columns,
          async (way, round) => {
            const dir = way.relay.recordings;
            const pid = /** @type {number} */ (way.pid('source'));
            const { result, before, peak } = await rssAround(pid, async () => {
              const seconds = await receive(way.endpoint('source'), bytes);
              // Sampled until the recording is finished: the writer may still hold a batch.
              return { seconds, recordings: way.column === 'deskgate' || !dir ? [] : await takeRecordings(dir) };
            });
            record('growth', way.column, (peak - before) / MiB);
            record('before', way.column, before / MiB);
            record('rate', way.column, bytes / result.seconds / MB);
            for (const recording of result.recordings) {
              record('file', way.column, recording.bytes / MiB);
              record('held', way.column, (100 * recording.screenBytes) / bytes);
              const why =
                recording.stopped !== undefined
                  ? `Stopped record (kind 4): "${recording.stopped}"`
                  : recording.ended
                    ? undefined
                    : 'no End and no Stopped record';
              if (why !== undefined) stopped.set(way.column, [...(stopped.get(way.column) ?? []), { why, bytes: recording.bytes }]);
            }
            ctx.log(
              `round ${round + 1} ${way.column}: RSS ${mib(before)} + ${mib(peak - before)}, ${(bytes / result.seconds / MB).toFixed(0)} MB/s` +
                result.recordings.map((r) => `, file ${mib(r.bytes)}${r.stopped ? ` (stopped: ${r.stopped})` : ''}`).join(''),
            );
          },
          ctx.signal,
        );

        // Policy `end`, once: the client must see the session closed with 4507.
        ctx.signal?.throwIfAborted();
        const closed = await receive(slow.endpoint(`source${ENDING}`), bytes).then(
          () => 'not closed: every byte arrived',
          (/** @type {Error} */ err) => err.message,
        );
        const [file] = await takeRecordings(slow.recordings);
        const code = /closed with (\d+)/.exec(closed)?.[1];
        notes.push(
          `onFailure: 'end', once on the slow disk: ${code === '4507' ? 'the session was closed with 4507, as it should' : '**not closed with 4507**'} — the client saw "${closed}"; ` +
            `its file: ${file ? `${mib(file.bytes)}, ${mib(file.screenBytes)} of the stream, ${file.ended ? 'an End record' : 'no End record'}` : 'none'}.`,
        );
        ctx.log(notes.at(-1) ?? '');
      }),
    );
  });

  const metrics = [
    { label: 'RSS growth (MiB)', digits: 1, rounds: m.growth ?? {}, summary: /** @type {const} */ ('max'), compare: false },
    { label: 'RSS growth, median (MiB)', digits: 1, rounds: m.growth ?? {}, compare: false },
    { label: 'RSS before the session (MiB)', digits: 1, rounds: m.before ?? {}, compare: false },
    { label: 'MB/s', digits: 0, rounds: m.rate ?? {} },
    { label: 'recording file size (MiB)', digits: 1, rounds: m.file ?? {}, compare: false },
    { label: 'bytes relayed that are in the recording (%)', digits: 2, rounds: m.held ?? {}, compare: false },
  ];
  const [worst, median] = metrics.map(summarize);
  const slowGrowth = worst?.['deskgate-recorded-slow-disk'] ?? NaN;
  const size = `${bytes / MiB} MiB`;
  /** @type {Partial<Record<import('../report.js').Column, string>>} */
  const titles = { deskgate: 'plain, slow-disk process', 'deskgate-recorded-slow-disk': 'recorded, slow disk', 'deskgate-recorded': 'recorded, normal disk' };
  return [
    {
      number: 12,
      title: 'Recording to a slow disk (gateway memory)',
      setup:
        `${size} through one session after the RFB handshake; the disk throttled to ${DISK_RATE / MB} MB/s in the recording process; ` +
        `VmRSS sampled every ${SAMPLE_MS} ms until the recording is finished; ${ctx.throughputRounds} rounds, median unless said`,
      columns: ['deskgate', 'deskgate-recorded-slow-disk', 'deskgate-recorded'],
      titles,
      ratios: [
        ['deskgate-recorded-slow-disk', 'deskgate'],
        ['deskgate-recorded', 'deskgate'],
      ],
      metrics,
      goals: [
        goal(
          `memory growth with a slow disk under ${GOAL_GROWTH_MIB} MiB (worst round)`,
          Number.isFinite(slowGrowth) ? slowGrowth < GOAL_GROWTH_MIB : undefined,
          `${slowGrowth.toFixed(1)} MiB; a plain session of the same process ${worst?.deskgate.toFixed(1)} MiB, a recorded one on the normal disk ${worst?.['deskgate-recorded'].toFixed(1)} MiB (median ${median?.['deskgate-recorded'].toFixed(1)})`,
        ),
      ],
      notes: [
        `The slow disk: bench/slow-disk.js preloaded (node --import) into one deskgate process delays every FileHandle write and writev by its bytes ÷ ${DISK_RATE / MB} MB/s, one write after another. The plain and the slow-disk recorded sessions are desktops of that process; the normal-disk recording is a second deskgate process without it. Every recorded desktop has onFailure: 'continue' and recordings.maxQueuedBytes at its default (8 MiB).`,
        ...[...stopped].map(([column, files]) => {
          const sizes = files.map((f) => f.bytes / MiB);
          return (
            `${titles[column]}: the recording stopped in ${files.length} of ${ctx.throughputRounds} rounds (e.g. ${files[0]?.why}), the file holding ` +
            `${Math.min(...sizes).toFixed(2)}–${Math.max(...sizes).toFixed(2)} MiB; the session went on to its last byte.`
          );
        }),
        ...notes,
      ],
    },
  ];
}
