/**
 * One-time tickets for embedding: a signed JWT bound to one desktop, short-lived, good for
 * one WebSocket. Claims: `desk` (desktop), `sub` (user), `vo` (view-only, optional),
 * `exp`, `jti`. HS256 with a shared secret, or EdDSA / ES256 with a public key so a host
 * application can mint its own; the algorithm is fixed by the key, never by the token.
 */
import { createPrivateKey, createPublicKey, createSecretKey, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { FileError, type Config } from '../config/schema.js';
import { readOperatorFile } from '../config/sources.js';
import { errors } from '../errors.js';
import type { OneTimeStore } from './one-time.js';

export interface Ticket {
  readonly desktop: string;
  readonly user: string;
  readonly viewOnly: boolean;
  readonly id: string;
  readonly expiresAt: Date;
}

export interface TicketRequest {
  desktop: string;
  user: string;
  viewOnly?: boolean | undefined;
  ttlSeconds?: number | undefined;
}

/** Slack for clocks of a host application that mints its own tickets. */
const CLOCK_TOLERANCE_SECONDS = 5;

export class TicketAuthority {
  readonly #algorithm: 'HS256' | 'EdDSA' | 'ES256';
  readonly #verifyKey: KeyObject;
  readonly #signKey: KeyObject | undefined;
  readonly #config: Config['tickets'];
  readonly #used: OneTimeStore;

  private constructor(config: Config['tickets'], used: OneTimeStore) {
    this.#config = config;
    this.#used = used;
    if (config.secret) {
      this.#algorithm = 'HS256';
      this.#verifyKey = this.#signKey = createSecretKey(Buffer.from(config.secret));
      return;
    }
    const publicFile = config.publicKeyFile as string;
    const publicKey = readKey('tickets.publicKeyFile', publicFile, createPublicKey);
    this.#algorithm = algorithmOf(publicKey, publicFile);
    this.#verifyKey = publicKey;
    if (config.privateKeyFile) {
      const privateFile = config.privateKeyFile;
      const privateKey = readKey('tickets.privateKeyFile', privateFile, createPrivateKey);
      if (!keysMatch(privateKey, publicKey)) {
        throw new FileError(
          'tickets.privateKeyFile',
          privateFile,
          `tickets.privateKeyFile does not belong to tickets.publicKeyFile: ${privateFile} is not the key of ${publicFile}`,
        );
      }
      this.#signKey = privateKey;
    }
  }

  /** The authority for this config, or undefined when tickets are not configured. */
  static from(config: Config['tickets'], used: OneTimeStore): TicketAuthority | undefined {
    return config.secret || config.publicKeyFile ? new TicketAuthority(config, used) : undefined;
  }

  get canIssue(): boolean {
    return this.#signKey !== undefined;
  }

  get maxTtlSeconds(): number {
    return this.#config.maxTtlSeconds;
  }

  async issue(request: TicketRequest): Promise<{ token: string; ticket: Ticket }> {
    if (!this.#signKey) throw new Error('this gateway verifies tickets but holds no key to sign them');
    const ttl = request.ttlSeconds ?? this.#config.defaultTtlSeconds;
    if (ttl > this.#config.maxTtlSeconds) throw new RangeError(`ttlSeconds may be at most ${this.#config.maxTtlSeconds}`);
    const now = Math.floor(Date.now() / 1000);
    const ticket: Ticket = {
      desktop: request.desktop,
      user: request.user,
      viewOnly: request.viewOnly ?? false,
      id: randomUUID(),
      expiresAt: new Date((now + ttl) * 1000),
    };
    const token = await new SignJWT({ desk: ticket.desktop, vo: ticket.viewOnly })
      .setProtectedHeader({ alg: this.#algorithm, typ: 'JWT' })
      .setSubject(ticket.user)
      .setJti(ticket.id)
      .setIssuedAt(Date.now() / 1000) // to the millisecond: compared with the moment the used-ticket store began
      .setExpirationTime(now + ttl)
      .sign(this.#signKey);
    return { token, ticket };
  }

  /** The ticket, if it is genuine, unexpired and for this desktop; it stays unused. */
  async check(token: string, desktop: string): Promise<Ticket> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#verifyKey, {
        algorithms: [this.#algorithm],
        requiredClaims: ['exp', 'jti', 'sub', 'desk'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (err) {
      throw (err instanceof joseErrors.JWTExpired ? errors.ticketExpired() : errors.ticketInvalid()).causedBy(err);
    }
    const { desk, vo, sub, jti, exp, iat } = payload as { desk: unknown; vo?: unknown; sub: string; jti: string; exp: number; iat?: number };
    if (typeof desk !== 'string' || (vo !== undefined && typeof vo !== 'boolean')) throw errors.ticketInvalid();
    if (exp - Date.now() / 1000 > this.#config.maxTtlSeconds + CLOCK_TOLERANCE_SECONDS) {
      throw errors.ticketTooLong(this.#config.maxTtlSeconds);
    }
    // Without `iat`, the earliest it can have been issued is what the longest lifetime allows.
    const issuedAt = iat ?? exp - this.#config.maxTtlSeconds - CLOCK_TOLERANCE_SECONDS;
    if (issuedAt * 1000 < this.#used.since) {
      throw errors.ticketFromBeforeStart();
    }
    if (desk !== desktop) throw errors.ticketForAnotherDesktop();
    return { desktop: desk, user: sub, viewOnly: vo === true, id: jti, expiresAt: new Date(exp * 1000) };
  }

  /** Use up a checked ticket: a second use is refused. */
  async redeem(ticket: Ticket): Promise<void> {
    if (!(await this.#used.claim(`ticket:${ticket.id}`, ticket.expiresAt.getTime() + CLOCK_TOLERANCE_SECONDS * 1000))) {
      throw errors.ticketUsed();
    }
  }

  /** Whether the ticket was used already (for pages: a reload says so instead of failing later). */
  async used(ticket: Ticket): Promise<boolean> {
    return this.#used.has(`ticket:${ticket.id}`);
  }
}

/** Tickets (until used) and presence keys are credentials: URLs that may carry one go into logs through this. */
export function withoutCredentials(url: string | undefined): string | undefined {
  return url?.replace(/([?&](?:ticket|view)=)[^&]*/g, '$1…');
}

/** A key from the PEM file the operator named under `key`. */
function readKey(key: string, file: string, create: (pem: Buffer) => KeyObject): KeyObject {
  const pem = readOperatorFile(key, file);
  try {
    return create(pem);
  } catch (err) {
    throw new FileError(key, file, `${key} ${file} holds no PEM key deskgate can read: ${(err as Error).message}`, { cause: err });
  }
}

function algorithmOf(key: KeyObject, file: string): 'EdDSA' | 'ES256' {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new FileError(
    'tickets.publicKeyFile',
    file,
    `tickets.publicKeyFile must be an Ed25519 or P-256 public key, not ${key.asymmetricKeyType ?? 'unknown'}: ${file}`,
  );
}

/** Sign and verify a probe: a typo between two key files must fail at start-up, not at the first ticket. */
function keysMatch(privateKey: KeyObject, publicKey: KeyObject): boolean {
  const probe = Buffer.from('deskgate key check');
  const digest = publicKey.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  try {
    return verify(digest, probe, publicKey, sign(digest, probe, privateKey));
  } catch {
    return false;
  }
}
