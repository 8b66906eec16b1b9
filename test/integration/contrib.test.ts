/**
 * The deployment files in contrib/, checked by what checks them here: systemd-analyze verifies
 * the unit (pointed at the built command, which it requires to exist) and rates its hardening.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireCommand } from '../helpers/processes.js';

const UNIT = fileURLToPath(new URL('../../contrib/deskgate.service', import.meta.url));
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
