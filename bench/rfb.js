/**
 * The few bytes of RFB 3.8 the benchmark speaks before it measures anything: the server side
 * for the VNC peers (bench/peers.js) and the viewer side for the measuring client
 * (bench/client.js). Written here by hand, apart from the gateway's own src/rfb/, so that the
 * benchmark checks the gateway against an independent reading of the protocol.
 *
 *   server: "RFB 003.008\n"            viewer: "RFB 003.008\n"
 *   server: security types [1, type]   viewer: its choice (1 byte)
 *   server: (VNC auth) 16-byte challenge  viewer: DES response (16 bytes)
 *   server: SecurityResult (u32 0)     viewer: ClientInit (shared flag, 1 byte)
 *   server: ServerInit (24 bytes + name)
 *
 * Everything after ServerInit (server) or ClientInit (viewer) is the session's payload.
 * As with a real VNC server, the peers' sources send nothing after ServerInit until the
 * viewer asks (FRAMEBUFFER_UPDATE_REQUEST).
 */
import { createCipheriv } from 'node:crypto';

export const VERSION = Buffer.from('RFB 003.008\n', 'latin1');
export const SECURITY_NONE = 1;
export const SECURITY_VNC_AUTH = 2;
/** The password of the peers that require VNC authentication (the gateway holds it in a passwordFile). */
export const BENCH_PASSWORD = 'bench-pw';
/** The challenge those peers send: fixed, so that each peer computes the expected response once. */
const CHALLENGE = Buffer.from('deskgate-bench!!', 'latin1');
const SERVER_INIT_HEAD = 24;
/** Desktop names are short; a longer one means the bytes are not where the handshake expects them. */
const MAX_NAME_BYTES = 4096;

/**
 * The bytes of one connection's handshake, read in exact amounts. Chunks arrive as they come
 * (TCP reads, WebSocket messages); `read(n)` resolves once n bytes are there.
 */
export class ByteQueue {
  /** @type {Buffer[]} */
  #chunks = [];
  #length = 0;
  /** @type {{ n: number, resolve: (bytes: Buffer) => void, reject: (err: Error) => void } | undefined} */
  #waiting;
  /** @type {Error | undefined} */
  #error;

  /** @param {Buffer} chunk */
  push(chunk) {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#serve();
  }

  /** The connection ended or broke: a pending read (and every later one) rejects with `err`. @param {Error} err */
  fail(err) {
    this.#error ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(err);
  }

  /** @param {number} n @returns {Promise<Buffer>} */
  read(n) {
    if (this.#waiting) return Promise.reject(new Error('ByteQueue: one read at a time'));
    if (this.#length >= n) return Promise.resolve(this.#take(n));
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiting = { n, resolve, reject };
    });
  }

  /** Everything received beyond the reads so far: the first payload bytes once the handshake is done. */
  rest() {
    const all = this.#chunks.length === 1 ? /** @type {Buffer} */ (this.#chunks[0]) : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return all;
  }

  #serve() {
    const waiting = this.#waiting;
    if (!waiting || this.#length < waiting.n) return;
    this.#waiting = undefined;
    waiting.resolve(this.#take(waiting.n));
  }

  /** @param {number} n */
  #take(n) {
    const all = this.rest();
    if (all.length > n) this.push(all.subarray(n));
    return all.subarray(0, n);
  }
}

/**
 * One side of a connection as the handshake sees it.
 * @typedef {object} Wire
 * @property {(n: number) => Promise<Buffer>} read
 * @property {(bytes: Buffer) => void} write
 */

/**
 * VNC authentication's response: the challenge encrypted with DES, keyed by the password's
 * first eight bytes (zero-padded) with each byte's bits reversed. Triple DES with the key
 * three times over is single DES, and is in OpenSSL 3's default provider.
 * @param {string} password
 * @param {Buffer} challenge 16 bytes
 */
export function vncAuthResponse(password, challenge) {
  const key = Buffer.alloc(8);
  Buffer.from(password, 'latin1').copy(key, 0, 0, 8);
  const reversed = Buffer.from(key.map(reverseBits));
  const cipher = createCipheriv('des-ede3-ecb', Buffer.concat([reversed, reversed, reversed]), null).setAutoPadding(false);
  return Buffer.concat([cipher.update(challenge), cipher.final()]);
}

/** @param {number} byte */
function reverseBits(byte) {
  let reversed = 0;
  for (let bit = 0; bit < 8; bit++) reversed |= ((byte >> bit) & 1) << (7 - bit);
  return reversed;
}

/** @param {number} value */
function u32(value) {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value, 0);
  return bytes;
}

