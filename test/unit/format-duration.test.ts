import { describe, expect, it } from 'vitest';
import { formatDuration } from '../../src/errors.js';

describe('formatDuration', () => {
  it('says durations in the largest whole unit people read easily', () => {
    expect(formatDuration(1000)).toBe('1 s');
    expect(formatDuration(1500)).toBe('1.5 s');
    expect(formatDuration(90_000)).toBe('90 s');
    expect(formatDuration(60_000)).toBe('1 minute');
    expect(formatDuration(30 * 60_000)).toBe('30 minutes');
    expect(formatDuration(12 * 3_600_000)).toBe('12 hours');
  });
});
