/**
 * Every wait in the benchmark has a deadline: a stuck step fails with a message that says
 * what it was waiting for instead of hanging the run.
 */

/**
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what e.g. "deskgate: 1 GiB VNC -> browser"
 * @returns {Promise<T>}
 */
export function withTimeout(promise, ms, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const expired = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${(ms / 1000).toFixed(1)} s`)), ms);
  });
  return /** @type {Promise<T>} */ (Promise.race([promise, expired])).finally(() => clearTimeout(timer));
}
