/**
 * The `deskgate` command as users run it: the built dist/cli.js (npm test builds first),
 * its help, its refusals of bad input, start-up to a healthy /healthz, and a graceful stop
 * on SIGTERM that closes sessions with 1001.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../helpers/processes.js';
import { connectWs } from '../helpers/ws-client.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const children = new Set<ChildProcess>();

afterEach(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  children.clear();
});

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, DESKGATE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number);
  return { child, exited, output: () => ({ stdout, stderr }) };
}

describe('deskgate command', () => {
  it('documents every flag in --help', async () => {
    const cli = run(['--help']);
    expect(await cli.exited).toBe(0);
    for (const flag of ['--config', '--listen', '--desktop', '--demo', '--log-level', '--help', '--version']) {
      expect(cli.output().stdout).toContain(flag);
    }
  });

  it('prints its version', async () => {
    const cli = run(['--version']);
    expect(await cli.exited).toBe(0);
    expect(cli.output().stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('names an unknown flag', async () => {
    const cli = run(['--lisen', '127.0.0.1:1']);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toContain('unknown flag --lisen');
  });

  it('names the key, value and expectation of a bad flag value', async () => {
    const cli = run(['--desktop', 'lab1=10.0.0.5']);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toMatch(/desktops\[0\] \(--desktop, DESKGATE_DESKTOP\): got "lab1=10\.0\.0\.5"; expected NAME=HOST:PORT/);
  });

  it('names a bad environment variable value', async () => {
    const cli = run([], { DESKGATE_DEMO: 'maybe' });
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toContain('demo (--demo, DESKGATE_DEMO): got "maybe"; expected true or false');
  });

  it('says which config file could not be read', async () => {
    const cli = run(['--config', '/nonexistent/deskgate.yaml']);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toContain('cannot read config file /nonexistent/deskgate.yaml');
  });

  it('reads desktops from a YAML config file, and adds those given by flag', async () => {
    const port = await freePort();
    const file = join(mkdtempSync(join(tmpdir(), 'deskgate-')), 'deskgate.yaml');
    writeFileSync(file, `listen: 127.0.0.1:${port}\ndesktops:\n  - name: lab1\n    host: 127.0.0.1\n    port: 5901\n    description: Lab one\n`);
    run(['--config', file, '--desktop', 'lab2=127.0.0.1:5902']);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true, 'healthz');
    const dashboard = await (await fetch(`http://127.0.0.1:${port}/`)).text();
    expect(dashboard).toContain('data-desktop="lab1"');
    expect(dashboard).toContain('Lab one');
    expect(dashboard).toContain('data-desktop="lab2"');
    expect(dashboard).not.toContain('data-desktop="demo"');
  });

  it('names the line of a config file that is not valid YAML', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'deskgate-')), 'broken.yaml');
    writeFileSync(file, 'desktops:\n  - name: lab1\n   host: [oops\n');
    const cli = run(['--config', file]);
    expect(await cli.exited).toBe(2);
    expect(cli.output().stderr).toMatch(new RegExp(`config file ${file} is not valid YAML: .*line \\d+`));
  });

  it('starts healthy, then on SIGTERM closes sessions with 1001 and exits 0', async () => {
    const port = await freePort();
    const cli = run(['--listen', `127.0.0.1:${port}`]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true, 'healthz');
    const client = connectWs(`ws://127.0.0.1:${port}/websockify?desktop=demo`);
    await client.opened;
    await new Promise((resolve) => client.ws.once('message', resolve)); // the demo's RFB greeting

    cli.child.kill('SIGTERM');
    expect(await client.closed).toEqual({ code: 1001, reason: 'The gateway is shutting down' });
    expect(await cli.exited).toBe(0);
    const log = cli.output().stdout;
    expect(log).toContain('"msg":"session start"');
    expect(log).toMatch(/"desktop":"demo".*"code":1001.*"msg":"session end"/);
  });

  it('exits non-zero with the address when it cannot listen', async () => {
    const port = await freePort();
    const holder = run(['--listen', `127.0.0.1:${port}`]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true, 'healthz');
    const second = run(['--listen', `127.0.0.1:${port}`]);
    expect(await second.exited).toBe(1);
    expect(second.output().stderr).toContain(`cannot listen on 127.0.0.1:${port}`);
    holder.child.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  });
});
