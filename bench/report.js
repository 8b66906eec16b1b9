/**
 * Results as the scenarios hand them back, and the three ways they leave the benchmark:
 * a table per scenario on the terminal, a Markdown results section, and raw JSON.
 */
import { formatNumber, formatRatio, median, ratio } from './stats.js';

/** @typedef {import('./relays.js').RelayName} RelayName */
/** @typedef {Partial<Record<RelayName, number[]>>} Rounds */

/**
 * @typedef {object} Metric
 * @property {string} label what and in which unit, e.g. "MB/s"
 * @property {number} digits decimals shown
 * @property {Rounds} rounds one value per round and relay
 * @property {'median' | 'max' | 'sum'} [summary] how rounds become one number (default median)
 * @property {boolean} [compare] false: no ratios (e.g. websockify ran with fewer sessions)
 */

/** @typedef {{ goal: string, status: 'met' | 'not met' | 'unverified', detail: string }} Goal */

/**
 * @typedef {object} Section
 * @property {number} number the scenario's number in the issue
 * @property {string} title
 * @property {string} setup sizes and rounds, one line
 * @property {Metric[]} metrics
 * @property {Goal[]} goals
 * @property {string[]} notes
 */

/** @type {RelayName[]} */
export const RELAYS = ['deskgate', 'websockify', 'direct'];

/**
 * A metric's rounds reduced to one number per relay.
 * @param {Metric} metric
 * @returns {Record<RelayName, number>}
 */
export function summarize(metric) {
  const reduce = {
    median,
    max: (/** @type {number[]} */ values) => (values.length ? Math.max(...values) : NaN),
    sum: (/** @type {number[]} */ values) => (values.length ? values.reduce((a, b) => a + b, 0) : NaN),
  }[metric.summary ?? 'median'];
  return {
    deskgate: reduce(metric.rounds.deskgate ?? []),
    websockify: reduce(metric.rounds.websockify ?? []),
    direct: reduce(metric.rounds.direct ?? []),
  };
}

/**
 * @param {string} text
 * @param {boolean | undefined} ok undefined: could not be measured
 * @param {string} detail the numbers it was decided on
 * @returns {Goal}
 */
export function goal(text, ok, detail) {
  return { goal: text, status: ok === undefined ? 'unverified' : ok ? 'met' : 'not met', detail };
}

/** @param {Metric} metric */
function rows(metric) {
  const s = summarize(metric);
  const label = metric.summary && metric.summary !== 'median' ? `${metric.label} (${metric.summary} of rounds)` : metric.label;
  return [
    label,
    formatNumber(s.deskgate, metric.digits),
    formatNumber(s.websockify, metric.digits),
    formatNumber(s.direct, metric.digits),
    metric.compare === false ? '' : formatRatio(ratio(s.deskgate, s.websockify)),
    metric.compare === false ? '' : formatRatio(ratio(s.deskgate, s.direct)),
  ];
}

const HEADER = ['', 'deskgate', 'websockify', 'direct', 'deskgate ÷ websockify', 'deskgate ÷ direct'];

/**
 * The terminal table of one section.
 * @param {Section} section
 */
export function textSection(section) {
  const table = [HEADER, ...section.metrics.map(rows)];
  const widths = HEADER.map((_, col) => Math.max(...table.map((row) => (row[col] ?? '').length)));
  const line = (/** @type {string[]} */ row) =>
    row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join('  ');
  return [
    `${section.number}. ${section.title} — ${section.setup}`,
    ...table.map(line),
    ...section.goals.map((g) => `  goal: ${g.goal}: ${g.status.toUpperCase()} (${g.detail})`),
    ...section.notes.map((note) => `  note: ${note}`),
    '',
  ].join('\n');
}

/**
 * The Markdown results section: machine, command, then one table and goal list per scenario.
 * @param {{ machine: Record<string, string>, command: string, sections: Section[], failures: string[] }} results
 */
export function markdownReport({ machine, command, sections, failures }) {
  const out = ['## Results', ''];
  out.push('| machine | |', '| --- | --- |', ...Object.entries(machine).map(([key, value]) => `| ${key} | ${value} |`), '');
  out.push(`Command: \`${command}\``, '');
  const goals = sections.flatMap((s) => s.goals.map((g) => ({ ...g, number: s.number })));
  out.push('### Goals', '', '| # | goal | result | status |', '| --- | --- | --- | --- |');
  for (const g of goals) out.push(`| ${g.number} | ${g.goal} | ${g.detail} | ${g.status === 'met' ? 'met' : `**${g.status}**`} |`);
  out.push('');
  for (const section of sections) {
    out.push(`### ${section.number}. ${section.title}`, '', section.setup, '');
    out.push(
      `| ${HEADER.join(' | ')} |`,
      `| --- | ${HEADER.slice(1)
        .map(() => '---:')
        .join(' | ')} |`,
    );
    for (const metric of section.metrics) out.push(`| ${rows(metric).join(' | ')} |`);
    out.push('');
    for (const g of section.goals) out.push(`- Goal: ${g.goal} — **${g.status}** (${g.detail})`);
    for (const note of section.notes) out.push(`- ${note}`);
    out.push('');
  }
  if (failures.length) out.push('### Failed scenarios', '', ...failures.map((f) => `- ${f}`), '');
  return out.join('\n');
}
