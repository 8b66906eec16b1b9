/**
 * Top self-time functions of a V8 CPU profile, e.g. one written by
 * `npm run bench -- --only throughput-down --cpu-prof /tmp/prof`:
 *
 *   node bench/profile-summary.js /tmp/prof/CPU....cpuprofile [count]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

/**
 * @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }} ProfileNode
 * @typedef {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} Profile
 */

/**
 * Self time per function, in microseconds, heaviest first.
 * @param {Profile} profile
 */
export function selfTimes(profile) {
  /** @type {Map<number, ProfileNode>} */
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  /** @type {Map<string, number>} */
  const times = new Map();
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    const where = frame.url ? ` ${shorten(frame.url)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'}${where}`;
    times.set(key, (times.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return [...times].sort((a, b) => b[1] - a[1]);
}

/** @param {string} url */
function shorten(url) {
  const path = url.replace(/^file:\/\//, '');
  return path.startsWith('/') ? relative(process.cwd(), path) : path;
}

const [file, count = '25'] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/profile-summary.js FILE.cpuprofile [count]\n');
  process.exitCode = 2;
} else {
  const entries = selfTimes(JSON.parse(readFileSync(file, 'utf8')));
  const total = entries.reduce((sum, [, us]) => sum + us, 0);
  const busy = entries.filter(([name]) => !/^\((idle|program|garbage collector)\)/.test(name)).reduce((sum, [, us]) => sum + us, 0);
  process.stdout.write(`total ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s in JavaScript and native code\n`);
  for (const [name, us] of entries.slice(0, Number(count))) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(7)} ms  ${name}\n`);
  }
}
