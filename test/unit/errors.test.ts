import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, GatewayError, truncateReason, type ErrorCode } from '../../src/errors.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('error catalogue', () => {
  it('maps every code to a 4000 + HTTP status close code', () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      expect(entry.closeCode, code).toBe(4000 + entry.status);
      const error = new GatewayError(code as ErrorCode, 'x');
      expect(error.closeCode).toBe(entry.closeCode);
      expect(error.status).toBe(entry.status);
    }
  });

  it('documents every error code and close code in the README', () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      expect(README, code).toMatch(new RegExp(`\\| ${entry.closeCode} \\|[^\\n]*\`${code}\``));
    }
  });

  it('keeps close reasons within the 123 bytes RFC 6455 allows, cutting on a character', () => {
    const long = `Desktop '${'é'.repeat(100)}' is not reachable (connection refused)`;
    const reason = new GatewayError('DG_ERR_CONNECT_FAILED', long).reason;
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason.endsWith('…')).toBe(true);
    expect(reason).not.toContain('\uFFFD');
    expect(truncateReason('short')).toBe('short');
  });
});
