/**
 * The package as npm publishes it: what `npm pack` puts in the tarball (LICENSE, README, dist,
 * the static web files; no source maps, build info, tests or benchmarks), and whether a
 * TypeScript user with `strict` and `skipLibCheck: false` can compile against it, give it a
 * console-like logger, and run it. The tarball is unpacked into a temporary project whose
 * node_modules holds only the package's own dependencies (linked from this repository's),
 * @types/node and this repository's TypeScript: no network. Uses the built dist/ (npm test
 * builds first).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

interface PackResult {
  filename: string;
  files: { path: string; size: number }[];
}

/** A library user's settings: the strict ones, and the declarations of every package checked. */
const CONSUMER_TSCONFIG = {
  compilerOptions: {
    strict: true,
    skipLibCheck: false,
    module: 'nodenext',
    moduleResolution: 'nodenext',
    target: 'es2022',
    lib: ['es2023'],
    types: ['node'],
  },
  files: ['main.ts'],
};

/** Uses the public API the README shows, with three kinds of logger: one of the user's own, console and pino. */
const CONSUMER_SOURCE = `
import { pino } from 'pino';
import { createGateway, events, parseConfig, type Logger, type SessionSnapshot } from 'deskgate';

const seen: string[] = [];
const note = (fields: object | string, message?: string): void => {
  seen.push(typeof fields === 'string' ? fields : (message ?? ''));
};
const small: Logger = { debug: note, info: note, warn: note, error: note };
const fromConsole: Logger = console;
const fromPino: Logger = pino({ level: 'silent' });

const gateway = await createGateway(parseConfig({ listen: '127.0.0.1:0' }), { logger: small });
const stop = events.sessionEnded.subscribe((s) => {
  const code: number = s.code;
  seen.push(\`ended \${s.desktop} \${code}\`);
});
const { port } = await gateway.listen();
const health = await fetch(\`http://127.0.0.1:\${port}/healthz\`);
const sessions: SessionSnapshot[] = gateway.sessions();
stop();
await gateway.close();
console.log(JSON.stringify({ seen, health: health.status, sessions: sessions.length, loggers: [fromConsole, fromPino].length }));
`;

let work: string;
let packed: PackResult;
let consumer: string;

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

beforeAll(async () => {
  for (const built of ['dist/index.js', 'dist/index.d.ts', 'dist/cli.js']) {
    if (!existsSync(join(ROOT, built))) throw new Error(`${built} is missing: run npm run build first (npm test does)`);
  }
  work = mkdtempSync(join(tmpdir(), 'deskgate-package-'));
  // --ignore-scripts: pack the dist/ that is there; `prepare` would rebuild it under other tests' feet.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT });
  packed = (JSON.parse(stdout) as PackResult[])[0]!;

  consumer = join(work, 'consumer');
  const installed = join(consumer, 'node_modules/deskgate');
  mkdirSync(installed, { recursive: true });
  await run('tar', ['-xzf', join(work, packed.filename), '-C', installed, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  // What npm would hoist beside the package: its dependencies, and the user's own @types/node.
  for (const name of [...Object.keys(manifest.dependencies), '@types/node']) {
    const link = join(consumer, 'node_modules', name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', name), link, 'dir');
  }
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify(CONSUMER_TSCONFIG));
  writeFileSync(join(consumer, 'main.ts'), CONSUMER_SOURCE);
});

describe('npm package', () => {
  it('ships LICENSE, README, dist and the static web files', () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toEqual(
      expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'src/web/static/viewer.js']),
    );
    expect(readFileSync(join(consumer, 'node_modules/deskgate/LICENSE'), 'utf8')).toContain('Copyright (c) 2026 the deskgate authors');
  });

  it('ships no source maps, build info, tests, benchmarks or TypeScript sources', () => {
    const unwanted = packed.files
      .map((f) => f.path)
      .filter(
        (path) =>
          /\.map$|\.tsbuildinfo$/.test(path) || /^(test|bench|scripts|docs)\//.test(path) || (path.startsWith('src/') && !path.startsWith('src/web/static/')),
      );
    expect(unwanted).toEqual([]);
  });

  it('compiles for a user with strict and skipLibCheck: false, with pino, console and a small object as logger', async () => {
    const result = await run('node', [TSC, '-p', consumer]).catch((err: { stdout?: string; stderr?: string }) => err);
    // tsc prints its diagnostics on stdout; none is the pass condition.
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');
  });

  it('runs from the tarball: imports, listens, answers /healthz and logs to the given logger', async () => {
    const { stdout } = await run('node', [join(consumer, 'main.js')], { cwd: consumer, timeout: 15_000 });
    const outcome = JSON.parse(stdout) as { seen: string[]; health: number; sessions: number };
    expect(outcome.health).toBe(200);
    expect(outcome.sessions).toBe(0);
    expect(outcome.seen).toEqual(expect.arrayContaining(['gateway listening', 'gateway stopped']));
  });
});
