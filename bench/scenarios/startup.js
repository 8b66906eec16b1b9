/**
 * Scenario 7: start-up. From spawning the process to the first `/healthz` 200 for deskgate,
 * to the first accepted TCP connection for websockify (it has no health route), polling
 * every 2 ms (see relays.js). One untimed start of each first, so both find a warm disk cache.
 */
import { alternate, startRelay } from '../relays.js';
import { goal, summarize } from '../report.js';

/** Where the relays point; nothing listens there and nothing connects during this scenario. */
const TARGETS = { bench: 9 };

/** @param {import('../run.js').Context} ctx @returns {Promise<import('../report.js').Section[]>} */
export async function run(ctx) {
  /** @type {import('../report.js').Rounds} */
  const times = {};
  /** @type {('deskgate' | 'websockify')[]} */
  const names = ['deskgate', 'websockify'];
  for (const name of names) await (await startRelay(name, TARGETS, ctx)).stop();
  await alternate(
    ctx.otherRounds,
    names,
    async (name, round) => {
      const relay = await startRelay(name, TARGETS, ctx);
      await relay.stop();
      (times[name] ??= []).push(relay.startupMs);
      ctx.log(`round ${round + 1} ${name}: ${relay.startupMs.toFixed(0)} ms`);
    },
    ctx.signal,
  );
  const metric = { label: 'spawn → ready (ms)', digits: 0, rounds: times };
  const startup = summarize(metric);
  return [
    {
      number: 7,
      title: 'Start-up',
      setup: `spawn to first /healthz 200 (deskgate) or first accepted connection (websockify), polled every 2 ms, ${ctx.otherRounds} rounds, median`,
      metrics: [metric],
      goals: [goal('deskgate start-up < 300 ms', startup.deskgate < 300, `${startup.deskgate.toFixed(0)} ms`)],
      notes: [],
    },
  ];
}
