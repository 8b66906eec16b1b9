import { describe, expect, it } from 'vitest';
import { failure } from '../../src/cli/exit.js';
import { ConfigError, FileError } from '../../src/config/schema.js';

describe('how the command ends on an error', () => {
  it('exits 2 with the message alone for a bad flag, value or config', () => {
    expect(failure(new ConfigError('invalid configuration:\n  listen: got "x"'))).toEqual({
      exitCode: 2,
      message: 'deskgate: invalid configuration:\n  listen: got "x"\n',
    });
  });

  it('exits 2 with the message alone for a file the operator named that cannot be read or used', () => {
    const err = new FileError('tls.cert', '/etc/cert.pem', 'cannot read tls.cert /etc/cert.pem: ENOENT');
    expect(failure(err)).toEqual({ exitCode: 2, message: 'deskgate: cannot read tls.cert /etc/cert.pem: ENOENT\n' });
  });

  // serve() used to report any start-up exception, even a TypeError, as a configuration error with exit code 2.
  it('exits 70 (EX_SOFTWARE) for anything else, a bug, saying so and printing the stack', () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'port')");
    const { exitCode, message } = failure(bug);
    expect(exitCode).toBe(70);
    expect(message).toMatch(/^deskgate: unexpected error \(a bug; please report it\):\n/);
    expect(message).toContain(bug.stack);
    expect(failure('a thrown string')).toMatchObject({ exitCode: 70, message: expect.stringContaining('a thrown string') });
  });
});
