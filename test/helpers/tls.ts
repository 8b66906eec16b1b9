/**
 * Self-signed certificates for 127.0.0.1 made with the openssl command (as an operator
 * would), and the fingerprint of the certificate a TLS server presents right now.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { requireCommand } from './processes.js';

export interface Certificate {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint as Node prints it (AA:BB:...). */
  fingerprint: string;
}

const KEY_OPTIONS = {
  ec: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
  rsa: ['-newkey', 'rsa:2048'],
} as const;

export function makeCertificate(keyType: keyof typeof KEY_OPTIONS): Certificate {
  requireCommand('openssl', 'openssl');
  const dir = mkdtempSync(join(tmpdir(), 'deskgate-cert-'));
  try {
    const [certFile, keyFile] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        ...KEY_OPTIONS[keyType],
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const cert = readFileSync(certFile);
    return { cert, key: readFileSync(keyFile), fingerprint: new X509Certificate(cert).fingerprint256 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The fingerprint of the certificate served on this port; trust is not the question here, so none is checked. */
export function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}
