/**
 * The processes the benchmark starts, and what /proc says about them.
 *
 * Every process started here is tracked, so that one call — after a scenario, on a
 * failure, on Ctrl-C or at exit — stops all of them and the children they forked
 * (websockify forks one per connection). Nothing else is ever signalled.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Clock ticks per second of the utime/stime fields in /proc/PID/stat. */
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * @typedef {object} Proc
 * @property {string} name
 * @property {number} pid
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<string>} exited resolves with how it exited, e.g. "code 1" or "signal SIGTERM"
 * @property {() => boolean} running
 * @property {() => string} outputTail the last lines it wrote, for error messages
 * @property {() => Promise<void>} stop SIGTERM it and its children, SIGKILL after a deadline
 */

/** @type {Set<Proc>} */
const started = new Set();

const STOP_DEADLINE_MS = 3000;
const OUTPUT_TAIL_CHARS = 2000;

/**
 * Start a tracked process. Its stdout and stderr are kept as a short tail for error messages.
 * @param {string} name
 * @param {string} command
 * @param {string[]} args
 * @param {{ ipc?: boolean }} [options]
 * @returns {Proc}
 */
export function startProcess(name, command, args, options = {}) {
  /** @type {import('node:child_process').StdioOptions} */
  const stdio = options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'];
  const child = spawn(command, args, { stdio });
  if (child.pid === undefined) throw new Error(`cannot start ${name} (${command})`);
  const pid = child.pid;
  let tail = '';
  /** @param {Buffer} chunk */
  const keepTail = (chunk) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout?.on('data', keepTail);
  child.stderr?.on('data', keepTail);
  let alive = true;
  /** @type {Promise<string>} */
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      alive = false;
      started.delete(proc);
      resolve(signal ? `signal ${signal}` : `code ${code}`);
    });
  });
  child.on('error', keepTailOfError);
  /** @param {Error} err */
  function keepTailOfError(err) {
    tail += `\n${err.message}`;
  }
  /** @type {Proc} */
  const proc = {
    name,
    pid,
    child,
    exited,
    running: () => alive,
    outputTail: () => tail.trim(),
    stop: () => stopProcess(proc),
  };
  started.add(proc);
  return proc;
}

/** @param {Proc} proc */
async function stopProcess(proc) {
  if (!proc.running()) return;
  const descendants = descendantsOf(proc.pid);
  signal(proc.pid, 'SIGTERM');
  for (const pid of descendants) signal(pid, 'SIGTERM');
  const deadline = sleep(STOP_DEADLINE_MS).then(() => 'deadline');
  if ((await Promise.race([proc.exited, deadline])) === 'deadline') signal(proc.pid, 'SIGKILL');
  await proc.exited;
  // The forked children of websockify finish their connection on SIGTERM; cut stragglers.
  for (const pid of descendants) if (isAlive(pid)) signal(pid, 'SIGKILL');
}

/** Stop every process this benchmark started that is still running. */
export async function stopAll() {
  await Promise.all([...started].map((proc) => proc.stop()));
}

/** Last resort at exit (synchronous): SIGKILL whatever is still running. */
export function killAllNow() {
  for (const proc of started) {
    for (const pid of descendantsOf(proc.pid)) signal(pid, 'SIGKILL');
    signal(proc.pid, 'SIGKILL');
  }
}

/** @param {number} pid @param {NodeJS.Signals} name */
function signal(pid, name) {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

/** @param {number} pid */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** @param {string} file */
function readProc(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // the process is gone
  }
}

/**
 * The direct children of a process, from /proc/PID/task/TID/children.
 * @param {number} pid
 * @returns {number[]}
 */
export function childrenOf(pid) {
  let tasks;
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tasks.flatMap((tid) => readProc(`/proc/${pid}/task/${tid}/children`).split(' ').filter(Boolean).map(Number));
}

/** @param {number} pid @returns {number[]} */
export function descendantsOf(pid) {
  return childrenOf(pid).flatMap((child) => [child, ...descendantsOf(child)]);
}

