/**
 * Opens the connection to a VNC server, over TCP or a Unix socket: one timeout, Nagle off
 * (RFB input events are tiny and latency-bound), keep-alive on (both TCP only), and every
 * failure turned into a GatewayError that names the desktop or target and what went wrong.
 */
import { connect as netConnect, type NetConnectOpts, type Socket } from 'node:net';
import { describeSocketError, errors, GatewayError } from '../errors.js';
import { connectOptionsOf, type VncAddress } from '../net/address.js';
import type { RecordSettings } from '../config/schema.js';
import type { VncSettings } from '../rfb/handshake.js';

export type ConnectTarget = VncAddress & {
  /** A configured desktop, or an ad-hoc `?target=` allowed by the operator's rules. */
  kind: 'desktop' | 'target';
  /** What the user asked for: the desktop's name, or the target's `host:port` or `unix:/path`. */
  name: string;
  /** How to speak RFB to it; none: follow the viewer's handshake over the plain connection. */
  vnc?: VncSettings | undefined;
  /** Record its sessions, and how (a configured desktop's `record`). */
  record?: RecordSettings | undefined;
};

export interface ConnectOptions {
  /** Gives up with the abort reason if it is a GatewayError, else DG_ERR_NOT_READY (shutting down, the browser left). */
  signal?: AbortSignal;
  /** Read into caller-supplied buffers instead of 'data' events (see net.connect). */
  onread?: NetConnectOpts['onread'];
  /** Bytes written to the VNC server that may queue before `write()` asks the caller to wait. */
  writableHighWaterMark?: number;
}

export type Connect = (target: ConnectTarget, options?: ConnectOptions) => Promise<Socket>;

export function buildConnector(options: { timeoutMs: number }): Connect {
  const { timeoutMs } = options;
  return function connect(target, { signal, onread, writableHighWaterMark } = {}) {
    return new Promise((resolve, reject) => {
      const options = { ...connectOptionsOf(target), noDelay: true, keepAlive: true, onread, writableHighWaterMark };
      const socket = netConnect(options);
      const timer = setTimeout(onTimeout, timeoutMs);

      function settle(error?: GatewayError): void {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        signal?.removeEventListener('abort', onAbort);
        if (error) {
          socket.destroy();
          reject(error);
        } else {
          resolve(socket);
        }
      }
      function onConnect(): void {
        settle();
      }
      function onError(err: Error): void {
        settle(errors.unreachable(describe(target), describeSocketError(err)).causedBy(err));
      }
      function onTimeout(): void {
        settle(errors.connectTimeout(describe(target), timeoutMs));
      }
      function onAbort(): void {
        const reason: unknown = signal?.reason;
        settle(reason instanceof GatewayError ? reason : errors.shuttingDown());
      }

      socket.once('connect', onConnect);
      socket.on('error', onError);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  };
}

/** How close reasons name a target to the user: "Desktop 'lab1'", "Target 10.0.0.5:5901" or "Target unix:/run/vnc/lab.sock". */
export function describe(target: ConnectTarget): string {
  return target.kind === 'desktop' ? `Desktop '${target.name}'` : `Target ${target.name}`;
}
