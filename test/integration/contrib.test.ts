/**
 * The deployment files in contrib/, checked by what checks them here: systemd-analyze verifies
 * the unit (pointed at the built command, which it requires to exist) and rates its hardening.
 * No container engine runs here: the Containerfile is read instruction by instruction and held
 * to the repository (files, scripts, bin, Node version, default port), its health check is run
 * against a real gateway, and its environment is given to the built command.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runDeskgate } from '../helpers/cli-process.js';
import { startGateway } from '../helpers/gateway.js';
import { freePort, requireCommand } from '../helpers/processes.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = join(ROOT, 'contrib/deskgate.service');
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'deskgate-contrib-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('contrib/deskgate.service', () => {
  requireCommand('systemd-analyze', 'systemd');
  const unit = join(dir, 'deskgate.service');
  // As installed by npm (/usr/bin/deskgate), here the command this checkout built.
  writeFileSync(unit, readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/bin/deskgate', `ExecStart=${process.execPath} ${CLI}`));

  it('passes systemd-analyze verify', () => {
    const output = execFileSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(output).toBe('');
  });

  it('is hardened: systemd rates its exposure below 2 (of 10)', () => {
    const report = execFileSync('systemd-analyze', ['security', '--offline=true', unit], { encoding: 'utf8' });
    const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(report)?.[1]);
    expect(level).toBeLessThan(2);
  });
});

/** The Containerfile's instructions, continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'))
    .map((line) => {
      const [op = '', ...rest] = line.trim().split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

describe('contrib/Containerfile', () => {
  const steps = instructions(readFileSync(join(ROOT, 'contrib/Containerfile'), 'utf8'));
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    engines: { node: string };
    bin: Record<string, string>;
    scripts: Record<string, string>;
  };
  const all = (op: string): string[] => steps.filter((s) => s.op === op).map((s) => s.args);
  const env = Object.fromEntries(all('ENV').flatMap((args) => [...args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]])));

  it('builds on the Node release the package needs, from files and scripts the repository has', () => {
    const minimum = Number(/\d+/.exec(manifest.engines.node)?.[0]);
    for (const from of all('FROM')) expect(Number(/^node:(\d+)/.exec(from)?.[1]), from).toBeGreaterThanOrEqual(minimum);
    for (const copy of all('COPY').filter((args) => !args.startsWith('--from'))) {
      for (const source of copy.split(' ').slice(0, -1)) expect(existsSync(join(ROOT, source)), source).toBe(true);
    }
    for (const [, script] of all('RUN')
      .join(' ')
      .matchAll(/npm run (\S+)/g))
      expect(manifest.scripts, script).toHaveProperty(script as string);
    // COPY . . must not bring a host's node_modules or dist over the ones built inside.
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist']));
  });

  it("runs the package's command as an unprivileged user, on the port it exposes", () => {
    expect(JSON.parse(all('ENTRYPOINT')[0] ?? '[]')).toEqual(Object.keys(manifest.bin));
    expect(all('USER')).toEqual(['node']);
    expect(env.DESKGATE_LISTEN).toBe(`0.0.0.0:${all('EXPOSE')[0]}`);
  });

  it('has a health check that tells a healthy gateway from none', async () => {
    const check = JSON.parse(/CMD (\[.*\])$/.exec(all('HEALTHCHECK')[0] ?? '')?.[1] ?? '[]') as string[];
    expect(check[0]).toBe('node');
    const port = /127\.0\.0\.1:(\d+)/.exec(check.join(' '))?.[1];
    expect(port).toBe(all('EXPOSE')[0]);
    const { gateway, port: live } = await startGateway();
    try {
      // Asynchronously: the gateway answering it runs in this process.
      const run = async (p: number): Promise<number | null> => {
        const child = spawn(
          process.execPath,
          check.slice(1).map((arg) => arg.replace(`:${port}/`, `:${p}/`)),
          { stdio: 'ignore' },
        );
        const [code] = (await once(child, 'exit')) as [number | null];
        return code;
      };
      expect(await run(live)).toBe(0);
      expect(await run(await freePort())).toBe(1);
    } finally {
      await gateway.close();
    }
  });

  it("refuses to start with the image's environment until the config sets authentication", async () => {
    const imageEnv = { DESKGATE_LISTEN: env.DESKGATE_LISTEN as string, DESKGATE_LOG_FORMAT: env.DESKGATE_LOG_FORMAT as string };
    const refused = await runDeskgate([], { env: imageEnv });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('listening on 0.0.0.0 without authentication');
  });
});