/** Resident memory of one process in bytes (VmRSS), 0 when it is gone. @param {number} pid */
export function rssBytes(pid) {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readProc(`/proc/${pid}/status`));
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * Resident memory of a process and all its descendants. For websockify (one forked process
 * per connection) this is the sum over the parent and its children, which counts the pages
 * they share copy-on-write once per process; `treePssBytes` shares them out instead.
 * @param {number} pid
 */
export function treeRssBytes(pid) {
  return [pid, ...descendantsOf(pid)].reduce((sum, p) => sum + rssBytes(p), 0);
}

/** Proportional set size of a process and its descendants (shared pages split between them). @param {number} pid */
export function treePssBytes(pid) {
  return [pid, ...descendantsOf(pid)].reduce((sum, p) => {
    const match = /^Pss:\s+(\d+) kB/m.exec(readProc(`/proc/${p}/smaps_rollup`));
    return sum + (match ? Number(match[1]) * 1024 : 0);
  }, 0);
}

/** @typedef {{ user: number, system: number }} CpuTimes seconds */

/**
 * CPU seconds of a process, including the children it has reaped (cutime, cstime) and the
 * ones still running. Read it when the process has no live children (see
 * `settledCpuTimes`) so that a child exiting mid-read is counted exactly once.
 * @param {number} pid
 * @returns {CpuTimes}
 */
export function treeCpuTimes(pid) {
  const ticks = [pid, ...descendantsOf(pid)].map(statTicks);
  return {
    user: ticks.reduce((sum, t) => sum + t.user, 0) / CLK_TCK,
    system: ticks.reduce((sum, t) => sum + t.system, 0) / CLK_TCK,
  };
}

/** User (utime + cutime) and system (stime + cstime) ticks from /proc/PID/stat. @param {number} pid */
function statTicks(pid) {
  const stat = readProc(`/proc/${pid}/stat`);
  // The command name (field 2) may contain spaces: split after its closing parenthesis.
  // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
  const field = (/** @type {number} */ n) => Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[n - 3] ?? 0);
  return { user: field(14) + field(16), system: field(15) + field(17) };
}

/** Open file descriptors of a process. @param {number} pid */
export function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/**
 * Wait until a process has no children (websockify has reaped its per-connection forks).
 * @param {number} pid
 * @param {number} timeoutMs
 */
export async function waitForNoChildren(pid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (childrenOf(pid).length > 0) {
    if (Date.now() > deadline) throw new Error(`process ${pid} still has children ${timeoutMs} ms after its connections closed`);
    await sleep(10);
  }
}

/** The limits on open files of this process (children inherit them). */
export function openFileLimits() {
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readProc('/proc/self/limits'));
  const parse = (/** @type {string | undefined} */ value) => (value === 'unlimited' ? Infinity : Number(value ?? 1024));
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) };
}

/**
 * CPU times of a relay once it is idle: after a moment to finish tearing a session down and
 * once its forked children (websockify) are reaped into cutime/cstime. NaN without a pid.
 * @param {number | undefined} pid
 * @returns {Promise<CpuTimes>}
 */
export async function settledCpuTimes(pid) {
  if (pid === undefined) return { user: NaN, system: NaN };
  await sleep(100);
  await waitForNoChildren(pid, 10_000);
  return treeCpuTimes(pid);
}

/**
 * CPU seconds the whole machine has been busy (/proc/stat) and how many of them were this
 * benchmark's: itself plus every child it has reaped. The difference over a scenario is
 * what other processes took from it.
 */
export function machineCpuSeconds() {
  const fields = readProc('/proc/stat').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
  const busy = fields.slice(0, 8).reduce((sum, value, i) => (i === 3 || i === 4 ? sum : sum + value), 0);
  const own = statTicks(process.pid);
  return { busy: busy / CLK_TCK, ours: (own.user + own.system) / CLK_TCK };
}
