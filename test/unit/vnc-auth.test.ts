import { describe, expect, it } from 'vitest';
import { decodeVncPasswdFile, vncAuthResponse } from '../../src/rfb/vnc-auth.js';

describe('VNC authentication', () => {
  it('answers a challenge as DES with the bit-reversed password (vector from openssl des-ecb)', () => {
    const challenge = Buffer.from('0123456789abcdef', 'latin1');
    expect(vncAuthResponse('secret12', challenge).toString('hex')).toBe('5f15f4f0e1684cdc260ea962ab82fa3b');
  });

  it('uses only the first eight bytes of the password, and pads shorter ones with zeros', () => {
    const challenge = Buffer.alloc(16, 7);
    expect(vncAuthResponse('secret12-and-more', challenge)).toEqual(vncAuthResponse('secret12', challenge));
    expect(vncAuthResponse('abc', challenge)).toEqual(vncAuthResponse('abc\0\0\0\0\0', challenge));
    expect(vncAuthResponse('abc', challenge)).not.toEqual(vncAuthResponse('abd', challenge));
  });

  it('reads the password from a vncpasswd file (bytes written by `printf secret12 | vncpasswd -f`)', () => {
    expect(decodeVncPasswdFile(Buffer.from('24b5ae4ce15503c6', 'hex'))).toBe('secret12');
  });

  it('refuses a vncpasswd file that is too short', () => {
    expect(() => decodeVncPasswdFile(Buffer.from('24b5ae', 'hex'))).toThrow(/at least 8 bytes/);
  });
});
