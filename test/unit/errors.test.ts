import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLOSE, ERRORS, errors, GatewayError, truncateReason, type ErrorCode } from '../../src/errors.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const VIEWER = readFileSync(new URL('../../src/web/static/viewer.js', import.meta.url), 'utf8');

/** The rows of the README's close-code table that name catalogue codes: code -> [close code, HTTP status]. */
function readmeRows(): Map<string, [number, number]> {
  const rows = new Map<string, [number, number]>();
  for (const [, close, status, code] of README.matchAll(/^\| (\d{4}) \| (\d{3}) \| `(DG_ERR_[A-Z_]+)` \|/gm)) {
    rows.set(code as string, [Number(close), Number(status)]);
  }
  return rows;
}

describe('error catalogue', () => {
  it('maps every code to a 4000 + HTTP status close code, or to the RFC 6455 code with that meaning', () => {
    const rfc = new Set<number>(Object.values(CLOSE));
    for (const [code, entry] of Object.entries(ERRORS)) {
      expect(entry.closeCode === 4000 + entry.status || rfc.has(entry.closeCode), code).toBe(true);
      const error = new GatewayError(code as ErrorCode, 'x');
      expect([error.closeCode, error.status]).toEqual([entry.closeCode, entry.status]);
    }
  });

  it('matches the README close-code table both ways', () => {
    const documented = readmeRows();
    const catalogue = new Map(Object.entries(ERRORS).map(([code, e]) => [code, [e.closeCode, e.status]]));
    expect(documented).toEqual(catalogue);
  });

  it('has words in the viewer for every close code the gateway sends', () => {
    const known = new Set([...VIEWER.matchAll(/^ {2}(\d{4}): ['"]/gm)].map(([, code]) => Number(code)));
    for (const code of [...Object.values(ERRORS).map((e) => e.closeCode), ...Object.values(CLOSE)]) {
      expect(known.has(code), `viewer.js CLOSE_MESSAGES has no ${code}`).toBe(true);
    }
  });

  it('words every refusal in the catalogue, under one of its codes', () => {
    for (const [name, make] of Object.entries(errors)) {
      const error = (make as (...args: string[]) => GatewayError)('x', 'y');
      expect(error, name).toBeInstanceOf(GatewayError);
      expect(ERRORS[error.code], name).toBeDefined();
      expect(error.message, name).toMatch(/^\S.*\S$/);
    }
  });

  it('keeps close reasons within the 123 bytes RFC 6455 allows, cutting on a character', () => {
    const long = `Desktop '${'é'.repeat(100)}' is not reachable (connection refused)`;
    const reason = errors.unreachable(`Desktop '${'é'.repeat(100)}'`, 'connection refused').reason;
    expect(long.startsWith(reason.slice(0, -1))).toBe(true);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason.endsWith('…')).toBe(true);
    expect(reason).not.toContain('\uFFFD');
    expect(truncateReason('short')).toBe('short');
  });
});
