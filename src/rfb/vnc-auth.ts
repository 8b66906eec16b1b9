/**
 * VNC authentication (RFB security type 2): the client encrypts the server's 16-byte
 * challenge with DES, keyed by the password's first eight bytes with each byte's bits in
 * reverse order (a quirk of the original implementation that every server keeps).
 *
 * OpenSSL 3 moved single DES to its legacy provider, which Node does not load; triple DES
 * with three equal keys is single DES (encrypt, decrypt, encrypt with one key), and is in
 * the default provider.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const CHALLENGE_LENGTH = 16;

/** Only the first eight bytes of a VNC password count. */
const KEY_LENGTH = 8;

/** The answer to a server's challenge. */
export function vncAuthResponse(password: string, challenge: Buffer): Buffer {
  const cipher = createCipheriv('des-ede3-ecb', tripled(desKey(password)), null).setAutoPadding(false);
  return Buffer.concat([cipher.update(challenge), cipher.final()]);
}

/**
 * The password in a file written by `vncpasswd` (TigerVNC, TightVNC, RealVNC 4): DES with a
 * key every VNC implementation shares, so it hides the password from a glance and no more.
 */
export function decodeVncPasswdFile(bytes: Buffer): string {
  if (bytes.length < KEY_LENGTH) throw new Error(`expected at least ${KEY_LENGTH} bytes, as vncpasswd writes them; got ${bytes.length}`);
  const decipher = createDecipheriv('des-ede3-ecb', tripled(Buffer.from(VNCPASSWD_KEY.map(reverseBits))), null).setAutoPadding(false);
  const plain = Buffer.concat([decipher.update(bytes.subarray(0, KEY_LENGTH)), decipher.final()]);
  const end = plain.indexOf(0);
  return plain.subarray(0, end === -1 ? KEY_LENGTH : end).toString('latin1');
}

/** The fixed key of vncpasswd files, as the reference implementation writes it (bits reversed, like passwords). */
const VNCPASSWD_KEY = Buffer.from([23, 82, 107, 6, 35, 78, 88, 7]);

function desKey(password: string): Buffer {
  const key = Buffer.alloc(KEY_LENGTH); // shorter passwords are padded with zeros
  Buffer.from(password, 'latin1').copy(key, 0, 0, KEY_LENGTH);
  return Buffer.from(key.map(reverseBits));
}

function reverseBits(byte: number): number {
  let reversed = 0;
  for (let bit = 0; bit < 8; bit++) reversed |= ((byte >> bit) & 1) << (7 - bit);
  return reversed;
}

function tripled(key: Buffer): Buffer {
  return Buffer.concat([key, key, key]);
}