/** @param {string} text a length-prefixed string, as RFB sends reasons */
function text(text) {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
}

/**
 * FramebufferUpdateRequest for the whole 1024x768 desktop, not incremental: what a viewer
 * sends first after ServerInit, and what makes a source start sending.
 */
export const FRAMEBUFFER_UPDATE_REQUEST = Buffer.from([3, 0, 0, 0, 0, 0, 1024 >> 8, 1024 & 0xff, 768 >> 8, 768 & 0xff]);

/** ServerInit of a 1024x768 desktop, 32 bpp true colour (depth 24, little-endian RGB888), named "bench". */
export const SERVER_INIT = (() => {
  const name = Buffer.from('bench', 'latin1');
  const head = Buffer.alloc(SERVER_INIT_HEAD);
  head.writeUInt16BE(1024, 0);
  head.writeUInt16BE(768, 2);
  // bits-per-pixel, depth, big-endian, true-colour, red/green/blue max (u16), red/green/blue shift, 3 bytes padding
  Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0]).copy(head, 4);
  head.writeUInt32BE(name.length, 20);
  return Buffer.concat([head, name]);
})();

/**
 * The server side, up to and including ServerInit. With a password the peer offers only VNC
 * authentication and checks the response; a wrong one gets SecurityResult 1 and a reason.
 * @param {Wire} wire
 * @param {string | undefined} password
 */
export async function serveHandshake(wire, password) {
  wire.write(VERSION);
  const version = (await wire.read(VERSION.length)).toString('latin1');
  if (!/^RFB 003\.00[78]\n$/.test(version)) throw new Error(`the viewer answered ${JSON.stringify(version)}, not RFB 3.7 or 3.8`);
  const offered = password === undefined ? SECURITY_NONE : SECURITY_VNC_AUTH;
  wire.write(Buffer.from([1, offered]));
  const [choice] = await wire.read(1);
  if (choice !== offered) throw new Error(`the viewer chose security type ${choice}; only ${offered} was offered`);
  if (password !== undefined) {
    wire.write(CHALLENGE);
    const response = await wire.read(CHALLENGE.length);
    if (!response.equals(vncAuthResponse(password, CHALLENGE))) {
      wire.write(Buffer.concat([u32(1), text('wrong VNC password')]));
      throw new Error('wrong VNC password');
    }
  }
  wire.write(u32(0));
  await wire.read(1); // ClientInit: the shared flag, whatever it says
  wire.write(SERVER_INIT);
}

/**
 * The viewer side, up to and including ServerInit: security None, or VNC authentication when
 * the server asks for it and a password is given; ClientInit shared.
 * @param {Wire} wire
 * @param {string | undefined} password
 * @returns {Promise<{ width: number, height: number, name: string }>} from ServerInit
 */
export async function viewHandshake(wire, password) {
  const version = (await wire.read(VERSION.length)).toString('latin1');
  if (!/^RFB 003\.\d{3}\n$/.test(version)) throw new Error(`the server greeted with ${JSON.stringify(version)}, not an RFB version`);
  wire.write(VERSION);
  const [count = 0] = await wire.read(1);
  if (count === 0) throw new Error(`the server refused: ${await readText(wire)}`);
  const offered = [...(await wire.read(count))];
  const choice = password !== undefined && offered.includes(SECURITY_VNC_AUTH) ? SECURITY_VNC_AUTH : SECURITY_NONE;
  if (!offered.includes(choice))
    throw new Error(`the server offers security types ${offered.join(', ')}${password === undefined ? ' and no password is given' : ''}`);
  wire.write(Buffer.from([choice]));
  if (choice === SECURITY_VNC_AUTH) wire.write(vncAuthResponse(/** @type {string} */ (password), await wire.read(CHALLENGE.length)));
  const result = (await wire.read(4)).readUInt32BE(0);
  if (result !== 0) throw new Error(`SecurityResult ${result}: ${await readText(wire)}`);
  wire.write(Buffer.from([1])); // ClientInit, shared
  const head = await wire.read(SERVER_INIT_HEAD);
  const nameLength = head.readUInt32BE(20);
  if (nameLength > MAX_NAME_BYTES) throw new Error(`ServerInit gives a ${nameLength}-byte desktop name`);
  const name = (await wire.read(nameLength)).toString('utf8');
  return { width: head.readUInt16BE(0), height: head.readUInt16BE(2), name };
}

/** @param {Wire} wire */
async function readText(wire) {
  const length = (await wire.read(4)).readUInt32BE(0);
  return (await wire.read(Math.min(length, MAX_NAME_BYTES))).toString('utf8');
}
