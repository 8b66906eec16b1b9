/**
 * deskgate's benchmark: deskgate against websockify and a direct TCP connection, scenario
 * by scenario, rounds alternating between them; prints medians and ratios. The VNC side
 * speaks RFB 3.8 and the client does the viewer's handshake over every transport before it
 * measures; some scenarios add deskgate variants (a view-only session, a gateway-held VNC
 * password, a recorded desktop) as columns of their own.
 *
 *   npm run bench [-- --quick] [--json FILE] [--markdown FILE] [--only ID,ID] [--cpu-prof DIR]
 *
 * Progress goes to stderr, the tables to stdout. Every process the run starts is stopped
 * at the end, on a failure and on Ctrl-C; every scenario has a deadline.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { DESKGATE_CLI, WEBSOCKIFY } from './relays.js';
import { killAllNow, machineCpuSeconds, openFileLimits, stopAll } from './processes.js';
import { COLUMN_TITLES, markdownReport, summarize, textSection } from './report.js';
import { withTimeout } from './timeout.js';
import * as throughputDown from './scenarios/throughput-down.js';
import * as throughputUp from './scenarios/throughput-up.js';
import * as latency from './scenarios/latency.js';
import * as concurrency from './scenarios/concurrency.js';
import * as slowBrowser from './scenarios/slow-browser.js';
import * as startup from './scenarios/startup.js';
import * as setup from './scenarios/setup.js';
import * as cluster from './scenarios/cluster.js';
import * as recordingSlowDisk from './scenarios/recording-slow-disk.js';

/**
 * What every scenario gets.
 * @typedef {object} Context
 * @property {boolean} quick
 * @property {number} throughputRounds rounds of the throughput and latency scenarios
 * @property {number} otherRounds rounds of the others
 * @property {number} sessions concurrent sessions for deskgate and direct (fewer if the fd limit is low)
 * @property {number} sessionsWanted what the goal asks for
 * @property {string[]} nodeArgs extra node flags for deskgate, e.g. --cpu-prof
 * @property {AbortSignal} [signal] aborted when the scenario's deadline passes: start no new round or process
 * @property {(message: string) => void} log progress, to stderr
 */

/** Each scenario with its deadline in minutes (quick, full): a stuck one fails, the run goes on. */
const SCENARIOS = [
  { id: 'throughput-down', module: throughputDown, minutes: [1, 5] },
  { id: 'throughput-up', module: throughputUp, minutes: [1, 4] },
  { id: 'latency', module: latency, minutes: [1, 3] },
  { id: 'concurrency', module: concurrency, minutes: [1, 5] },
  { id: 'slow-browser', module: slowBrowser, minutes: [1, 4] },
  { id: 'startup', module: startup, minutes: [1, 2] },
  { id: 'setup', module: setup, minutes: [1, 3] },
  { id: 'cluster', module: cluster, minutes: [2, 8] },
  { id: 'recording-slow-disk', module: recordingSlowDisk, minutes: [1, 4] },
];

const SESSIONS = { quick: 1_000, full: 10_000 };
/** File descriptors the gateway needs besides two per session (listener, stdio, epoll, ...), with room to spare. */
const FD_MARGIN = 64;

const USAGE = `Usage: npm run bench [-- options]
  --quick            reduced sizes and rounds (under two minutes)
  --json FILE        write the raw results (every round) as JSON
  --markdown FILE    write the results section as Markdown
  --only IDS         comma-separated subset of: ${SCENARIOS.map((s) => s.id).join(', ')}
  --cpu-prof DIR     run deskgate under node --cpu-prof, profiles written to DIR at exit
  -h, --help`;

function parseFlags() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      markdown: { type: 'string' },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  return values;
}

