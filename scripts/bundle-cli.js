/**
 * Bundles the `deskgate` command into one file, dist/cli.js, over the one tsc wrote.
 *
 * Start-up is mostly module loading: the unbundled command opens ~200 files (zod alone is
 * ~100) and took 400-440 ms to a healthy /healthz on the 2-vCPU benchmark machine, the
 * bundle 270-300 ms (bare `node -e ''`: 110-140 ms). The rest of dist/ stays tsc's output
 * for `import 'deskgate'`.
 *
 *   node scripts/bundle-cli.js      (part of npm run build, after tsc)
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = `${ROOT}src/`;
const OUT = `${ROOT}dist/cli.js`;

/**
 * zod re-exports all of its ~50 locales (390 KiB of the 1.4 MB bundle) and
 * uses English only: keep just that one (bundle -390 KiB, start-up about -15 ms).
 * @type {import('esbuild').Plugin}
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(bundle) {
    bundle.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, ({ importer, resolveDir }) => {
      if (!/node_modules\/zod\/v4\/(classic|core)\//.test(importer)) return undefined;
      return { path: `${resolveDir}/../locales/index.js`, namespace: 'zod-english-only' };
    });
    bundle.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, ({ path }) => ({
      contents: `export { default as en } from ${JSON.stringify(`${dirname(path)}/en.js`)};`,
      resolveDir: dirname(path),
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: [`${SRC}cli/main.ts`],
  outfile: OUT,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  // Native addons (argon2 for password mode) and ws's optional peer: loaded (or found missing) at run time.
  // pino-pretty too: loaded only for a terminal, so a service's start-up never parses it.
  external: ['bufferutil', 'utf-8-validate', '@node-rs/argon2', 'pino-pretty'],
  // ws and pino are CommonJS and require() Node's built-ins, which an ES module lacks.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  plugins: [zodEnglishOnly],
  logLevel: 'warning',
});
