/**
 * Small numeric helpers: medians across rounds, percentiles within a round, and the units
 * the report prints (MB = 10^6 bytes for rates, MiB = 2^20 bytes for sizes and memory).
 */

export const MB = 1e6;
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/**
 * The value below which `p` percent of the samples lie (nearest rank on a sorted copy).
 * @param {ArrayLike<number>} samples
 * @param {number} p 0..100
 */
export function percentile(samples, p) {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? NaN;
}

/** @param {ArrayLike<number>} samples */
export function median(samples) {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** @param {number} a @param {number} b */
export function ratio(a, b) {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN;
}

/**
 * A number for a table cell: `digits` decimals, thousands separated, "–" when missing.
 * @param {number | undefined} value
 * @param {number} [digits]
 */
export function formatNumber(value, digits = 1) {
  if (value === undefined || !Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** @param {number} value */
export function formatRatio(value) {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–';
}