/** @param {string} command @param {string[]} args */
function commandOutput(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function machine() {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return {
    cpu,
    cores: String(availableParallelism()),
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: `Linux ${release()}`,
    node: process.version,
    websockify: commandOutput('dpkg-query', ['-W', '-f', '${Version}', 'websockify']),
    deskgate: `${pkg.version} (${commandOutput('git', ['describe', '--always', '--dirty'])})`,
    'open files limit (soft, hard)': `${openFileLimits().soft}, ${openFileLimits().hard}`,
    // Other work on the machine moves every number here; the load average says whether there was any.
    'load average at start': loadAverage(),
    date: new Date().toISOString(),
  };
}

/**
 * The share of the machine's CPU, in percent, that processes outside the benchmark used
 * since `before`: anything well above 0 means the numbers of that time were disturbed.
 * @param {{ busy: number, ours: number }} before from machineCpuSeconds()
 * @param {number} since Date.now() when `before` was read
 */
function othersPercent(before, since) {
  const now = machineCpuSeconds();
  const capacity = (availableParallelism() * (Date.now() - since)) / 1000;
  return (100 * Math.max(0, now.busy - before.busy - (now.ours - before.ours))) / capacity;
}

/** Watch the machine for two seconds before starting; say so if something else is busy. */
async function othersBeforeStart() {
  const before = machineCpuSeconds();
  const since = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const percent = othersPercent(before, since);
  if (percent > 10) process.stderr.write(`warning: other processes use ${percent.toFixed(0)}% of this machine's CPU; the numbers will be disturbed\n`);
  return `${percent.toFixed(0)}%`;
}

function loadAverage() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/**
 * How many sessions the concurrency scenario can open: the gateway holds two descriptors per
 * session (browser and VNC side), and the limit is inherited from this process.
 * @param {number} wanted
 */
function sessionsWithinFdLimit(wanted) {
  const { soft, hard } = openFileLimits();
  const fit = Math.floor((soft - FD_MARGIN) / 2);
  if (fit >= wanted) return wanted;
  const n = (/** @type {number} */ value) => value.toLocaleString('en-US');
  process.stderr.write(
    `\nThe open-files limit is ${n(soft)}: ${n(wanted)} concurrent sessions need about ${n(2 * wanted + FD_MARGIN)} ` +
      `descriptors in the gateway (two per session).\nRun through "npm run bench", which raises the limit with ` +
      `"ulimit -n 200000"; above the hard limit (${n(hard)}) that needs root with CAP_SYS_RESOURCE.\n` +
      `Going on with ${n(fit)} sessions; the ${n(wanted)}-session goal is reported as unverified.\n\n`,
  );
  return fit;
}

/**
 * Run one scenario under its deadline. Whatever happens, nothing it started keeps running.
 * @param {typeof SCENARIOS[number]} scenario
 * @param {Context} ctx
 * @returns {Promise<import('./report.js').Section[]>}
 */
async function runScenario(scenario, ctx) {
  const minutes = scenario.minutes[ctx.quick ? 0 : 1] ?? 5;
  const deadline = new AbortController();
  const cpuBefore = machineCpuSeconds();
  const since = Date.now();
  try {
    const sections = await withTimeout(scenario.module.run({ ...ctx, signal: deadline.signal }), minutes * 60_000, `scenario ${scenario.id}`);
    const others = othersPercent(cpuBefore, since).toFixed(0);
    for (const section of sections) {
      section.notes.push(`While it ran, other processes on the machine used ${others}% of its CPU (benchmark processes excluded).`);
    }
    return sections;
  } finally {
    deadline.abort(); // a scenario that timed out may still be running: no new rounds, and
    await stopAll(); // its processes go, so that what it still waits for fails fast
  }
}

async function main() {
  const flags = parseFlags();
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const only = flags.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown?.length) throw new Error(`unknown scenario ${unknown.join(', ')}\n${USAGE}`);
  if (!existsSync(DESKGATE_CLI)) throw new Error(`${DESKGATE_CLI} is missing: run "npm run build" first (npm run bench does)`);
  if (!existsSync(WEBSOCKIFY)) throw new Error(`${WEBSOCKIFY} is missing: install the Debian package websockify`);

  const quick = flags.quick ?? false;
  const sessionsWanted = quick ? SESSIONS.quick : SESSIONS.full;
  /** @type {Context} */
  const ctx = {
    quick,
    throughputRounds: quick ? 3 : 5,
    otherRounds: quick ? 1 : 3,
    sessionsWanted,
    sessions: sessionsWithinFdLimit(sessionsWanted),
    nodeArgs: flags['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${flags['cpu-prof']}`] : [],
    log: (message) => process.stderr.write(`  ${message}\n`),
  };
  /** @type {Record<string, string>} the machine, then the load at the end is added */
  const info = { ...machine(), 'CPU used by other processes just before': await othersBeforeStart() };
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  process.stdout.write(
    `${command}\n${Object.entries(info)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n')}\n\n`,
  );

  /** @type {import('./report.js').Section[]} */
  const sections = [];
  /** @type {string[]} */
  const failures = [];
  for (const scenario of SCENARIOS.filter((s) => !only || only.includes(s.id))) {
    const started = Date.now();
    process.stderr.write(`${scenario.id}…\n`);
    try {
      const result = await runScenario(scenario, ctx);
      for (const section of result) process.stdout.write(`${textSection(section)}\n`);
      sections.push(...result);
    } catch (err) {
      failures.push(`${scenario.id}: ${/** @type {Error} */ (err).message}`);
      process.stderr.write(`${scenario.id} FAILED: ${/** @type {Error} */ (err).stack}\n`);
    }
    process.stderr.write(`${scenario.id} took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }

  sections.sort((a, b) => a.number - b.number);
  info['load average at end'] = loadAverage();
  const goals = sections.flatMap((s) => s.goals.map((g) => `${s.number}. ${g.goal}: ${g.status} (${g.detail})`));
  process.stdout.write(`Goals\n${goals.map((g) => `  ${g}`).join('\n')}\n`);
  if (failures.length) process.stdout.write(`Failed\n${failures.map((f) => `  ${f}`).join('\n')}\n`);

  if (flags.json) {
    const raw = sections.map((s) => ({ ...s, metrics: s.metrics.map((m) => ({ ...m, summarized: summarize(m) })) }));
    writeFileSync(flags.json, `${JSON.stringify({ command, machine: info, columns: COLUMN_TITLES, sections: raw, failures }, null, 2)}\n`);
  }
  if (flags.markdown) writeFileSync(flags.markdown, markdownReport({ machine: info, command, sections, failures }));
  return failures.length ? 1 : 0;
}

process.on('exit', killAllNow);
for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping everything the benchmark started\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

try {
  process.exitCode = await main();
} catch (err) {
  process.stderr.write(`bench: ${/** @type {Error} */ (err).message}\n`);
  process.exitCode = 2;
} finally {
  await stopAll();
}
