import { defineConfig } from 'vitest/config';

// Integration and browser tests start real Xvnc, Chromium and Redis processes: give them
// time, and run test files one after another so two cores are not oversubscribed.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
