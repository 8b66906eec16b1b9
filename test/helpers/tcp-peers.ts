/**
 * TCP peers on loopback standing in for VNC servers: a canary that counts the connections
 * it accepts and, behind a minimal RFB handshake (`rfbServer`), an echo server, a flood
 * source and a slow sink; and a bare client connection for requests no HTTP client would send.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ByteQueue } from './rfb-client.js';

export interface Peer {
  server: Server;
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  sockets: Set<Socket>;
  close(): Promise<void>;
}

export async function startPeer(onConnection: (socket: Socket) => void = () => {}): Promise<Peer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as { port: number }).port,
    get accepted() {
      return accepted;
    },
    sockets,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** What an `rfbServer` peer saw of each handshake: the ClientInit shared flags, in order. */
export interface RfbPeerLog {
  sharedFlags: number[];
}

/**
 * Wrap a peer's connection handler in the server side of an RFB 3.8 handshake (security
 * None, a 1x1 desktop named 'peer'): `then` gets the socket once ServerInit is sent, so what
 * follows is the relay's. Pass a log to see what the gateway sent.
 */
export function rfbServer(then: (socket: Socket) => void = () => {}, log: RfbPeerLog = { sharedFlags: [] }): (socket: Socket) => void {
  return (socket) => {
    const bytes = new ByteQueue();
    const onData = (chunk: Buffer): void => bytes.push(chunk);
    socket.on('data', onData);
    socket.once('close', () => bytes.end(new Error('closed during the RFB handshake')));
    const serverInit = Buffer.alloc(24 + 4);
    serverInit.writeUInt16BE(1, 0);
    serverInit.writeUInt16BE(1, 2);
    Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0]).copy(serverInit, 4);
    serverInit.writeUInt32BE(4, 20);
    serverInit.write('peer', 24, 'latin1');
    const handshake = async (): Promise<void> => {
      socket.write('RFB 003.008\n');
      await bytes.read(12);
      socket.write(Buffer.from([1, 1]));
      await bytes.read(1);
      socket.write(Buffer.from([0, 0, 0, 0]));
      const [shared = -1] = await bytes.read(1);
      log.sharedFlags.push(shared);
      socket.pause(); // nothing may be read between this handler and the next
      socket.off('data', onData);
      if (bytes.length > 0) socket.unshift(await bytes.read(bytes.length));
      socket.write(serverInit);
      then(socket);
      socket.resume();
    };
    handshake().catch(() => socket.destroy());
  };
}

/** A deterministic byte stream: a pseudo-random block of prime length, repeated. */
export const PATTERN = (() => {
  const block = Buffer.alloc(65_521);
  let x = 0x2545f491;
  for (let i = 0; i < block.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = x & 0xff;
  }
  return block;
})();

/** Bytes [offset, offset + length) of the endless pattern stream, written into `target`. */
export function fillPattern(target: Buffer, offset: number): void {
  let written = 0;
  while (written < target.length) {
    const at = (offset + written) % PATTERN.length;
    written += PATTERN.copy(target, written, at, Math.min(PATTERN.length, at + target.length - written));
  }
}

/** Checks a stream chunk by chunk against the pattern; `mismatchAt` is the first bad offset. */
export class PatternChecker {
  received = 0;
  mismatchAt = -1;
  readonly #expected = Buffer.alloc(256 * 1024);

  check(chunk: Buffer): void {
    for (let done = 0; done < chunk.length;) {
      const part = chunk.subarray(done, done + this.#expected.length);
      const expected = this.#expected.subarray(0, part.length);
      fillPattern(expected, this.received);
      if (this.mismatchAt < 0 && !part.equals(expected)) this.mismatchAt = this.received;
      this.received += part.length;
      done += part.length;
    }
  }
}

/** A VNC server that reads in short bursts, 2 ms reading and 8 ms not, handing what it reads to `onData`: a slow consumer. */
export function readInBursts(onData: (chunk: Buffer) => void): (socket: Socket) => void {
  return (socket) => {
    socket.on('data', onData);
    const timer = setInterval(() => {
      socket.resume();
      setTimeout(() => socket.pause(), 2);
    }, 10);
    socket.on('close', () => clearInterval(timer));
  };
}

/** Write `total` pattern bytes, from offset `from` of the stream on, honouring the socket's back-pressure, then end it. */
export function floodPattern(socket: Socket, total: number, chunkSize = 64 * 1024, from = 0): void {
  let sent = 0;
  const write = (): void => {
    while (sent < total) {
      const chunk = Buffer.allocUnsafe(Math.min(chunkSize, total - sent));
      fillPattern(chunk, from + sent);
      sent += chunk.length;
      if (!socket.write(chunk)) {
        socket.once('drain', write);
        return;
      }
    }
    socket.end();
  };
  write();
}

export interface RawClient {
  socket: Socket;
  /** Everything the server sent so far, as latin1 text. */
  received(): string;
  /** Resolves with everything the server sent once the connection has closed. */
  closed: Promise<string>;
}

/**
 * A bare TCP connection to a loopback port, for requests no HTTP client would send. With
 * `allowHalfOpen`, it keeps its own side open after the server has ended its side, as a
 * client that means to hold a connection does.
 */
export function openRaw(port: number, localAddress?: string, options: { allowHalfOpen?: boolean } = {}): RawClient {
  const socket = connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: options.allowHalfOpen ?? false });
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => {}); // writes after the server hung up fail; 'close' follows
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(text)));
  return { socket, received: () => text, closed };
}
