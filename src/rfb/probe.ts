/**
 * A cheap liveness probe for the dashboard: connect, read the 12-byte RFB ProtocolVersion
 * banner ("RFB 003.008\n"), hang up. The banner comes before any authentication, so servers
 * that require a password are probed alike. Never throws; the answer says what was seen.
 */
import { connect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describeSocketError } from '../errors.js';
import { connectOptionsOf, type VncAddress } from '../net/address.js';

export interface ProbeResult {
  status: 'up' | 'down';
  detail: string;
}

const BANNER = /^RFB \d{3}\.\d{3}\n$/;

/**
 * With `tls` (a server behind a TLS wrapper) the banner is read through TLS. The certificate
 * is not checked here: a probe only asks whether something answers; sessions verify it.
 */
export function probeRfb(address: VncAddress, timeoutMs: number, tls = false): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const where = connectOptionsOf(address);
    const servername = address.host === undefined || isIP(address.host) ? undefined : address.host;
    const socket = tls ? tlsConnect({ ...where, servername, rejectUnauthorized: false }) : connect(where);
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => finish({ status: 'down', detail: `no answer within ${timeoutMs} ms` }), timeoutMs);

    function finish(result: ProbeResult): void {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    }
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 12) return;
      const banner = received.subarray(0, 12).toString('latin1');
      finish(BANNER.test(banner) ? { status: 'up', detail: banner.trim() } : { status: 'down', detail: 'not an RFB (VNC) server' });
    });
    socket.on('error', (err) => finish({ status: 'down', detail: describeSocketError(err) }));
    socket.on('end', () => finish({ status: 'down', detail: 'closed without an RFB greeting' }));
  });
}
