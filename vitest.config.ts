import { defineConfig } from 'vitest/config';

// Integration and browser tests start real Xvnc and Chromium processes: give them time, and
// run test files one after another so two cores are not oversubscribed. `npm run test:unit`
// and its siblings pick a directory (vitest run test/unit); `npm test` runs them all.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
